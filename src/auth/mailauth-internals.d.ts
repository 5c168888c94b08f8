// The parts of mailauth 7.1.0 (pinned) that dkim-verifier.ts uses below its public API, typed as
// far as we use them. An upgrade must re-check these against the package's lib/ sources.

declare module "mailauth/lib/tools.js" {
  import type { DNSResolver } from "mailauth";

  export interface ParsedHeaderRow {
    key: string | null;
    casedKey?: string;
    line: Buffer;
  }
  export interface ParsedHeaders {
    parsed: ParsedHeaderRow[];
    original: Buffer;
  }
  export function parseHeaders(block: Buffer): ParsedHeaders;
  /** RFC 8616: the A-label form of a domain name, as key lookups use it. */
  export function toALabel(name: string): string;

  export interface KeyLookupOptions {
    strict?: boolean;
    hashAlgo?: string;
  }
  /** Looks the key record up and parses it; rejects with an Error carrying .code (and .rr). */
  export function getPublicKey(type: string, name: string, minBitLength: number | undefined, resolver: DNSResolver, options?: KeyLookupOptions): Promise<unknown>;
}

declare module "mailauth/lib/dkim/dkim-verifier.js" {
  import type { DNSResolver } from "mailauth";
  import type { KeyLookupOptions, ParsedHeaders } from "mailauth/lib/tools.js";

  /** What DkimVerifier asks of a body hash: mailauth's own classes in lib/dkim/body/. */
  export interface BodyHash {
    hash?: string;
    readonly byteLength: number;
    readonly bodyHashedBytes: number;
    readonly canonicalizedLength: number;
    update(chunk: Buffer): void;
    setContentType(contentType: unknown): void;
    digest(encoding: "base64"): string;
    getMimeStructureStart(): number | undefined;
  }

  export interface KeyCache {
    resolver: DNSResolver;
    get(type: string, name: string, minBitLength: number | undefined, options?: KeyLookupOptions): Promise<unknown>;
  }

  export class DkimVerifier {
    constructor(options: { resolver: DNSResolver; strict?: boolean });
    headers: ParsedHeaders | false | undefined;
    bodyHashes: Map<string, BodyHash>;
    keyCache: KeyCache;
    headerFrom: string[];
    fromFields: number;
    results: unknown[];
    arc: Record<string, unknown>;
    messageHeaders(headers: ParsedHeaders): Promise<void>;
    addBodyHash(bodyCanon: string, hashAlgo: string, maxBodyLength: number | ""): string;
    finalChunk(): Promise<void>;
  }
}

// Only tests reach for these: to show that verification no longer runs them.
declare module "mailauth/lib/dkim/body/relaxed.js" {
  export class RelaxedHash {
    update(chunk: Buffer): void;
  }
}
declare module "mailauth/lib/dkim/body/simple.js" {
  export class SimpleHash {
    update(chunk: Buffer): void;
  }
}
