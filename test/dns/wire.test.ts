import { describe, expect, it } from "vitest";
import { DnsError } from "../../src/dns/errors.ts";
import { bytesToIpv6, ipv6ToBytes } from "../../src/dns/ip.ts";
import { nameFromInput, nameKey } from "../../src/dns/names.ts";
import { decodeMessage, encodeMessage, encodeQuery, formatName, parseName, type ResourceRecord } from "../../src/dns/wire.ts";

const header = (id: number, ...counts: number[]) => [id >> 8, id & 0xff, 0x81, 0x80, ...counts.flatMap((c) => [0, c])];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    return e instanceof DnsError ? e.code : `not a DnsError: ${String(e)}`;
  }
}

describe("encode/decode round trip", () => {
  const records: ResourceRecord[] = [
    { name: "example.com", type: "A", class: 1, ttl: 300, data: "192.0.2.1" },
    { name: "example.com", type: "AAAA", class: 1, ttl: 300, data: "2001:db8::1" },
    { name: "example.com", type: "MX", class: 1, ttl: 60, data: { priority: 10, exchange: "mx.example.com" } },
    { name: "Www.Example.com", type: "CNAME", class: 1, ttl: 5, data: "example.com" },
    { name: "1.2.0.192.in-addr.arpa", type: "PTR", class: 1, ttl: 5, data: "host.example.com" },
    { name: "example.com", type: "TXT", class: 1, ttl: 5, data: [Buffer.from("v=spf1"), Buffer.from(" -all"), new Uint8Array(0)] },
    { name: "example.com", type: "SPF", class: 1, ttl: 5, data: [] },
    {
      name: "example.com",
      type: "SOA",
      class: 1,
      ttl: 600,
      data: { nsname: "ns.example.com", hostmaster: "h.example.com", serial: 4294967295, refresh: 1, retry: 2, expire: 3, minttl: 4 },
    },
    { name: "example.com", type: 257, class: 1, ttl: 1, data: Uint8Array.from([0, 5, 0x69]) },
  ];

  it("returns every record type as it went in, including empty TXT rdata and unknown types", () => {
    const wire = encodeMessage({ header: { id: 0xbeef, qr: true, aa: true, rcode: 3 }, questions: [{ name: "example.com", type: "TXT", class: 1 }], answers: records });
    const msg = decodeMessage(wire);
    expect(msg.header).toMatchObject({ id: 0xbeef, qr: true, aa: true, tc: false, rcode: 3 });
    expect(msg.questions).toEqual([{ name: "example.com", type: "TXT", class: 1 }]);
    // Buffers and Uint8Arrays of the same bytes should compare equal
    const plain = (v: unknown) => JSON.parse(JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? Array.from(x) : x?.type === "Buffer" ? x.data : x)));
    expect(plain(msg.answers)).toEqual(plain(records));
  });

  it("compresses repeated names, so a long answer stays small", () => {
    const many = Array.from({ length: 20 }, (): ResourceRecord => ({ name: "a.long.name.example.com", type: "A", class: 1, ttl: 1, data: "192.0.2.1" }));
    const wire = encodeMessage({ header: { id: 1 }, questions: [{ name: "a.long.name.example.com", type: "A", class: 1 }], answers: many });
    // 12 header + 29 question + 20 x (2 pointer + 10 fixed + 4 address)
    expect(wire.length).toBe(12 + 25 + 4 + 20 * 16);
    expect(decodeMessage(wire).answers).toHaveLength(20);
  });

  it("treats a TTL with the top bit set as zero (RFC 2181 8)", () => {
    const wire = encodeMessage({ header: { id: 1 }, answers: [{ name: "x", type: "A", class: 1, ttl: 0x80000001, data: "192.0.2.1" }] });
    expect(decodeMessage(wire).answers[0]?.ttl).toBe(0);
  });

  it("encodes a query with an EDNS0 OPT record only when asked", () => {
    expect(decodeMessage(encodeQuery(7, "example.com", "TXT", 1232)).additionals).toMatchObject([{ type: "OPT", class: 1232 }]);
    expect(decodeMessage(encodeQuery(7, "example.com", "TXT")).additionals).toEqual([]);
  });
});

