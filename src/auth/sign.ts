// DKIM signing (RFC 6376, RFC 8463) of one message as the milter sees it: header fields one by
// one, the body in chunks, signatures at end of message. The body is canonicalised and hashed as
// it arrives and never kept; only the header fields that will be signed are kept.
//
// Written on node:crypto instead of mailauth's dkimSign because mailauth cannot over-sign (a
// repeated name in its header list adds nothing to h=), its relaxed body canonicalisation is
// quadratic in line length, and it re-parses the PEM key for every message.

import { createHash, sign as cryptoSign, type KeyObject } from "node:crypto";
import { domainToASCII } from "node:url";
import { isValidDomainName } from "../keys/tables.ts";
import type { SigningKey } from "../keys/load.ts";
import { asciiLower, BodyHasher, canonicalHeader, CRLF, rawHeader, type Canonicalization, type RawHeader } from "./sign-canon.ts";
import { dkimQuotedPrintable, layoutSignature } from "./sign-format.ts";

export interface SignatureSpec {
  readonly domain: string;
  readonly selector: string;
  readonly key: SigningKey;
  /** i= (the agent or user identifier); its domain must be `domain` or a subdomain of it. */
  readonly identity?: string;
}

export type CanonicalizationSpec = "relaxed/relaxed" | "relaxed/simple" | "simple/simple" | "simple/relaxed";

export interface SignOptions {
  /** Header fields to sign when present; default DEFAULT_SIGNED_HEADERS. From is always signed. */
  readonly headers?: readonly string[];
  /**
   * Header fields listed in h= once more than they occur (also when absent), so that a copy
   * added later breaks the signature; default DEFAULT_OVERSIGNED_HEADERS. These are signed even
   * when `headers` does not name them. [] turns over-signing off.
   */
  readonly oversign?: readonly string[];
  /** header/body canonicalisation; default relaxed/relaxed. */
  readonly canonicalization?: CanonicalizationSpec;
  /** Adds x= this many seconds after t=. */
  readonly expireSeconds?: number;
  readonly now?: () => Date;
}

export interface SignedHeader {
  readonly name: "DKIM-Signature";
  /**
   * The value for INSHEADER: no leading space (the field must be written as "DKIM-Signature: "
   * + value, which is what was hashed for simple header canonicalisation), folded with LF + TAB,
   * printable ASCII only.
   */
  readonly value: string;
  readonly domain: string;
  readonly selector: string;
  readonly algorithm: string;
}

export type SignErrorCode = "invalid-spec" | "invalid-option" | "no-from" | "state";

export class SignError extends Error {
  readonly code: SignErrorCode;
  constructor(code: SignErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SignError";
    this.code = code;
  }
}

/**
 * opendkim's default signed header list (dkim_should_signhdrs) plus what RFC 6376 §5.4.1
 * recommends and the MIME fields whose change alters how the body is read; List-Unsubscribe-Post
 * because RFC 8058 §4 requires it to be signed.
 */
export const DEFAULT_SIGNED_HEADERS: readonly string[] = [
  "From", "Sender", "Reply-To", "Subject", "Date", "To", "Cc",
  "Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Message-ID",
  "In-Reply-To", "References",
  "List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
  "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID", "Content-Description",
];

/** The fields a forger most wants to add a second copy of (a display From, a Subject, a Reply-To). */
export const DEFAULT_OVERSIGNED_HEADERS: readonly string[] = ["From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID"];

const CANONICALIZATIONS: readonly string[] = ["relaxed/relaxed", "relaxed/simple", "simple/simple", "simple/relaxed"];
// RFC 8301 §3.2 sets the floor; verifiers are only required to handle up to 4096 bits.
const MIN_RSA_BITS = 1024;
const MAX_RSA_BITS = 4096;
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/;

interface PreparedSpec {
  readonly domain: string;
  readonly selector: string;
  readonly identity: string | undefined;
  readonly algorithm: SigningKey["algorithm"];
  readonly privateKey: KeyObject;
}

interface SignedName {
  readonly name: string;
  readonly oversign: boolean;
}

export class MessageSigner {
  private readonly specs: readonly PreparedSpec[];
  private readonly names: readonly SignedName[];
  private readonly wanted: ReadonlySet<string>;
  private readonly headerCanon: Canonicalization;
  private readonly canonicalization: CanonicalizationSpec;
  private readonly expireSeconds: number | undefined;
  private readonly now: () => Date;
  private readonly hasher: BodyHasher;
  /** The fields that will be signed, in message order; everything else is not kept. */
  private readonly kept: RawHeader[] = [];
  private state: "headers" | "body" | "finished" = "headers";

