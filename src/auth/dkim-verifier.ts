// DKIM verification of one message (its DKIM-Signatures and the newest ARC-Message-Signature).
// mailauth's DkimVerifier still makes every decision — tag checks, header selection and
// canonicalisation, key rules, the verdicts — but two of its parts cost more than the rest
// together (profiles in docs/benchmarks.md) and are replaced here:
// - body hashes come from our BodyHasher (the signer's, linear and ~5× faster) instead of its
//   stream parser and per-byte canonicalisation;
// - a key record is parsed once per distinct record text, not once per message.
// It is fed directly, with no stream between: hashing a chunk is synchronous, and the header
// block is parsed by mailauth's own parseHeaders, as its stream parser would.

import type { DNSResolver } from "mailauth";
import { DkimVerifier, type BodyHash, type KeyCache } from "mailauth/lib/dkim/dkim-verifier.js";
import { getPublicKey, parseHeaders, toALabel, type KeyLookupOptions } from "mailauth/lib/tools.js";
import { CrlfNormalizer } from "./crlf.ts";
import { BodyHasher, type Canonicalization } from "./sign-canon.ts";

export interface DkimVerifyResult {
  readonly headerFrom: string[];
  readonly fromFields: number;
  readonly results: unknown[];
  /** ARC chain data for mailauth's arc(). */
  readonly arc: unknown;
}

export class DkimVerification {
  readonly #verifier: FastBodyVerifier;
  // mailauth's parser turns every bare LF into CRLF, headers and body alike; so do we.
  readonly #headerLines = new CrlfNormalizer();
  readonly #bodyLines = new CrlfNormalizer();
  #headerBlock: Buffer[] = [];
  #hashes: BodyHash[] | undefined;

  constructor(resolver: DNSResolver) {
    this.#verifier = new FastBodyVerifier({ resolver, strict: true });
  }

  /** One header field as it travels, ending in CRLF. */
  header(wire: Buffer): void {
    this.#headerBlock.push(this.#headerLines.push(wire));
  }

  async endOfHeaders(): Promise<void> {
    if (this.#hashes) return;
    const block = Buffer.concat(this.#headerBlock);
    this.#headerBlock = [];
    await this.#verifier.messageHeaders(parseHeaders(block));
    this.#hashes = [...this.#verifier.bodyHashes.values()];
  }

  body(chunk: Buffer): void {
    const hashes = this.#hashes;
    if (!hashes || hashes.length === 0) return;
    const bytes = this.#bodyLines.push(chunk);
    for (const h of hashes) h.update(bytes);
  }

  abort(): void {
    this.#hashes = [];
    this.#headerBlock = [];
  }

  async finish(): Promise<DkimVerifyResult> {
    // A message that ended inside its header section still has its headers looked at.
    await this.endOfHeaders();
    await this.#verifier.finalChunk();
    const v = this.#verifier;
    return { headerFrom: v.headerFrom, fromFields: v.fromFields, results: v.results, arc: v.arc };
  }
}

class FastBodyVerifier extends DkimVerifier {
  constructor(options: { resolver: DNSResolver; strict: boolean }) {
    super(options);
    // arc() reuses this cache only when its resolver is the one it is given.
    const cache: KeyCache = { resolver: options.resolver, get: (type, name, minBits, opts) => lookupKey(options.resolver, type, name, minBits, opts) };
    this.keyCache = cache;
    Object.defineProperty(this.arc, "keyCache", { value: cache, enumerable: false, configurable: true, writable: true });
  }

  override addBodyHash(bodyCanon: string, hashAlgo: string, maxBodyLength: number | ""): string {
    const key = `${bodyCanon}:${hashAlgo}:${maxBodyLength}`;
    if (!this.bodyHashes.has(key)) {
      this.bodyHashes.set(key, new BodyHashForMailauth(bodyCanon as Canonicalization, hashAlgo === "sha1" ? "sha1" : "sha256", maxBodyLength === "" ? undefined : maxBodyLength));
    }
    return key;
  }
}

/** Our BodyHasher behind the interface DkimVerifier reads (mailauth's lib/dkim/body/*.js). */
class BodyHashForMailauth implements BodyHash {
  hash?: string;
  byteLength = 0;
  readonly #hasher: BodyHasher;

  constructor(canonicalization: Canonicalization, algorithm: "sha256" | "sha1", limit: number | undefined) {
    this.#hasher = new BodyHasher(canonicalization, { algorithm, ...(limit === undefined ? {} : { limit }) });
  }

  get bodyHashedBytes(): number {
    return this.#hasher.hashedLength;
  }

  get canonicalizedLength(): number {
    return this.#hasher.canonicalLength;
  }

  update(chunk: Buffer): void {
    this.byteLength += chunk.length;
    this.#hasher.update(chunk);
  }

  // Only feeds the MIME structure finder, whose result we do not use.
  setContentType(): void {}

  digest(): string {
    return this.#hasher.digest();
  }

  getMimeStructureStart(): undefined {
    return undefined;
  }
}

// Parsed keys by record text and lookup options. The record comes from the resolver each time,
// so DNS TTLs still decide how long a key is used; only the parse (createPublicKey and its
// checks, 11% of a verification at 20 KB) is remembered. Outcomes, errors included, depend on
// nothing but the key. Map order makes the oldest entry the first to go.
const PARSED_KEYS_MAX = 4096;
const parsedKeys = new Map<string, { value: unknown } | { error: unknown }>();

async function lookupKey(resolver: DNSResolver, type: string, name: string, minBits: number | undefined, opts: KeyLookupOptions = {}): Promise<unknown> {
  let records: unknown;
  try {
    records = await resolver(toALabel(name), "TXT");
  } catch (error) {
    // mailauth maps lookup errors (no key, DNS failure) to its verdicts: let it.
    return getPublicKey(type, name, minBits, () => Promise.reject(error), opts);
  }
  const memoKey = JSON.stringify([type, name, minBits ?? null, Boolean(opts.strict), opts.hashAlgo ?? null, records]);
  const known = parsedKeys.get(memoKey);
  if (known) {
    if ("error" in known) throw known.error;
    return known.value;
  }
  const replay: DNSResolver = async () => records as never;
  let outcome: { value: unknown } | { error: unknown };
  try {
    outcome = { value: await getPublicKey(type, name, minBits, replay, opts) };
  } catch (error) {
    outcome = { error };
  }
  if (parsedKeys.size >= PARSED_KEYS_MAX) parsedKeys.delete(parsedKeys.keys().next().value!);
  parsedKeys.set(memoKey, outcome);
  if ("error" in outcome) throw outcome.error;
  return outcome.value;
}
