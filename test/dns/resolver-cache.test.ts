import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createResolver, type Resolver, type ResolverOptions } from "../../src/dns/index.ts";
import { decodeMessage, encodeMessage, RCODE } from "../../src/dns/wire.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";

let dns: DnsTestServer;
// The cache reads this instead of the real clock, so expiry is tested by moving it, not by waiting.
let clock = 0;
const resolvers: Resolver[] = [];
function make(opts: ResolverOptions = {}): Resolver {
  const r = createResolver({ servers: dns.servers.slice(0, 1), timeoutMs: 1000, now: () => clock, ...opts });
  resolvers.push(r);
  return r;
}
const codeOf = (p: Promise<unknown>) => p.then(() => "resolved", (e: { code?: string }) => e.code);

beforeAll(async () => {
  dns = await startDnsServer({
    zone: {
      "ttl10.example.com": { A: "192.0.2.10", ttl: 10 },
      "day.example.com": { TXT: "a day", ttl: 86400 },
      "zero.example.com": { A: "192.0.2.0", ttl: 0 },
      "www.example.com": { CNAME: "example.com", ttl: 5 },
      "example.com": { A: "192.0.2.1", ttl: 300, SOA: { ttl: 600, minimum: 30 } },
      "neg.example.org": { SOA: { ttl: 7200, minimum: 3600 } },
      "big.example.com": { TXT: "y".repeat(1000) },
      "servfail.example.com": { behaviour: "servfail" },
      "nosoa.example.com": {
        // An NXDOMAIN without SOA: RFC 2308 5 says not to cache it.
        raw: (query) => {
          const q = decodeMessage(query);
          return encodeMessage({ header: { id: q.header.id, qr: true, rcode: RCODE.NXDOMAIN }, questions: q.questions });
        },
      },
      ...Object.fromEntries(["a", "b", "c"].map((n) => [`${n}.lru.example.com`, { A: "192.0.2.3" }])),
    },
  });
});
afterAll(async () => {
  await dns.close();
});
afterEach(() => {
  for (const r of resolvers.splice(0)) r.close();
  dns.resetLog();
  clock = 0;
});

describe("positive cache", () => {
  it("answers a repeated question from the cache until the record's TTL has passed", async () => {
    const r = make();
    await r.resolve("ttl10.example.com", "A");
    clock = 9_999;
    expect(await r.resolve("ttl10.example.com", "A")).toEqual(["192.0.2.10"]);
    expect(dns.count()).toBe(1);
    clock = 10_000;
    await r.resolve("ttl10.example.com", "A");
    expect(dns.count()).toBe(2);
    expect(r.stats()).toMatchObject({ queries: 3, cacheHits: 1, cacheMisses: 2, cache: { expirations: 1 } });
  });

  it("treats names case-insensitively and ignores a trailing dot", async () => {
    const r = make();
    await r.resolve("TTL10.Example.COM.", "A");
    await r.resolve("ttl10.example.com", "A");
    expect(dns.count()).toBe(1);
  });

  it("keeps record types apart", async () => {
    const r = make();
    await r.resolve("example.com", "A");
    await codeOf(r.resolve("example.com", "TXT"));
    expect(dns.count()).toBe(2);
  });

  it("shortens long TTLs to maxTtl", async () => {
    const r = make({ cache: { maxTtl: 60 } });
    await r.resolve("day.example.com", "TXT");
    clock = 59_999;
    await r.resolve("day.example.com", "TXT");
    expect(dns.count()).toBe(1);
    clock = 60_000;
    await r.resolve("day.example.com", "TXT");
    expect(dns.count()).toBe(2);
  });

  it("does not cache a TTL of zero", async () => {
    const r = make();
    await r.resolve("zero.example.com", "A");
    await r.resolve("zero.example.com", "A");
    expect(dns.count()).toBe(2);
  });

  it("caches a CNAME chain for its shortest TTL", async () => {
    const r = make();
    expect(await r.resolve("www.example.com", "A")).toEqual(["192.0.2.1"]);
    clock = 4_999;
    await r.resolve("www.example.com", "A");
    expect(dns.count()).toBe(1);
    clock = 5_000;
    await r.resolve("www.example.com", "A");
    expect(dns.count()).toBe(2);
  });

  it("does nothing but de-duplicate with cache: false", async () => {
    const r = make({ cache: false });
    await r.resolve("ttl10.example.com", "A");
    await r.resolve("ttl10.example.com", "A");
    expect(dns.count()).toBe(2);
  });
});

