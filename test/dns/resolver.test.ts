import { promises as nodeDns } from "node:dns";
import { createSocket } from "node:dgram";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createResolver, type Resolver, type ResolverOptions } from "../../src/dns/index.ts";
import { decodeMessage, encodeMessage, RCODE } from "../../src/dns/wire.ts";
import { startDnsServer, type DnsTestServer, type Zone } from "../support/dns-server.ts";

const zone: Zone = {
  "example.com": {
    A: ["192.0.2.1", "192.0.2.2"],
    AAAA: "2001:db8::1",
    MX: [
      [20, "mx2.example.com"],
      [10, "mx1.example.com"],
    ],
    TXT: ["v=spf1 -all", ["v=DKIM1; k=rsa; ", "p=MIIB"]],
    NS: "ns1.example.com",
    SOA: { mname: "ns1.example.com", minimum: 60, ttl: 120 },
  },
  "long.example.com": { TXT: "x".repeat(600) },
  "bytes.example.com": { TXT: [[Uint8Array.from([0x76, 0xe9, 0xff, 0x80])]] },
  "big.example.com": { TXT: Array.from({ length: 10 }, (_, i) => `${i}`.repeat(200)) },
  "www.example.com": { CNAME: "alias.example.com", ttl: 5 },
  "alias.example.com": { CNAME: "example.com", ttl: 3000 },
  "dangling.example.com": { CNAME: "gone.example.com" },
  "loop1.example.com": { CNAME: "loop2.example.com" },
  "loop2.example.com": { CNAME: "loop1.example.com" },
  "2.0.192.in-addr.arpa": {},
  "1.2.0.192.in-addr.arpa": { PTR: ["host.example.com", "other.example.net"] },
  "a.b.deep.example.com": { A: "192.0.2.9" },
  "servfail.example.com": { behaviour: "servfail" },
  "refused.example.com": { behaviour: "refused" },
  "timeout.example.com": { behaviour: "timeout" },
  "tc.example.com": { TXT: "over tcp", behaviour: "truncate" },
  "junk.example.com": { behaviour: "junk" },
  "foreign.example.com": { behaviour: "junk-foreign-id" },
  "ptrloop.example.com": { behaviour: "compression-loop" },
  "only-txt-timeout.example.com": { TXT: "v=spf1 -all", behaviour: { "*": "timeout", TXT: "answer" } },
};

let dns: DnsTestServer;
const resolvers: Resolver[] = [];
function make(opts: ResolverOptions = {}): Resolver {
  const r = createResolver({ servers: dns.servers.slice(0, 1), timeoutMs: 1000, tries: 2, ...opts });
  resolvers.push(r);
  return r;
}
const codeOf = (p: Promise<unknown>) => p.then(() => "resolved", (e: { code?: string }) => e.code);

beforeAll(async () => {
  dns = await startDnsServer({ zone, ipv6: true });
});
afterAll(async () => {
  await dns.close();
});
afterEach(() => {
  for (const r of resolvers.splice(0)) r.close();
  dns.resetLog();
});

