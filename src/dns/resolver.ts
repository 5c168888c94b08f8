/**
 * The resolver mailauth uses: node:dns-shaped results, node:dns error codes (see errors.ts for
 * what mailauth makes of each), a positive and negative cache that honours TTLs, and one
 * upstream query for any number of identical concurrent lookups.
 */
import type { DNSResolver } from "mailauth";
import { TtlLruCache } from "./cache.ts";
import { DnsClient, parseServer, systemServers, type ClientEvent } from "./client.ts";
import { DnsError, type DnsErrorCode } from "./errors.ts";
import { nameFromInput } from "./names.ts";
import { CLASS_IN, nameKey, RCODE, type DnsMessage, type MxData, type ResourceRecord, type SoaData } from "./wire.ts";

export interface ResultMap {
  A: string[];
  AAAA: string[];
  TXT: string[][];
  SPF: string[][];
  MX: MxData[];
  PTR: string[];
  CNAME: string[];
  NS: string[];
  SOA: SoaData;
}
export type LookupType = keyof ResultMap;

export interface CacheLimits {
  maxEntries: number;
  /** Approximate memory held by cached answers. */
  maxBytes: number;
  /** Seconds; longer record TTLs are shortened to this. */
  maxTtl: number;
  /** Seconds; caps the RFC 2308 negative TTL (min of SOA TTL and SOA MINIMUM). */
  maxNegativeTtl: number;
}

export interface ResolverOptions {
  /** "ip", "ip:port" or "[ipv6]:port"; default: the system's servers (/etc/resolv.conf). */
  servers?: readonly string[];
  /** Per attempt, milliseconds. */
  timeoutMs?: number;
  /** Rounds over the server list before giving up. */
  tries?: number;
  /** EDNS0 UDP payload size to advertise; 0 disables EDNS0. */
  ednsPayload?: number;
  /** false disables caching (in-flight de-duplication stays). */
  cache?: false | Partial<CacheLimits>;
  /** Monotonic milliseconds for cache expiry; tests inject a fake clock. */
  now?: () => number;
}

// 1232 is the DNS Flag Day 2020 size that avoids IP fragmentation; a 2048-bit DKIM key fits.
// Two tries of 2 s bound a lookup at ~4 s per server, which SPF's 10-lookup limit multiplies.
export const RESOLVER_DEFAULTS = {
  timeoutMs: 2000,
  tries: 2,
  ednsPayload: 1232,
  cache: { maxEntries: 10_000, maxBytes: 32 * 1024 * 1024, maxTtl: 3600, maxNegativeTtl: 300 } satisfies CacheLimits,
} as const;

export interface ResolverStats {
  /** resolve() calls. */
  queries: number;
  cacheHits: number;
  /** Lookups that went upstream. */
  cacheMisses: number;
  /** resolve() calls answered by a lookup already in flight. */
  inflightJoins: number;
  upstream: { udp: number; tcp: number };
  tcpFallbacks: number;
  /** Attempts that timed out (each retry counts). */
  timeouts: number;
  /** resolve() calls that rejected, by code. */
  errors: Partial<Record<DnsErrorCode, number>>;
  cache: { entries: number; bytes: number; evictions: number; expirations: number };
}

export interface Resolver {
  resolve<T extends LookupType>(name: string, rrtype: T): Promise<ResultMap[T]>;
  /** The same lookups as the `resolver` option of mailauth's spf/dkimVerify/dmarc/arc. */
  mailauth: DNSResolver;
  stats(): ResolverStats;
  /** Cancels lookups in flight (ECANCELLED) and drops the cache. */
  close(): void;
}

type Outcome = { ok: true; value: ResultMap[LookupType] } | { ok: false; code: "ENOTFOUND" | "ENODATA" };

const SYSCALL: Record<LookupType, string> = {
  A: "queryA",
  AAAA: "queryAaaa",
  TXT: "queryTxt",
  SPF: "querySpf",
  MX: "queryMx",
  PTR: "queryPtr",
  CNAME: "queryCname",
  NS: "queryNs",
  SOA: "querySoa",
};

const MAX_CNAME_CHAIN = 16;

