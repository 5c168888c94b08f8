/**
 * Error codes follow node:dns (c-ares) so that mailauth, which was written against
 * dns.promises.resolve, classifies our failures the same way it classifies Node's.
 *
 * What mailauth 7.1.0 does with them (checked in node_modules/mailauth/lib: spf/index.js
 * limitedResolver, spf/spf-verify.js, tools.js KEY_ERROR_COMMENTS, dkim/dkim-verifier.js,
 * dmarc/get-dmarc-record.js NO_RECORD_CODES):
 * - ENOTFOUND / ENODATA: "no record". SPF counts a void lookup and goes on; no SPF record at
 *   all gives `none` (RFC 7208 4.5). DMARC treats the name as having no policy record, so
 *   the tree walk goes on and no record anywhere gives `none` (RFC 7489 6.6.3). DKIM reports
 *   `neutral (no key)`, where RFC 6376 6.1.2 says PERMFAIL: a mailauth deviation, see
 *   mailauth-notes.md.
 * - EBADNAME: a name that cannot exist. SPF gives permerror ("Invalid domain"), DMARC treats
 *   it as no record.
 * - everything else (ETIMEOUT, ESERVFAIL, EREFUSED, EBADRESP, ECONNREFUSED, ...): a temporary
 *   failure. SPF `temperror` (RFC 7208 2.6.6, 5), DKIM `temperror` (RFC 6376 6.1.2: the key
 *   query failed to respond, TEMPFAIL), DMARC `temperror`.
 * So ENOTFOUND/ENODATA/EBADNAME must never stand for a transient failure, and a transient
 * failure must never be reported as one of them.
 */
export type DnsErrorCode =
  | "ENOTFOUND"
  | "ENODATA"
  | "EBADNAME"
  | "ESERVFAIL"
  | "EREFUSED"
  | "ENOTIMP"
  | "EFORMERR"
  | "ETIMEOUT"
  | "EBADRESP"
  | "ECONNREFUSED"
  | "ECANCELLED";

export class DnsError extends Error {
  readonly code: DnsErrorCode;
  hostname?: string;
  syscall?: string;

  constructor(code: DnsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DnsError";
    this.code = code;
  }
}

/** True for the two codes that mean "the DNS says there is no such record". */
export function isNoRecord(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "ENOTFOUND" || code === "ENODATA";
}