  constructor(specs: readonly SignatureSpec[], options: SignOptions = {}) {
    if (specs.length === 0) throw new SignError("invalid-spec", "no signature to make: at least one domain, selector and key is needed");
    this.specs = specs.map(prepareSpec);
    const canonicalization = options.canonicalization ?? "relaxed/relaxed";
    if (!CANONICALIZATIONS.includes(canonicalization)) {
      throw new SignError("invalid-option", `canonicalization must be one of ${CANONICALIZATIONS.join(", ")}, got ${JSON.stringify(canonicalization)}`);
    }
    this.canonicalization = canonicalization;
    const [header, body] = canonicalization.split("/") as [Canonicalization, Canonicalization];
    this.headerCanon = header;
    this.hasher = new BodyHasher(body);
    if (options.expireSeconds !== undefined && !(Number.isSafeInteger(options.expireSeconds) && options.expireSeconds > 0)) {
      throw new SignError("invalid-option", `expireSeconds must be a whole number of seconds > 0, got ${String(options.expireSeconds)}`);
    }
    this.expireSeconds = options.expireSeconds;
    this.now = options.now ?? (() => new Date());
    this.names = signedNames(options.headers ?? DEFAULT_SIGNED_HEADERS, options.oversign ?? DEFAULT_OVERSIGNED_HEADERS);
    this.wanted = new Set(this.names.map((n) => asciiLower(n.name)));
  }

  /** One header field as the milter delivers it (HDR_LEADSPC): the bytes after the colon, folds as LF. */
  header(name: string, value: Buffer): void {
    if (this.state !== "headers") throw new SignError("state", `header "${name}" after the body started`);
    if (this.wanted.has(asciiLower(name.trim()))) this.kept.push(rawHeader(name, value));
  }

  /** A piece of the body: CRLF lines cut at any byte. */
  body(chunk: Buffer): void {
    if (this.state === "finished") throw new SignError("state", "body data after finish()");
    this.state = "body";
    this.hasher.update(chunk);
  }

  /** The signatures, in the order of the specs. */
  async finish(): Promise<SignedHeader[]> {
    if (this.state === "finished") throw new SignError("state", "finish() called twice");
    this.state = "finished";
    const bodyHash = this.hasher.digest();
    if (!this.kept.some((h) => h.key === "from")) {
      // RFC 6376 §5.4: From MUST be signed; a signature without it fails everywhere (§6.1.1).
      throw new SignError("no-from", "the message has no From header field; it cannot be DKIM-signed");
    }
    const { headerNames, data } = this.selectHeaders();
    const t = Math.floor(this.now().getTime() / 1000);
    if (!Number.isSafeInteger(t) || t < 0) throw new SignError("invalid-option", `the clock says ${String(this.now())}, which t= cannot hold`);
    return Promise.all(
      this.specs.map(async (spec) => {
        const layout = layoutSignature({
          algorithm: spec.algorithm,
          canonicalization: this.canonicalization,
          domain: spec.domain,
          selector: spec.selector,
          ...(spec.identity !== undefined && { identity: spec.identity }),
          timestamp: t,
          ...(this.expireSeconds !== undefined && { expiration: t + this.expireSeconds }),
          headerNames,
          bodyHash,
        });
        // §3.7: the signature field itself, b= empty, canonicalised like the others, no CRLF.
        const own = canonicalHeader(rawHeader("DKIM-Signature", Buffer.from(` ${layout.unsigned}`, "latin1")), this.headerCanon);
        const signature = await signData(spec, Buffer.concat([data, own]));
        const value = layout.complete(signature.toString("base64"));
        return { name: "DKIM-Signature", value, domain: spec.domain, selector: spec.selector, algorithm: spec.algorithm } as const;
      }),
    );
  }

  /**
   * h= and the hashed header data. Each name is listed once per instance present (so all are
   * signed) plus once for an over-signed name; a verifier takes instances bottom-up (§5.4.2), so
   * the data is built the same way, and the extra entry matches nothing (hashed as empty).
   */
  private selectHeaders(): { headerNames: string[]; data: Buffer } {
    const byName = new Map<string, RawHeader[]>();
    for (const h of this.kept) {
      const list = byName.get(h.key);
      if (list === undefined) byName.set(h.key, [h]);
      else list.push(h);
    }
    const headerNames: string[] = [];
    const parts: Buffer[] = [];
    for (const { name, oversign } of this.names) {
      const instances = byName.get(asciiLower(name)) ?? [];
      for (let i = instances.length - 1; i >= 0; i--) {
        headerNames.push(name);
        parts.push(canonicalHeader(instances[i]!, this.headerCanon), CRLF);
      }
      if (oversign) headerNames.push(name);
    }
    return { headerNames, data: Buffer.concat(parts) };
  }
}