function values(records: ResourceRecord[]): ResultMap[LookupType] {
  const out: unknown[] = [];
  for (const rr of records) {
    // latin1 maps each octet to one character, as node:dns does: nothing is lost or replaced,
    // so non-ASCII bytes still reach mailauth's "invalid characters" checks.
    if (rr.type === "TXT" || rr.type === "SPF") out.push(rr.data.map((c) => Buffer.from(c).toString("latin1")));
    else if (rr.type === "MX") out.push({ exchange: rr.data.exchange, priority: rr.data.priority });
    else if (rr.type === "SOA") return { ...rr.data };
    else out.push(rr.data);
  }
  return out as ResultMap[LookupType];
}

/**
 * Reads the answer for `qname`, following CNAMEs inside the answer section. Returns the outcome
 * and its TTL in seconds: the smallest TTL along the chain, and for "no record" the RFC 2308
 * negative TTL (0, i.e. not cached, when the server gave no SOA). Records for names outside
 * the chain are ignored: only the answer to the question asked is ever cached, so a server
 * cannot plant records for other names in our cache.
 */
export function interpret(msg: DnsMessage, qname: string, type: LookupType): { outcome: Outcome; ttl: number } {
  const answers = msg.answers.filter((rr) => rr.class === CLASS_IN).map((rr) => ({ key: nameKey(rr.name), rr }));
  let current = nameKey(qname);
  const seen = new Set([current]);
  let ttl = Infinity;
  for (;;) {
    const owned = answers.filter((a) => a.key === current).map((a) => a.rr);
    const matching = owned.filter((rr) => rr.type === type);
    if (matching.length) {
      return { outcome: { ok: true, value: values(matching) }, ttl: Math.min(ttl, ...matching.map((rr) => rr.ttl)) };
    }
    const cname = type === "CNAME" ? undefined : owned.find((rr) => rr.type === "CNAME");
    if (!cname || cname.type !== "CNAME") break;
    ttl = Math.min(ttl, cname.ttl);
    current = nameKey(cname.data);
    // A recursive server answers SERVFAIL for a CNAME loop; so do we (temperror, not "no record").
    if (seen.has(current) || seen.size > MAX_CNAME_CHAIN) throw new DnsError("ESERVFAIL", `CNAME loop or overlong chain at ${qname}`);
    seen.add(current);
  }
  const soa = msg.authorities.find((rr) => rr.type === "SOA");
  const negativeTtl = soa?.type === "SOA" ? Math.min(soa.ttl, soa.data.minttl) : 0;
  // RFC 6604: with a CNAME chain, NXDOMAIN is about the last name in the chain.
  const code = msg.header.rcode === RCODE.NXDOMAIN ? "ENOTFOUND" : "ENODATA";
  return { outcome: { ok: false, code }, ttl: Math.min(ttl, negativeTtl) };
}

/** A copy of an answer (strings, string lists or MX/SOA objects), made cheaper than structuredClone. */
function copyAnswer(value: ResultMap[LookupType]): ResultMap[LookupType] {
  if (!Array.isArray(value)) return { ...value };
  return (value as unknown[]).map((v) => (Array.isArray(v) ? [...v] : typeof v === "object" && v !== null ? { ...v } : v)) as ResultMap[LookupType];
}

function resolverError(code: DnsErrorCode, syscall: string, hostname: string, cause?: unknown): DnsError {
  // node:dns's message format. Details (which server, how) stay in `cause`: mailauth copies
  // the message into Received-SPF / Authentication-Results comments of the delivered mail.
  // These are answers, not faults: no stack is captured (every cached "no record" makes one).
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  let err: DnsError;
  try {
    err = new DnsError(code, `${syscall} ${code} ${hostname}`, cause === undefined ? undefined : { cause });
  } finally {
    Error.stackTraceLimit = limit;
  }
  err.hostname = hostname;
  err.syscall = syscall;
  return err;
}

