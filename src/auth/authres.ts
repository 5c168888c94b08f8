// Reading Authentication-Results headers others wrote: whose they are (authserv-id), and for
// trusted ones, what they say about SPF and DKIM (opendmarc's TrustedAuthservIDs).

import { isNamed, unfoldedText, type HeaderField } from "./header-field.ts";

export const AUTHENTICATION_RESULTS = "Authentication-Results";

/** Drops RFC 5322 comments, which may nest and may hide anything, including ";". */
function stripComments(s: string): string {
  let out = "";
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "\\" && (depth > 0 || quoted)) {
      if (depth === 0) out += c + (s[i + 1] ?? "");
      i++;
    } else if (quoted) {
      out += c;
      if (c === '"') quoted = false;
    } else if (c === "(") depth++;
    else if (c === ")" && depth > 0) depth--;
    else if (depth === 0) {
      if (c === '"') quoted = true;
      out += c;
    }
  }
  return out;
}

/** The authserv-id of an A-R value, lower-cased; undefined when there is none to read. */
export function authservIdOf(value: string): string | undefined {
  const head = stripComments(value).split(";")[0]!.trim();
  const id = head.split(/\s+/)[0] ?? "";
  const unquoted = id.startsWith('"') && id.endsWith('"') && id.length >= 2 ? id.slice(1, -1) : id;
  return unquoted === "" ? undefined : unquoted.toLowerCase();
}

export interface UpstreamResult {
  readonly method: string;
  readonly result: string;
  readonly properties: ReadonlyMap<string, string>;
}

/** The results of one A-R value: `method=result ptype.property=value ...` after the authserv-id. */
export function parseResults(value: string): UpstreamResult[] {
  const [, ...resinfos] = splitUnquoted(tightenEquals(stripComments(value)), ";");
  const results: UpstreamResult[] = [];
  for (const resinfo of resinfos) {
    // Words are separated by any folding white space, not only spaces (RFC 8601 §2.2 CFWS).
    const words = splitUnquoted(resinfo.replace(/[\t\r\n]/g, " ").trim(), " ").filter((w) => w !== "");
    const m = /^([a-z0-9_-]+)\s*=\s*([a-z0-9_-]+)$/i.exec(words[0] ?? "");
    if (!m) continue;
    const properties = new Map<string, string>();
    for (const word of words.slice(1)) {
      const eq = word.indexOf("=");
      if (eq <= 0) continue;
      let v = word.slice(eq + 1);
      if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1).replace(/\\(.)/g, "$1");
      properties.set(word.slice(0, eq).toLowerCase(), v);
    }
    results.push({ method: m[1]!.toLowerCase(), result: m[2]!.toLowerCase(), properties });
  }
  return results;
}

/** RFC 8601 §2.2 allows white space around "=" (`spf = pass`): remove it outside quotes. */
function tightenEquals(s: string): string {
  let out = "";
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      out += c;
      if (c === "\\") out += s[++i] ?? "";
      else if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
      out += c;
    } else if (c === "=") {
      out = out.trimEnd() + c;
      while (s[i + 1] === " " || s[i + 1] === "\t" || s[i + 1] === "\r" || s[i + 1] === "\n") i++;
    } else out += c;
  }
  return out;
}

function splitUnquoted(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted && c === "\\") {
      cur += c + (s[i + 1] ?? "");
      i++;
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (!quoted && c === sep) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}

export interface ArPlan {
  /** 1-based positions among the message's A-R fields that claim our authserv-id. */
  readonly forged: readonly number[];
  /** Results from A-R fields of trusted authserv-ids, in message order. */
  readonly trusted: readonly UpstreamResult[];
}

/**
 * Sorts the message's A-R fields: ours (forged by the sender or left by an earlier hop that
 * shares our name) are to be removed; trusted ones are read for DMARC.
 */
export function planAuthenticationResults(headers: readonly HeaderField[], ourId: string, trustedIds: readonly string[]): ArPlan {
  const ours = ourId.toLowerCase();
  const trusted = new Set(trustedIds.map((t) => t.toLowerCase()));
  const forged: number[] = [];
  const upstream: UpstreamResult[] = [];
  let position = 0;
  for (const field of headers) {
    if (!isNamed(field, AUTHENTICATION_RESULTS)) continue;
    position++;
    const text = unfoldedText(field);
    const id = authservIdOf(text);
    if (id === ours) forged.push(position);
    else if (id !== undefined && trusted.has(id)) upstream.push(...parseResults(text));
  }
  return { forged, trusted: upstream };
}