/** The signed names in order, each once, From first and always present. */
function signedNames(headers: readonly string[], oversign: readonly string[]): SignedName[] {
  const over = new Set<string>();
  for (const name of oversign) over.add(checkName(name, "oversign"));
  const seen = new Map<string, SignedName>();
  for (const name of ["From", ...headers, ...oversign]) {
    const key = checkName(name, "headers");
    if (!seen.has(key)) seen.set(key, { name: name.trim(), oversign: over.has(key) });
  }
  return [...seen.values()];
}

function checkName(name: string, option: string): string {
  const trimmed = name.trim();
  if (!FIELD_NAME.test(trimmed)) throw new SignError("invalid-option", `${option}: ${JSON.stringify(name)} is not a header field name`);
  const key = asciiLower(trimmed);
  // Our own field is added after signing; listing it would make h= name a field we do not hash.
  if (key === "dkim-signature") throw new SignError("invalid-option", `${option}: DKIM-Signature cannot be signed by the signature itself`);
  return key;
}

function prepareSpec(spec: SignatureSpec): PreparedSpec {
  const domain = aLabel(spec.domain);
  const selector = aLabel(spec.selector);
  const where = `signature ${spec.selector}._domainkey.${spec.domain}`;
  if (domain === undefined) throw new SignError("invalid-spec", `${where}: ${JSON.stringify(spec.domain)} is not a valid domain name for d=`);
  if (selector === undefined) throw new SignError("invalid-spec", `${where}: ${JSON.stringify(spec.selector)} is not a valid selector`);
  const { key } = spec;
  const actual = key.privateKey.asymmetricKeyType;
  const expected = key.algorithm === "rsa-sha256" ? "rsa" : key.algorithm === "ed25519-sha256" ? "ed25519" : undefined;
  if (expected === undefined || actual !== expected) {
    throw new SignError("invalid-spec", `${where}: key from ${key.source} is ${String(actual)}, which cannot make ${String(key.algorithm)} signatures`);
  }
  if (actual === "rsa") {
    const bits = key.privateKey.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
      throw new SignError("invalid-spec", `${where}: RSA key from ${key.source} is ${bits} bits; DKIM signing needs ${MIN_RSA_BITS}–${MAX_RSA_BITS} (RFC 8301)`);
    }
  }
  return { domain, selector, identity: spec.identity === undefined ? undefined : identityTag(spec.identity, domain, where), algorithm: key.algorithm, privateKey: key.privateKey };
}

function aLabel(name: string): string | undefined {
  const trimmed = name.trim().replace(/\.$/, "");
  // domainToASCII lower-cases and turns U-labels into A-labels; it returns "" for garbage.
  const ascii = /^[\x20-\x7e]*$/.test(trimmed) ? trimmed.toLowerCase() : domainToASCII(trimmed);
  return ascii !== "" && isValidDomainName(ascii) ? ascii : undefined;
}

function identityTag(identity: string, domain: string, where: string): string {
  const at = identity.lastIndexOf("@");
  const idDomain = at === -1 ? undefined : aLabel(identity.slice(at + 1));
  if (idDomain === undefined) throw new SignError("invalid-spec", `${where}: identity ${JSON.stringify(identity)} is not [local-part]@domain`);
  // §3.5: a verifier ignores the signature otherwise.
  if (idDomain !== domain && !idDomain.endsWith(`.${domain}`)) {
    throw new SignError("invalid-spec", `${where}: identity domain ${idDomain} is neither ${domain} nor a subdomain of it`);
  }
  return dkimQuotedPrintable(`${identity.slice(0, at)}@${idDomain}`);
}

/**
 * RSA: PKCS#1 v1.5 over SHA-256 of the data. Ed25519 (RFC 8463 §3): PureEdDSA over the SHA-256
 * digest of the data. The callback form runs on the libuv pool: a 4096-bit RSA signature takes
 * ~5 ms, which would otherwise stall every other connection.
 */
function signData(spec: PreparedSpec, data: Buffer): Promise<Buffer> {
  const rsa = spec.algorithm === "rsa-sha256";
  const input = rsa ? data : createHash("sha256").update(data).digest();
  return new Promise((resolve, reject) => {
    cryptoSign(rsa ? "sha256" : null, input, spec.privateKey, (err, signature) => (err ? reject(err) : resolve(signature)));
  });
}