describe("negative cache", () => {
  it("caches NXDOMAIN for min(SOA TTL, SOA MINIMUM) (RFC 2308 5)", async () => {
    const r = make();
    expect(await codeOf(r.resolve("missing.example.com", "TXT"))).toBe("ENOTFOUND");
    clock = 29_999;
    expect(await codeOf(r.resolve("missing.example.com", "TXT"))).toBe("ENOTFOUND");
    expect(dns.count()).toBe(1);
    clock = 30_000;
    expect(await codeOf(r.resolve("missing.example.com", "TXT"))).toBe("ENOTFOUND");
    expect(dns.count()).toBe(2);
  });

  it("caches NODATA the same way", async () => {
    const r = make();
    expect(await codeOf(r.resolve("example.com", "MX"))).toBe("ENODATA");
    clock = 29_999;
    expect(await codeOf(r.resolve("example.com", "MX"))).toBe("ENODATA");
    expect(dns.count()).toBe(1);
  });

  it("caps the negative TTL at maxNegativeTtl", async () => {
    const r = make({ cache: { maxNegativeTtl: 5 } });
    await codeOf(r.resolve("x.neg.example.org", "TXT"));
    clock = 4_999;
    await codeOf(r.resolve("x.neg.example.org", "TXT"));
    expect(dns.count()).toBe(1);
    clock = 5_000;
    await codeOf(r.resolve("x.neg.example.org", "TXT"));
    expect(dns.count()).toBe(2);
  });

  it("does not cache a negative answer without SOA", async () => {
    const r = make();
    expect(await codeOf(r.resolve("nosoa.example.com", "A"))).toBe("ENOTFOUND");
    expect(await codeOf(r.resolve("nosoa.example.com", "A"))).toBe("ENOTFOUND");
    expect(dns.count()).toBe(2);
  });

  it("does not cache failures: the next message gets a fresh try", async () => {
    const r = make();
    expect(await codeOf(r.resolve("servfail.example.com", "A"))).toBe("ESERVFAIL");
    expect(await codeOf(r.resolve("servfail.example.com", "A"))).toBe("ESERVFAIL");
    expect(dns.count()).toBe(2);
    expect(r.stats().errors).toEqual({ ESERVFAIL: 2 });
  });
});

describe("limits", () => {
  it("evicts the least recently used answer beyond maxEntries", async () => {
    const r = make({ cache: { maxEntries: 2 } });
    await r.resolve("a.lru.example.com", "A");
    await r.resolve("b.lru.example.com", "A");
    await r.resolve("a.lru.example.com", "A"); // a is now the most recent
    await r.resolve("c.lru.example.com", "A"); // evicts b
    await r.resolve("a.lru.example.com", "A");
    expect(dns.count({ name: "a.lru.example.com" })).toBe(1);
    await r.resolve("b.lru.example.com", "A");
    expect(dns.count({ name: "b.lru.example.com" })).toBe(2);
    expect(r.stats().cache).toMatchObject({ entries: 2 });
    expect(r.stats().cache.evictions).toBeGreaterThanOrEqual(1);
  });

  it("does not keep answers that would exceed maxBytes", async () => {
    const r = make({ cache: { maxBytes: 2048 } });
    await r.resolve("big.example.com", "TXT");
    await r.resolve("big.example.com", "TXT");
    expect(dns.count({ name: "big.example.com" })).toBe(2);
    await r.resolve("ttl10.example.com", "A");
    await r.resolve("ttl10.example.com", "A");
    expect(dns.count({ name: "ttl10.example.com" })).toBe(1);
  });
});