describe("answers", () => {
  it("returns A, AAAA, MX, NS, SOA and PTR in node:dns shapes", async () => {
    const r = make();
    expect(await r.resolve("example.com", "A")).toEqual(["192.0.2.1", "192.0.2.2"]);
    expect(await r.resolve("example.com", "AAAA")).toEqual(["2001:db8::1"]);
    expect(await r.resolve("example.com", "MX")).toEqual([
      { exchange: "mx2.example.com", priority: 20 },
      { exchange: "mx1.example.com", priority: 10 },
    ]);
    expect(await r.resolve("example.com", "NS")).toEqual(["ns1.example.com"]);
    expect(await r.resolve("example.com", "SOA")).toMatchObject({ nsname: "ns1.example.com", minttl: 60 });
    expect(await r.resolve("1.2.0.192.in-addr.arpa", "PTR")).toEqual(["host.example.com", "other.example.net"]);
  });

  it("keeps each TXT record's character-strings as separate chunks", async () => {
    const r = make();
    expect(await r.resolve("example.com", "TXT")).toEqual([["v=spf1 -all"], ["v=DKIM1; k=rsa; ", "p=MIIB"]]);
    const long = await r.resolve("long.example.com", "TXT");
    expect(long.map((rec) => rec.map((c) => c.length))).toEqual([[255, 255, 90]]);
  });

  it("gives the same results and error codes as node:dns for the same server", async () => {
    const node = new nodeDns.Resolver({ timeout: 1000, tries: 1 });
    node.setServers(dns.servers.slice(0, 1));
    const r = make();
    const cases: [string, "A" | "AAAA" | "TXT" | "NS" | "PTR" | "CNAME" | "SOA"][] = [
      ["example.com", "A"],
      ["example.com", "AAAA"],
      ["example.com", "TXT"],
      ["long.example.com", "TXT"],
      ["bytes.example.com", "TXT"],
      ["example.com", "NS"],
      ["example.com", "SOA"],
      ["1.2.0.192.in-addr.arpa", "PTR"],
      ["www.example.com", "A"],
      ["www.example.com", "CNAME"],
      ["nope.example.com", "A"],
      ["example.com", "PTR"],
      ["servfail.example.com", "TXT"],
      ["refused.example.com", "TXT"],
    ];
    for (const [name, type] of cases) {
      const theirs = await node.resolve(name, type).then((v) => v, (e: { code: string }) => e.code);
      const ours = await r.resolve(name, type).then((v) => v, (e: { code: string }) => e.code);
      expect(ours, `${type} ${name}`).toEqual(theirs);
    }
    const theirMx = await node.resolveMx("example.com");
    expect(await r.resolve("example.com", "MX")).toEqual(theirMx.map(({ exchange, priority }) => ({ exchange, priority })));
  });

  it("follows a CNAME chain in the answer, and answers a CNAME query with the alias itself", async () => {
    const r = make();
    expect(await r.resolve("WWW.example.com", "A")).toEqual(["192.0.2.1", "192.0.2.2"]);
    expect(await r.resolve("www.example.com", "CNAME")).toEqual(["alias.example.com"]);
  });

  it("reports a CNAME to a missing name as ENOTFOUND (RFC 6604), so mailauth's domainExists can look at the CNAME", async () => {
    const r = make();
    expect(await codeOf(r.resolve("dangling.example.com", "A"))).toBe("ENOTFOUND");
    expect(await r.resolve("dangling.example.com", "CNAME")).toEqual(["gone.example.com"]);
  });

  it("fails a CNAME loop as ESERVFAIL (temporary), like a recursive server would", async () => {
    expect(await codeOf(make().resolve("loop1.example.com", "TXT"))).toBe("ESERVFAIL");
  });

  it("hands out copies: changing a result does not change what the next caller gets", async () => {
    const r = make();
    const first = await r.resolve("example.com", "MX");
    first.sort((a, b) => a.priority - b.priority);
    first[0]!.exchange = "evil.example";
    expect((await r.resolve("example.com", "MX"))[0]).toEqual({ exchange: "mx2.example.com", priority: 20 });
  });

  it("works with an IPv6 server address", async ({ skip }) => {
    if (!dns.ipv6) skip();
    const r = make({ servers: [dns.servers[1]!] });
    expect(await r.resolve("example.com", "A")).toEqual(["192.0.2.1", "192.0.2.2"]);
  });
});

