// The test server is shared infrastructure (SPF suite, DKIM/DMARC zones later), so its own
// protocol behaviour is checked at the packet level, independent of our resolver.
import { createSocket } from "node:dgram";
import { existsSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { spf } from "mailauth";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { createResolver } from "../../src/dns/index.ts";
import { decodeMessage, encodeQuery, RCODE, type DnsMessage, type RrTypeName } from "../../src/dns/wire.ts";
import { startDnsServer, zoneFromSpfSuite, type DnsTestServer } from "../support/dns-server.ts";

const SUITE = new URL("../../../shared/reference/spf-test-suite/rfc7208-tests.yml", import.meta.url);

let dns: DnsTestServer;

beforeAll(async () => {
  dns = await startDnsServer({
    zone: {
      "example.com": { A: "192.0.2.1", SPF: "v=spf1 -all", SOA: { minimum: 42 } },
      "a.b.example.com": { TXT: [["x".repeat(300)], [Uint8Array.from([0xff, 0x00])]] },
      "many.example.com": { A: Array.from({ length: 40 }, (_, i) => `192.0.2.${i}`) },
    },
  });
});
afterAll(async () => {
  await dns.close();
});

function udpQuery(name: string, type: RrTypeName, edns = 0): Promise<DnsMessage> {
  return new Promise((resolve, reject) => {
    const s = createSocket("udp4");
    s.on("message", (m) => {
      s.close();
      resolve(decodeMessage(m));
    });
    s.on("error", reject);
    s.send(encodeQuery(1, name, type, edns), dns.port, "127.0.0.1");
  });
}

describe("dns-server", () => {
  it("answers NXDOMAIN for an unknown name and NODATA for an existing one, both with SOA authority", async () => {
    const nx = await udpQuery("nope.example.com", "A");
    const nodata = await udpQuery("example.com", "MX");
    expect(nx.header).toMatchObject({ rcode: RCODE.NXDOMAIN, aa: true, qr: true });
    expect(nodata.header.rcode).toBe(RCODE.NOERROR);
    expect(nodata.answers).toEqual([]);
    for (const m of [nx, nodata]) expect(m.authorities).toMatchObject([{ type: "SOA", name: "example.com", data: { minttl: 42 } }]);
  });

  it("treats a name with only descendants as existing (empty non-terminal)", async () => {
    expect((await udpQuery("b.example.com", "A")).header.rcode).toBe(RCODE.NOERROR);
  });

  it("serves SPF (type 99) records only to type 99 queries", async () => {
    expect((await udpQuery("example.com", "SPF")).answers).toMatchObject([{ type: "SPF" }]);
    expect((await udpQuery("example.com", "TXT")).answers).toEqual([]);
  });

  it("splits long TXT strings into 255-octet character-strings and sends bytes as given", async () => {
    const [long, bytes] = (await udpQuery("a.b.example.com", "TXT")).answers;
    expect(long?.type === "TXT" && long.data.map((c) => c.length)).toEqual([255, 45]);
    expect(bytes?.type === "TXT" && Array.from(bytes.data[0]!)).toEqual([0xff, 0x00]);
  });

  it("sets TC and drops the records when the answer exceeds 512 octets without EDNS0", async () => {
    const plain = await udpQuery("many.example.com", "A");
    expect(plain.header.tc).toBe(true);
    expect(plain.answers).toEqual([]);
    const edns = await udpQuery("many.example.com", "A", 1232);
    expect(edns.header.tc).toBe(false);
    expect(edns.answers).toHaveLength(40);
  });

  it("answers several length-prefixed queries on one TCP connection and counts them per transport", async () => {
    dns.resetLog();
    const frames = [encodeQuery(7, "example.com", "A"), encodeQuery(8, "nope.example.com", "A")].map((q) => Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]));
    const replies = await new Promise<DnsMessage[]>((resolve, reject) => {
      const sock = connect(dns.port, "127.0.0.1", () => sock.write(Buffer.concat(frames)));
      let buf = Buffer.alloc(0);
      const out: DnsMessage[] = [];
      sock.on("error", reject);
      sock.on("data", (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          out.push(decodeMessage(buf.subarray(2, 2 + buf.readUInt16BE(0))));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
        if (out.length === 2) {
          sock.destroy();
          resolve(out);
        }
      });
    });
    expect(replies.map((m) => [m.header.id, m.header.rcode])).toEqual([
      [7, RCODE.NOERROR],
      [8, RCODE.NXDOMAIN],
    ]);
    expect(dns.count({ transport: "tcp" })).toBe(2);
    expect(dns.count({ transport: "udp" })).toBe(0);
  });
});

describe("zoneFromSpfSuite (pyspf driver semantics)", () => {
  const zone = zoneFromSpfSuite({
    "both.example.net": [{ TXT: "v=spf1 -all" }, { SPF: "v=spf1 +all" }],
    "spfonly.example.net": [{ SPF: "v=spf1 -all" }],
    "suppressed.example.net": [{ SPF: "v=spf1 -all" }, { TXT: "NONE" }],
    "txtok.example.net": [{ TXT: "v=spf1 -all" }, "TIMEOUT"],
    "chunks.example.net": [{ SPF: ["v=spf1 ip4:", "192.0.2.5 -all"] }, { SPF: [] }],
    "mx.example.net": [{ MX: [10, "Mail.Example.net."] }],
  });

  it("copies SPF records to TXT unless the name has TXT entries or TXT: NONE", () => {
    expect(zone["spfonly.example.net"]?.TXT).toEqual([["v=spf1 -all"]]);
    expect(zone["both.example.net"]?.TXT).toEqual([["v=spf1 -all"]]);
    expect(zone["suppressed.example.net"]?.TXT).toEqual([]);
  });

  it("times out every type not listed before a TIMEOUT entry", () => {
    expect(zone["txtok.example.net"]?.behaviour).toEqual({ "*": "timeout", TXT: "answer" });
  });

  it("keeps chunk lists and empty records", () => {
    expect(zone["chunks.example.net"]?.SPF).toEqual([["v=spf1 ip4:", "192.0.2.5 -all"], []]);
    expect(zone["mx.example.net"]?.MX).toEqual([[10, "Mail.Example.net."]]);
  });

  // Proves the server and converter can carry the whole suite; comparing explanations is the SPF layer's job.
  it.skipIf(!existsSync(SUITE))("serves the RFC 7208 suite so that mailauth (strict) gets every expected result", async () => {
    const docs = parseAllDocuments(readFileSync(SUITE, "utf8")).map((d) => d.toJS() as { tests: Record<string, Record<string, string>>; zonedata: Record<string, unknown> });
    const server = await startDnsServer();
    const wrong: string[] = [];
    let total = 0;
    try {
      for (const doc of docs) {
        server.setZone(zoneFromSpfSuite(doc.zonedata));
        for (const [id, t] of Object.entries(doc.tests)) {
          const resolver = createResolver({ servers: server.servers, timeoutMs: 200, tries: 1 });
          const res = await spf({ sender: t.mailfrom, ip: t.host ?? "", helo: t.helo, mta: "mx.test", resolver: resolver.mailauth, strict: true });
          resolver.close();
          total++;
          if (![t.result].flat().includes(res.status.result)) wrong.push(`${id}: ${res.status.result}, expected ${String(t.result)}`);
        }
      }
    } finally {
      await server.close();
    }
    expect(wrong).toEqual([]);
    expect(total).toBeGreaterThan(200);
  });
});