export function createResolver(opts: ResolverOptions = {}): Resolver {
  const specs = opts.servers?.length ? opts.servers : systemServers();
  const servers = (specs.length ? specs : ["127.0.0.1"]).map(parseServer);
  const limits: CacheLimits = { ...RESOLVER_DEFAULTS.cache, ...(opts.cache || {}) };
  const controller = new AbortController();
  const counters = { queries: 0, cacheHits: 0, cacheMisses: 0, inflightJoins: 0, udp: 0, tcp: 0, tcpFallbacks: 0, timeouts: 0 };
  const errors: Partial<Record<DnsErrorCode, number>> = {};
  const onEvent = (e: ClientEvent) => {
    if (e === "udp") counters.udp++;
    else if (e === "tcp") counters.tcp++;
    else if (e === "tcp-fallback") counters.tcpFallbacks++;
    else counters.timeouts++;
  };
  const client = new DnsClient({
    servers,
    timeoutMs: opts.timeoutMs ?? RESOLVER_DEFAULTS.timeoutMs,
    tries: Math.max(1, opts.tries ?? RESOLVER_DEFAULTS.tries),
    ednsPayload: opts.ednsPayload ?? RESOLVER_DEFAULTS.ednsPayload,
    signal: controller.signal,
    onEvent,
  });
  const cache =
    opts.cache === false
      ? undefined
      : new TtlLruCache<Outcome>({ maxEntries: limits.maxEntries, maxWeight: limits.maxBytes, now: opts.now ?? (() => performance.now()) });
  const inflight = new Map<string, Promise<Outcome>>();

  async function lookup(qname: string, type: LookupType, key: string): Promise<Outcome> {
    const msg = await client.query(qname, type);
    const { outcome, ttl } = interpret(msg, qname, type);
    const cap = outcome.ok ? limits.maxTtl : limits.maxNegativeTtl;
    // UTF-16 strings: about two bytes per character, plus bookkeeping.
    cache?.set(key, outcome, Math.min(ttl, cap) * 1000, 2 * (key.length + JSON.stringify(outcome).length) + 100);
    return outcome;
  }

  async function resolve<T extends LookupType>(name: string, rrtype: T): Promise<ResultMap[T]> {
    counters.queries++;
    const syscall = SYSCALL[rrtype] ?? "query";
    const hostname = String(name);
    try {
      if (!Object.hasOwn(SYSCALL, rrtype)) {
        throw Object.assign(new TypeError(`unsupported rrtype ${JSON.stringify(rrtype)}`), { code: "ERR_INVALID_ARG_VALUE" });
      }
      if (controller.signal.aborted) throw new DnsError("ECANCELLED", "DNS resolver closed");
      const qname = nameFromInput(hostname);
      const key = `${rrtype} ${nameKey(qname)}`;
      let outcome = cache?.get(key);
      if (outcome) counters.cacheHits++;
      else {
        let pending = inflight.get(key);
        if (pending) counters.inflightJoins++;
        else {
          counters.cacheMisses++;
          pending = lookup(qname, rrtype, key);
          inflight.set(key, pending);
          const done = () => inflight.delete(key);
          pending.then(done, done);
        }
        outcome = await pending;
      }
      // Callers get their own copies: mailauth sorts MX lists in place and writes onto errors.
      if (outcome.ok) return copyAnswer(outcome.value) as ResultMap[T];
      throw resolverError(outcome.code, syscall, hostname);
    } catch (e) {
      if (!(e instanceof DnsError)) throw e;
      errors[e.code] = (errors[e.code] ?? 0) + 1;
      throw e.syscall ? e : resolverError(e.code, syscall, hostname, e);
    }
  }

  return {
    resolve,
    mailauth: ((name: string, rrtype: string) => resolve(name, rrtype as LookupType)) as DNSResolver,
    stats: () => ({
      queries: counters.queries,
      cacheHits: counters.cacheHits,
      cacheMisses: counters.cacheMisses,
      inflightJoins: counters.inflightJoins,
      upstream: { udp: counters.udp, tcp: counters.tcp },
      tcpFallbacks: counters.tcpFallbacks,
      timeouts: counters.timeouts,
      errors: { ...errors },
      cache: { entries: cache?.size ?? 0, bytes: cache?.weight ?? 0, evictions: cache?.evictions ?? 0, expirations: cache?.expirations ?? 0 },
    }),
    close: () => {
      controller.abort();
      cache?.clear();
      inflight.clear();
    },
  };
}
