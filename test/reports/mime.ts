// Reading report messages back, independently of the code that wrote them: header fields,
// Content-Type parameters, multipart bodies, base64 and quoted-printable.

import { parseHeaders, type HeaderField } from "../support/mail.ts";

export interface MimeEntity {
  readonly headers: readonly HeaderField[];
  /** Lower-case type/subtype; text/plain when the field is missing. */
  readonly type: string;
  readonly params: ReadonlyMap<string, string>;
  /** The body as transferred (still encoded), latin1. */
  readonly rawBody: string;
  /** The body with its Content-Transfer-Encoding undone. */
  readonly content: Buffer;
  /** For multipart/*: the parts, in order. */
  readonly parts: readonly MimeEntity[];
}

export function header(entity: { headers: readonly HeaderField[] }, name: string): string | undefined {
  return entity.headers.find((h) => h.name.toLowerCase() === name.toLowerCase())?.value;
}

export function headerAll(entity: { headers: readonly HeaderField[] }, name: string): string[] {
  return entity.headers.filter((h) => h.name.toLowerCase() === name.toLowerCase()).map((h) => h.value);
}

/** "multipart/mixed; boundary=\"x\"; a=b" → type and parameters (quoted strings unquoted). */
export function parseContentType(value: string | undefined): { type: string; params: Map<string, string> } {
  const params = new Map<string, string>();
  if (value === undefined) return { type: "text/plain", params };
  const [type = "", ...rest] = value.split(";");
  const re = /\s*([A-Za-z0-9._-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/g;
  for (const m of rest.join(";").matchAll(re)) params.set(m[1]!.toLowerCase(), m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : m[3]!);
  return { type: type.trim().toLowerCase(), params };
}

export function decodeQuotedPrintable(text: string): Buffer {
  const soft = text.replace(/=\r?\n/g, "");
  const bytes: number[] = [];
  for (let i = 0; i < soft.length; i++) {
    const c = soft[i]!;
    if (c === "=" && /^[0-9A-F]{2}$/i.test(soft.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(soft.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(soft.charCodeAt(i) & 0xff);
  }
  return Buffer.from(bytes);
}

export function parseMime(raw: Buffer | string): MimeEntity {
  const text = typeof raw === "string" ? raw : raw.toString("latin1");
  const split = /\r?\n\r?\n/.exec(text);
  const head = split === null ? text : text.slice(0, split.index);
  const rawBody = split === null ? "" : text.slice(split.index + split[0].length);
  const headers = parseHeaders(head);
  const { type, params } = parseContentType(headers.find((h) => h.name.toLowerCase() === "content-type")?.value);
  const encoding = (headers.find((h) => h.name.toLowerCase() === "content-transfer-encoding")?.value ?? "7bit").toLowerCase();
  const content =
    encoding === "base64"
      ? Buffer.from(rawBody.replace(/\s+/g, ""), "base64")
      : encoding === "quoted-printable"
        ? decodeQuotedPrintable(rawBody)
        : Buffer.from(rawBody, "latin1");
  let parts: MimeEntity[] = [];
  const boundary = params.get("boundary");
  if (type.startsWith("multipart/") && boundary !== undefined) {
    const delimiter = `--${boundary}`;
    const lines = rawBody.split(/\r\n/);
    const chunks: string[][] = [];
    let current: string[] | undefined;
    for (const line of lines) {
      if (line === `${delimiter}--`) {
        if (current) chunks.push(current);
        current = undefined;
        break;
      }
      if (line === delimiter) {
        if (current) chunks.push(current);
        current = [];
        continue;
      }
      current?.push(line);
    }
    parts = chunks.map((c) => parseMime(c.join("\r\n")));
  }
  return { headers, type, params, rawBody, content, parts };
}