describe("malformed messages are EBADRESP", () => {
  const question = [7, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 3, 0x63, 0x6f, 0x6d, 0, 0, 1, 0, 1];
  const cases: Record<string, number[]> = {
    "shorter than a header": [1, 2, 3],
    "a count larger than the content": [...header(1, 1, 5, 0, 0), ...question],
    "a compression pointer to itself": [...header(1, 1, 0, 0, 0), 0xc0, 12, 0, 1, 0, 1],
    "two pointers pointing at each other": [...header(1, 2, 0, 0, 0), 0xc0, 18, 0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1],
    "a forward pointer": [...header(1, 1, 0, 0, 0), 0xc0, 20, 0, 1, 0, 1, 0, 0],
    "a label past the end": [...header(1, 1, 0, 0, 0), 9, 0x61, 0x62],
    "a reserved label type": [...header(1, 1, 0, 0, 0), 0x41, 0x61, 0, 0, 1, 0, 1],
    "an A record of five octets": [...header(1, 1, 1, 0, 0), ...question, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 5, 1, 2, 3, 4, 5],
    "a TXT string overrunning its rdata": [...header(1, 1, 1, 0, 0), ...question, 0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 1, 0, 3, 5, 0x61, 0x62],
    "a CNAME whose name ends after its rdata": [...header(1, 1, 1, 0, 0), ...question, 0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 1, 0, 1, 0xc0, 12],
    "a name longer than 255 octets": [...header(1, 1, 0, 0, 0), ...Array.from({ length: 5 }, () => [63, ...Array<number>(63).fill(0x61)]).flat(), 0, 0, 1, 0, 1],
  };
  for (const [what, bytes] of Object.entries(cases)) {
    it(`rejects ${what}`, () => {
      expect(codeOf(() => decodeMessage(Uint8Array.from(bytes)))).toBe("EBADRESP");
    });
  }

  it("survives random garbage without throwing anything but EBADRESP", () => {
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    for (let i = 0; i < 2000; i++) {
      const bytes = Uint8Array.from({ length: 12 + (i % 80) }, rand);
      const code = codeOf(() => decodeMessage(bytes));
      expect([undefined, "EBADRESP"]).toContain(code);
    }
  });
});

describe("names", () => {
  it("escapes dots and odd octets inside labels so label structure survives a round trip", () => {
    const labels = [Uint8Array.from([0x61, 0x2e, 0x62]), Uint8Array.from([0x20, 0x5c, 0xff])];
    const text = formatName(labels);
    expect(text).toBe("a\\.b.\\032\\\\\\255");
    expect(parseName(text)).toEqual(labels);
  });

  it("treats caller input literally: a backslash is a character, a dot separates labels", () => {
    expect(parseName(nameFromInput("a\\b.example.com.")).map((l) => Buffer.from(l).toString("latin1"))).toEqual(["a\\b", "example", "com"]);
  });

  it("gives plain host names (letters, digits, - and _) the same forms the full parser gives", () => {
    const longest = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`; // 253: 255 octets on the wire
    for (const name of ["Example.ORG", "_dmarc.example.org.", "sel-1._domainkey.x_y.example", longest, "a"]) {
      const slow = formatName(parseName(name));
      expect(nameFromInput(name)).toBe(slow);
      expect(nameKey(name)).toBe(slow.toLowerCase());
    }
    expect(codeOf(() => nameFromInput(`${longest}e`))).toBe("EBADNAME");
  });

  it.each([["a".repeat(64) + ".example.com"], ["a..example.com"], [""], ["."], ["bücher.example"], ["a\tb.example"], [`${"a".repeat(60)}.`.repeat(5)]])(
    "rejects %j with EBADNAME",
    (name) => {
      expect(codeOf(() => nameFromInput(name))).toBe("EBADNAME");
    },
  );
});

describe("IPv6 text", () => {
  it.each([
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:DB8::0001", "2001:db8::1"],
    ["::", "::"],
    ["::1", "::1"],
    ["fe80::", "fe80::"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
  ])("%s is written as %s (RFC 5952)", (input, out) => {
    expect(bytesToIpv6(ipv6ToBytes(input))).toBe(out);
  });
});
