// Authentication-Results (RFC 8601), composed by us from structured findings in the style
// opendkim and opendmarc write. Every value that comes from the message or from DNS goes
// through `pvalue`, `reason` or `comment`, which quote or escape it: no header injection.

import { domainToASCII } from "node:url";

export type DkimResult = "pass" | "fail" | "neutral" | "policy" | "temperror" | "permerror" | "none";
export type SpfResult = "pass" | "fail" | "softfail" | "neutral" | "none" | "temperror" | "permerror";
export type DmarcResult = "pass" | "fail" | "none" | "temperror" | "permerror";
export type ArcResult = "pass" | "fail" | "none";
export type Disposition = "none" | "quarantine" | "reject";

export interface DkimFinding {
  readonly result: DkimResult;
  readonly reason?: string;
  readonly keyBits?: number;
  readonly domain?: string;
  readonly identity?: string;
  readonly selector?: string;
  readonly algorithm?: string;
  /** The first 8 characters of b=, to tell several signatures of one domain apart (RFC 6008). */
  readonly signaturePrefix?: string;
}

export interface SpfFinding {
  readonly result: SpfResult;
  readonly identity: "mailfrom" | "helo";
  /** The domain checked: MAIL FROM's domain, or the HELO name. */
  readonly domain: string;
  readonly reason?: string;
}

export interface DmarcFinding {
  readonly result: DmarcResult;
  readonly headerFrom?: string;
  /** The record's p= (upper case in the comment, as opendmarc writes it). */
  readonly policy?: string;
  readonly disposition: Disposition;
  readonly reason?: string;
}

export interface ArcFinding {
  readonly result: ArcResult;
  readonly reason?: string;
}

export interface Findings {
  readonly dkim: readonly DkimFinding[];
  readonly spf: readonly SpfFinding[];
  readonly dmarc?: DmarcFinding;
  readonly arc?: ArcFinding;
}

/** The header value, without the leading space, folded with LF+TAB between results. */
export function formatAuthenticationResults(authservId: string, findings: Findings): string {
  const parts: string[] = [];
  for (const d of findings.dkim) parts.push(formatDkim(d));
  for (const s of findings.spf) {
    parts.push(join([`spf=${s.result}`, s.reason && reason(s.reason), `smtp.${s.identity}=${domainValue(s.domain)}`]));
  }
  if (findings.dmarc) {
    const d = findings.dmarc;
    const policy = d.policy ? comment(`p=${d.policy} dis=${d.disposition}`) : undefined;
    parts.push(join([`dmarc=${d.result}`, d.reason && reason(d.reason), policy, d.headerFrom && `header.from=${domainValue(d.headerFrom)}`]));
  }
  if (findings.arc) parts.push(join([`arc=${findings.arc.result}`, findings.arc.reason && reason(findings.arc.reason)]));
  if (parts.length === 0) return `${authservId}; none`;
  return `${authservId};\n\t${parts.join(";\n\t")}`;
}

function formatDkim(d: DkimFinding): string {
  if (d.result === "none") return join(["dkim=none", d.reason && reason(d.reason)]);
  return join([
    `dkim=${d.result}`,
    d.result !== "pass" && d.reason ? reason(d.reason) : undefined,
    d.keyBits ? comment(`${d.keyBits}-bit key`) : undefined,
    d.domain && `header.d=${domainValue(d.domain)}`,
    d.identity && `header.i=${pvalue(d.identity)}`,
    d.algorithm && `header.a=${pvalue(d.algorithm)}`,
    d.selector && `header.s=${pvalue(d.selector)}`,
    d.signaturePrefix && `header.b=${pvalue(d.signaturePrefix)}`,
  ]);
}

// RFC 5322 §2.1.1: no line over 998 octets. Ordinary results stay on one line; only
// hostile lengths (a 250-octet domain, a long reason) fold between words.
const FOLD_AT = 900;

function join(items: ReadonlyArray<string | false | undefined | "">): string {
  let out = "";
  let line = 1; // the TAB a result line starts with
  for (const item of items) {
    if (typeof item !== "string" || item === "") continue;
    if (out === "") {
      out = item;
      line += item.length;
    } else if (line + 1 + item.length > FOLD_AT) {
      out += `\n\t${item}`;
      line = 1 + item.length;
    } else {
      out += ` ${item}`;
      line += 1 + item.length;
    }
  }
  return out;
}

// RFC 2045 token: printable ASCII except SPACE and tspecials.
const TOKEN = /^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+$/;
// RFC 8601 allows [local-part] "@" domain-name unquoted as a property value.
const ADDRESS = /^(?:[!#$%&'*+\-/=?^_`{|}~0-9A-Za-z]+(?:\.[!#$%&'*+\-/=?^_`{|}~0-9A-Za-z]+)*)?@[0-9A-Za-z](?:[0-9A-Za-z-]*[0-9A-Za-z])?(?:\.[0-9A-Za-z](?:[0-9A-Za-z-]*[0-9A-Za-z])?)*\.?$/;

/** Characters that must never reach a header we write: controls (CR, LF, NUL…) and non-ASCII. */
function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, "?");
}

// A value this long is hostile (a domain has at most 253 octets); longer ones are cut to keep lines under 998.
const MAX_VALUE = 900;

/** A property value: a token or address as it is, anything else as an escaped quoted-string. */
export function pvalue(s: string): string {
  if (s.length > MAX_VALUE) return `"${printable(s.slice(0, MAX_VALUE - 3)).replace(/[\\"]/g, "\\$&")}..."`;
  if (TOKEN.test(s) || ADDRESS.test(s)) return s;
  return `"${printable(s).replace(/[\\"]/g, "\\$&")}"`;
}

/** Domains from the message may be IDNs: write them as A-labels when they convert. */
function domainValue(domain: string): string {
  if (/^[\x21-\x7e]*$/.test(domain)) return pvalue(domain);
  const ascii = domainToASCII(domain);
  return pvalue(ascii === "" ? domain : ascii);
}

export function reason(s: string): string {
  return `reason=${pvalue(s.length > 100 ? `${s.slice(0, 97)}...` : s)}`;
}

export function comment(s: string): string {
  return `(${printable(s).replace(/[\\()]/g, "\\$&")})`;
}
