// rua=/ruf= URIs and RFC 7489 §7.1 external destination verification, against a DNS server on
// loopback through our own resolver.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createResolver, type Resolver } from "../../src/dns/index.ts";
import { parseReportUri, parseSizeLimit, resolveDestinations } from "../../src/reports/destination.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";

describe("report URIs", () => {
  it("reads mailto: addresses with size limits in powers of two", () => {
    expect(parseSizeLimit("10m")).toBe(10 * 1024 * 1024);
    expect(parseSizeLimit("512")).toBe(512);
    expect(parseSizeLimit("2K")).toBe(2048);
    expect(parseSizeLimit("1t")).toBe(2 ** 40);
    expect(parseSizeLimit("10x")).toBeUndefined();
    expect(parseReportUri(" mailto:dmarc@Example.COM!10m ")).toEqual({
      ok: true,
      destination: { uri: "mailto:dmarc@Example.COM!10m", address: "dmarc@example.com", domain: "example.com", maxBytes: 10 * 1024 * 1024 },
    });
    expect(parseReportUri("mailto:dmarc%2Breports@example.com?subject=hi")).toMatchObject({ ok: true, destination: { address: "dmarc+reports@example.com" } });
    expect(parseReportUri("mailto:rua@bücher.example")).toMatchObject({ ok: true, destination: { address: "rua@xn--bcher-kva.example", domain: "xn--bcher-kva.example" } });
  });

  it("refuses other schemes and anything that is not a plain mailbox", () => {
    expect(parseReportUri("https://reports.example/upload")).toMatchObject({ ok: false, reason: expect.stringMatching(/unsupported scheme "https:"/) });
    expect(parseReportUri("dmarc@example.com")).toMatchObject({ ok: false, reason: "not a URI" });
    expect(parseReportUri("mailto:a@example.com!huge")).toMatchObject({ ok: false, reason: expect.stringMatching(/bad size limit/) });
    // A CR LF smuggled in percent-encoded must not reach RCPT TO or a header.
    expect(parseReportUri("mailto:a@example.com%0D%0ARCPT%20TO:%3Cx@y%3E")).toMatchObject({ ok: false });
    expect(parseReportUri("mailto:%22quoted%20local%22@example.com")).toMatchObject({ ok: false });
    expect(parseReportUri("mailto:a@example.com,b@example.com")).toMatchObject({ ok: false, reason: "more than one address in one URI" });
    expect(parseReportUri("mailto:%E0%A4%A@example.com")).toMatchObject({ ok: false, reason: "bad percent-encoding" });
  });
});

describe("external destination verification (RFC 7489 §7.1)", () => {
  let dns: DnsTestServer;
  let resolver: Resolver;

  beforeAll(async () => {
    dns = await startDnsServer({
      zone: {
        "_dmarc.example.com": { TXT: "v=DMARC1; p=reject" },
        "example.com._report._dmarc.reports.example.net": { TXT: "v=DMARC1;" },
        "example.com._report._dmarc.wrong.example": { TXT: "v=spf1 -all" },
        "example.com._report._dmarc.override.example": { TXT: "v=DMARC1; rua=mailto:new@override.example!1m, mailto:evil@elsewhere.example" },
        "example.com._report._dmarc.broken.example": { behaviour: "servfail" },
      },
    });
  });
  afterAll(async () => {
    await dns.close();
  });
  beforeEach(() => {
    // Each test its own resolver: no answer cached by an earlier test hides a query.
    resolver = createResolver({ servers: dns.servers, timeoutMs: 500, tries: 1 });
    dns.resetLog();
  });

  const reportQueries = () => dns.queries.filter((q) => q.name.includes("._report._dmarc.")).map((q) => q.name);

  it("sends to the policy domain and its organization without asking anyone", async () => {
    const d = await resolveDestinations("example.com", ["mailto:agg@example.com", "mailto:agg@dmarc.example.com", "mailto:AGG@example.com"], "rua", resolver);
    expect(d.map((x) => [x.outcome, x.destination?.address])).toEqual([
      ["send", "agg@example.com"],
      ["send", "agg@dmarc.example.com"],
    ]);
    expect(reportQueries()).toEqual([]);
  });

  it("sends to an authorized external destination and skips one that did not authorize", async () => {
    const d = await resolveDestinations(
      "example.com",
      ["mailto:dmarc@reports.example.net", "mailto:dmarc@other.example", "mailto:dmarc@wrong.example"],
      "rua",
      resolver,
    );
    expect(d[0]).toMatchObject({ outcome: "send", destination: { address: "dmarc@reports.example.net" }, reason: "authorized by example.com._report._dmarc.reports.example.net" });
    expect(d[1]).toMatchObject({ outcome: "skip", reason: expect.stringMatching(/not authorized: no "v=DMARC1" TXT record at example\.com\._report\._dmarc\.other\.example/) });
    expect(d[2]).toMatchObject({ outcome: "skip" });
    expect(reportQueries().sort()).toEqual(
      ["example.com._report._dmarc.other.example", "example.com._report._dmarc.reports.example.net", "example.com._report._dmarc.wrong.example"].sort(),
    );
  });

  it("takes the receiver's own rua= on the same host, never one elsewhere", async () => {
    const d = await resolveDestinations("example.com", ["mailto:old@override.example"], "rua", resolver);
    expect(d).toHaveLength(1);
    expect(d[0]).toMatchObject({ outcome: "send", uri: "mailto:old@override.example", destination: { address: "new@override.example", maxBytes: 1024 * 1024 } });
    // For ruf= the record names nothing, so the published address stays.
    const f = await resolveDestinations("example.com", ["mailto:old@override.example"], "ruf", resolver);
    expect(f[0]).toMatchObject({ outcome: "send", destination: { address: "old@override.example" } });
  });

  it("cannot decide while the DNS fails: tempfail, not skip", async () => {
    const d = await resolveDestinations("example.com", ["mailto:dmarc@broken.example"], "rua", resolver);
    expect(d[0]).toMatchObject({ outcome: "tempfail", reason: expect.stringMatching(/example\.com\._report\._dmarc\.broken\.example TXT failed/) });
  });

  it("skips URIs it cannot use and says why", async () => {
    const d = await resolveDestinations("example.com", ["https://x.example/", "mailto:"], "rua", resolver);
    expect(d.map((x) => x.outcome)).toEqual(["skip", "skip"]);
    expect(d[0]!.reason).toMatch(/unsupported scheme/);
  });
});