describe("errors", () => {
  it("maps NXDOMAIN to ENOTFOUND with node:dns's error fields", async () => {
    const err = await make()
      .resolve("nope.example.com", "TXT")
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ENOTFOUND", hostname: "nope.example.com", syscall: "queryTxt", message: "queryTxt ENOTFOUND nope.example.com" });
  });

  it("maps NODATA to ENODATA, also for a name that only exists because names below it do", async () => {
    const r = make();
    expect(await codeOf(r.resolve("example.com", "PTR"))).toBe("ENODATA");
    expect(await codeOf(r.resolve("deep.example.com", "A"))).toBe("ENODATA");
    expect(await codeOf(r.resolve("c.deep.example.com", "A"))).toBe("ENOTFOUND");
  });

  it("maps SERVFAIL to ESERVFAIL without asking the same server again", async () => {
    expect(await codeOf(make({ tries: 3 }).resolve("servfail.example.com", "TXT"))).toBe("ESERVFAIL");
    expect(dns.count({ name: "servfail.example.com" })).toBe(1);
  });

  it("maps REFUSED to EREFUSED", async () => {
    expect(await codeOf(make().resolve("refused.example.com", "A"))).toBe("EREFUSED");
  });

  it("gives ETIMEOUT only after every try, and counts each timed-out attempt", async () => {
    const r = make({ timeoutMs: 50, tries: 3 });
    expect(await codeOf(r.resolve("timeout.example.com", "TXT"))).toBe("ETIMEOUT");
    expect(dns.count({ name: "timeout.example.com", transport: "udp" })).toBe(3);
    expect(r.stats().timeouts).toBe(3);
  });

  it("times out per type when only some types answer", async () => {
    const r = make({ timeoutMs: 200, tries: 1 });
    expect(await r.resolve("only-txt-timeout.example.com", "TXT")).toEqual([["v=spf1 -all"]]);
    expect(await codeOf(r.resolve("only-txt-timeout.example.com", "A"))).toBe("ETIMEOUT");
  });

  it("turns a malformed answer into EBADRESP, and keeps working afterwards", async () => {
    const r = make();
    expect(await codeOf(r.resolve("junk.example.com", "A"))).toBe("EBADRESP");
    expect(await r.resolve("example.com", "A")).toEqual(["192.0.2.1", "192.0.2.2"]);
  });

  it("ignores datagrams that are not our answer, and reports EBADRESP if nothing better came", async () => {
    expect(await codeOf(make({ timeoutMs: 300, tries: 1 }).resolve("foreign.example.com", "A"))).toBe("EBADRESP");
  });

  it("rejects a compression pointer loop with EBADRESP", async () => {
    expect(await codeOf(make({ tries: 1 }).resolve("ptrloop.example.com", "A"))).toBe("EBADRESP");
  });

  it("rejects an answer to a different question", async () => {
    dns.set("swapped.example.com", {
      raw: (query) => {
        const q = decodeMessage(query);
        return encodeMessage({
          header: { id: q.header.id, qr: true },
          questions: [{ name: "example.com", type: "A", class: 1 }],
          answers: [{ name: "example.com", type: "A", class: 1, ttl: 60, data: "203.0.113.66" }],
        });
      },
    });
    expect(await codeOf(make({ tries: 1 }).resolve("swapped.example.com", "A"))).toBe("EBADRESP");
  });

  it("rejects names that cannot exist with EBADNAME, without a query", async () => {
    const r = make();
    for (const name of [`${"a".repeat(64)}.example.com`, "a..example.com", "", "bücher.example"]) {
      expect(await codeOf(r.resolve(name, "TXT"))).toBe("EBADNAME");
    }
    expect(dns.count()).toBe(0);
  });

  it("rejects an unsupported record type", async () => {
    await expect(make().mailauth("example.com", "HINFO")).rejects.toThrow(/unsupported rrtype/);
  });

  it("gives every caller its own error object, since mailauth writes onto errors", async () => {
    const r = make();
    const [a, b] = await Promise.all([r.resolve("nope.example.com", "A").catch((e: object) => e), r.resolve("nope.example.com", "A").catch((e: object) => e)]);
    expect(a).not.toBe(b);
    (a as { spfResult?: unknown }).spfResult = { error: "permerror" };
    const c = await r.resolve("nope.example.com", "A").catch((e: object) => e);
    expect(c).not.toHaveProperty("spfResult");
  });

  it("reports ECONNREFUSED for a closed port and fails over to the next server", async () => {
    const probe = createSocket("udp4");
    await new Promise<void>((res) => probe.bind(0, "127.0.0.1", () => res()));
    const closed = `127.0.0.1:${probe.address().port}`;
    await new Promise<void>((res) => probe.close(() => res()));
    expect(await codeOf(make({ servers: [closed], tries: 1 }).resolve("example.com", "A"))).toBe("ECONNREFUSED");
    expect(await make({ servers: [closed, dns.servers[0]!] }).resolve("example.com", "A")).toEqual(["192.0.2.1", "192.0.2.2"]);
  });
});

