// Domain names between presentation form (what callers and caches see) and wire labels.
import { DnsError } from "./errors.ts";

/**
 * Presentation form (RFC 1035 5.1 escapes \X and \DDD, optional trailing dot) to wire labels.
 * Names that cannot exist on the wire are EBADNAME, which mailauth treats as "invalid name"
 * rather than as a temporary failure.
 */
export function parseName(text: string): Uint8Array[] {
  const labels: Uint8Array[] = [];
  let cur: number[] = [];
  let total = 1;
  const badName = (why: string): never => {
    throw new DnsError("EBADNAME", `bad domain name (${why}): ${JSON.stringify(text)}`);
  };
  const endLabel = () => {
    if (cur.length === 0) badName("empty label");
    if (cur.length > 63) badName("label longer than 63 octets");
    total += cur.length + 1;
    labels.push(Uint8Array.from(cur));
    cur = [];
  };
  if (text === "" || text === ".") return labels;
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c === 0x2e) {
      endLabel();
      if (i === text.length - 1) break;
      continue;
    }
    if (c === 0x5c) {
      const digits = /^\d{3}/.exec(text.slice(i + 1, i + 4));
      if (digits) {
        c = Number(digits[0]);
        i += 3;
      } else if (i + 1 < text.length) {
        c = text.charCodeAt(++i);
      } else badName("dangling backslash");
    }
    if (c > 0xff) badName("character outside one octet");
    cur.push(c);
  }
  if (cur.length || text.charCodeAt(text.length - 1) !== 0x2e) endLabel();
  if (total > 255) badName("longer than 255 octets");
  return labels;
}

/** Wire labels to presentation form, escaping "." "\" and non-printable octets. */
export function formatName(labels: readonly Uint8Array[]): string {
  return labels
    .map((label) => {
      let s = "";
      for (const b of label) {
        if (b === 0x2e || b === 0x5c) s += `\\${String.fromCharCode(b)}`;
        else if (b > 0x20 && b < 0x7f) s += String.fromCharCode(b);
        else s += `\\${String(b).padStart(3, "0")}`;
      }
      return s;
    })
    .join(".");
}

// Host names of letters, digits, "-" and "_" (nearly all names in mail) need no escaping, so
// their presentation form is the input itself; checked here without building wire labels.
const PLAIN_NAME = /^[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*$/;

function isPlainName(text: string): boolean {
  return text.length <= 253 && PLAIN_NAME.test(text);
}

/** The comparison form of a presentation name: DNS names compare case-insensitively (ASCII only). */
export function nameKey(text: string): string {
  const bare = text.endsWith(".") ? text.slice(0, -1) : text;
  if (isPlainName(bare)) return bare.toLowerCase();
  // formatName output is pure ASCII (everything else is \DDD), so toLowerCase is ASCII-only here
  return formatName(parseName(text)).toLowerCase();
}


/**
 * A caller's name (what mailauth passes: plain text, no escapes) to presentation form.
 * A backslash is data here, not an escape: SPF macros can put any local-part text into a
 * name, and it must not be able to change the label structure of the query.
 */
export function nameFromInput(raw: string): string {
  const text = raw.endsWith(".") ? raw.slice(0, -1) : raw;
  if (isPlainName(text)) return text;
  if (text === "") throw new DnsError("EBADNAME", `bad domain name (empty): ${JSON.stringify(raw)}`);
  const labels = text.split(".").map((label) => {
    if (!/^[\x20-\x7e]*$/.test(label)) {
      throw new DnsError("EBADNAME", `bad domain name (not printable ASCII, use A-labels): ${JSON.stringify(raw)}`);
    }
    return Uint8Array.from(label, (c) => c.charCodeAt(0));
  });
  const formatted = formatName(labels);
  parseName(formatted); // length and empty-label checks
  return formatted;
}