describe("transport", () => {
  it("retries over TCP when the UDP answer is truncated", async () => {
    const r = make();
    expect(await r.resolve("tc.example.com", "TXT")).toEqual([["over tcp"]]);
    expect(dns.count({ name: "tc.example.com", transport: "udp" })).toBe(1);
    expect(dns.count({ name: "tc.example.com", transport: "tcp" })).toBe(1);
    expect(r.stats()).toMatchObject({ tcpFallbacks: 1, upstream: { udp: 1, tcp: 1 } });
  });

  it("gets answers larger than the EDNS0 size over TCP, and 600-octet ones too when EDNS0 is off", async () => {
    const r = make();
    expect(await r.resolve("big.example.com", "TXT")).toHaveLength(10);
    expect(dns.count({ name: "big.example.com", transport: "tcp" })).toBe(1);
    expect(await r.resolve("long.example.com", "TXT")).toHaveLength(1);
    expect(dns.count({ name: "long.example.com", transport: "tcp" })).toBe(0);

    expect(await make({ ednsPayload: 0 }).resolve("long.example.com", "TXT")).toHaveLength(1);
    expect(dns.count({ name: "long.example.com", transport: "tcp" })).toBe(1);
  });

  it("asks again without EDNS0 when a server answers FORMERR to it", async () => {
    dns.set("old.example.com", {
      raw: (query) => {
        const q = decodeMessage(query);
        const hasOpt = q.additionals.some((rr) => rr.type === "OPT");
        return encodeMessage({
          header: { id: q.header.id, qr: true, rcode: hasOpt ? RCODE.FORMERR : RCODE.NOERROR },
          questions: q.questions,
          answers: hasOpt ? [] : [{ name: "old.example.com", type: "A", class: 1, ttl: 60, data: "192.0.2.77" }],
        });
      },
    });
    expect(await make().resolve("old.example.com", "A")).toEqual(["192.0.2.77"]);
    expect(dns.count({ name: "old.example.com" })).toBe(2);
  });

  it("fails over from a SERVFAIL server to the next one", async () => {
    const broken = await startDnsServer({ zone: { "example.com": { behaviour: "servfail" } } });
    try {
      const r = make({ servers: [broken.servers[0]!, dns.servers[0]!] });
      expect(await r.resolve("example.com", "A")).toEqual(["192.0.2.1", "192.0.2.2"]);
      expect(broken.count()).toBe(1);
      expect(dns.count()).toBe(1);
    } finally {
      await broken.close();
    }
  });

  it("resolves 200 different names in parallel, each to its own answer", async () => {
    const names = Array.from({ length: 200 }, (_, i) => `h${i}.par.example.com`);
    dns.setZone({ ...zone, ...Object.fromEntries(names.map((n, i) => [n, { A: `10.0.${i >> 8}.${i & 0xff}` }])) });
    try {
      const r = make();
      const results = await Promise.all(names.map((n) => r.resolve(n, "A")));
      expect(results).toEqual(names.map((_, i) => [`10.0.${i >> 8}.${i & 0xff}`]));
      expect(dns.count()).toBe(200);
    } finally {
      dns.setZone(zone);
    }
  });

  it("sends one query for any number of identical lookups in flight", async () => {
    const r = make();
    const results = await Promise.all(Array.from({ length: 200 }, () => r.mailauth("example.com", "TXT")));
    expect(new Set(results.map((x) => JSON.stringify(x))).size).toBe(1);
    expect(dns.count()).toBe(1);
    expect(r.stats()).toMatchObject({ queries: 200, cacheMisses: 1, inflightJoins: 199 });
  });

  it("cancels lookups in flight on close() and refuses new ones", async () => {
    const r = make({ timeoutMs: 5000 });
    const pending = codeOf(r.resolve("timeout.example.com", "A"));
    await new Promise((res) => setImmediate(res));
    r.close();
    expect(await pending).toBe("ECANCELLED");
    expect(await codeOf(r.resolve("example.com", "A"))).toBe("ECANCELLED");
  });
});
