import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { freshDirEachTest } from "../support/temp-dir.ts";
import {
  aggregate,
  aggregateXml,
  buildAggregateReports,
  dateRange,
  filenameDomain,
  gzipXml,
  reportFilename,
  reportId,
  resolvePolicy,
  type AggregateReport,
  type ReportIdentity,
} from "../../src/reports/aggregate.ts";
import type { HistoryRecord } from "../../src/reports/history.ts";
import { openHistoryStore } from "../../src/reports/history-sqlite.ts";
import { DKIM_RESULTS, dkimResult, SPF_RESULTS, spfResult } from "../../src/reports/normalize.ts";
import { escapeText } from "../../src/reports/xml.ts";
import { at, captureLogger, message, SKIP_XMLLINT, T0, T0_S, T1, validateReport, xpathString } from "./helpers.ts";

let dir: string;
freshDirEachTest((d) => (dir = d));

const ID: ReportIdentity = { orgName: "Mail Receiver Inc.", email: "dmarc-reports@mx.receiver.example", receiver: "receiver.example" };
const DAY = { since: T0, until: T1 };

function report(messages: HistoryRecord[], domain = "example.com"): AggregateReport {
  const r = aggregate(domain, messages, DAY, ID);
  if (r === undefined) throw new Error("expected a report");
  return r;
}

describe("grouping and counting", () => {
  it("counts identical messages in one record and keeps every visible difference apart", () => {
    const r = report([
      message(),
      message(),
      message({ time: at("2024-05-01T20:00:00Z") }),
      message({ sourceIp: "198.51.100.5", dkimAligned: "fail", dkim: [{ domain: "example.com", selector: "s1", result: "fail" }] }),
      message({ sourceIp: "198.51.100.5", dkimAligned: "fail", dkim: [{ domain: "example.com", selector: "s1", result: "fail" }] }),
      message({ disposition: "quarantine" }),
      message({ dkim: [{ domain: "example.com", selector: "s2", result: "pass" }] }),
      message({ headerFrom: "news.example.com" }),
      message({ envelopeFrom: "bounces.example.com" }),
      message({ overrides: [{ type: "local_policy" }] }),
    ]);
    expect(r.messages).toBe(10);
    expect(r.records.map((x) => x.count)).toEqual([3, 2, 1, 1, 1, 1, 1]);
    expect(r.records.reduce((n, x) => n + x.count, 0)).toBe(10);
    expect(r.records[0]).toMatchObject({ sourceIp: "192.0.2.10", disposition: "none", dkim: "pass", spf: "pass" });
    expect(r.records[1]).toMatchObject({ sourceIp: "198.51.100.5", dkim: "fail", dkimResults: [{ result: "fail" }] });
    const singles = r.records.slice(2);
    expect(singles.filter((x) => x.disposition === "quarantine")).toHaveLength(1);
    expect(singles.filter((x) => x.dkimResults[0]?.selector === "s2")).toHaveLength(1);
    expect(singles.filter((x) => x.headerFrom === "news.example.com")).toHaveLength(1);
    expect(singles.filter((x) => x.envelopeFrom === "bounces.example.com")).toHaveLength(1);
    expect(singles.filter((x) => x.reasons[0]?.type === "local_policy")).toHaveLength(1);
  });

  it("groups one sender however its address and domains were spelled", () => {
    const r = report([
      message({ sourceIp: "2001:db8::1", headerFrom: "Example.com." }),
      message({ sourceIp: "2001:0DB8:0:0:0:0:0:1" }),
      message({ sourceIp: "::ffff:192.0.2.10" }),
      message(),
    ]);
    expect(r.records.map((x) => [x.sourceIp, x.count])).toEqual([
      ["192.0.2.10", 2],
      ["2001:db8:0:0:0:0:0:1", 2],
    ]);
  });

  it("carries the policy in force at the end of the interval, with RFC 7489's defaults filled in", () => {
    const r = report([
      message({ time: at("2024-05-01T01:00:00Z"), policy: { domain: "example.com", p: "none", rua: ["mailto:old@example.com"], ruf: [] } }),
      message({ time: at("2024-05-01T02:00:00Z"), policy: { domain: "example.com", p: "quarantine", rua: ["mailto:new@example.com"], ruf: [] } }),
    ]);
    expect(r.policy).toEqual({ domain: "example.com", adkim: "r", aspf: "r", p: "quarantine", sp: "quarantine", pct: 100, fo: "0" });
    expect(r.rua).toEqual(["mailto:new@example.com"]);

    const base = { domain: "example.com", p: "reject" as const, rua: [], ruf: [] };
    expect(resolvePolicy({ ...base, sp: "none", pct: 20, adkim: "s", aspf: "s", fo: "1:d" })).toEqual({
      domain: "example.com", adkim: "s", aspf: "s", p: "reject", sp: "none", pct: 20, fo: "1:d",
    });
    // DMARCbis t=y (testing): do not apply the policy, which RFC 7489's schema says as pct=0.
    expect(resolvePolicy({ ...base, testing: true }).pct).toBe(0);
    expect(resolvePolicy({ ...base, testing: false }).pct).toBe(100);
  });

  it("leaves out messages without a client address, says so in <error>, and makes no report of nothing", () => {
    const r = report([message(), message({ sourceIp: "unknown" }), message({ sourceIp: "" })]);
    expect(r).toMatchObject({ messages: 1, skipped: 2 });
    expect(aggregateXml(r, ID)).toContain("<error>2 message(s) without a client IP address");
    expect(aggregate("example.com", [message({ sourceIp: "localhost" })], DAY, ID)).toBeUndefined();
    expect(aggregate("example.com", [], DAY, ID)).toBeUndefined();
  });

  it("gives a message without SPF results the one SPF result the schema requires", () => {
    const r = report([message({ spf: [], envelopeFrom: "bounce.example.com" })]);
    expect(r.records[0]?.spfResults).toEqual([{ domain: "bounce.example.com", scope: "mfrom", result: "none" }]);
  });

  it("reports date_range in seconds with an inclusive end, and a stable report_id", () => {
    expect(dateRange(DAY)).toEqual({ begin: T0_S, end: T0_S + 86_399 });
    const r = report([message()]);
    expect([r.begin, r.end]).toEqual([T0_S, T0_S + 86_399]);
    expect(r.reportId).toBe(reportId(ID.receiver, "example.com", r.begin, r.end));
    expect(r.reportId).toMatch(/^1714521600\.1714607999\.[0-9a-f]{16}$/);
    expect(reportId(ID.receiver, "other.example", r.begin, r.end)).not.toBe(r.reportId);
  });
});

describe("schema enumerations", () => {
  it("maps every result to the schema's own values, aliases to their meaning, the unknown to permerror", () => {
    for (const v of DKIM_RESULTS) expect(dkimResult(v)).toBe(v);
    for (const v of SPF_RESULTS) expect(spfResult(v)).toBe(v);
    expect(dkimResult("TempFail")).toBe("temperror");
    expect(dkimResult("permfail")).toBe("permerror");
    expect(spfResult("hardfail")).toBe("fail");
    expect(spfResult("SoftFail")).toBe("softfail");
    expect(spfResult("tempfail")).toBe("temperror");
    expect(dkimResult("softfail")).toBe("permerror"); // not a DKIM result
    expect(spfResult("policy")).toBe("permerror"); // not an SPF result
    expect(spfResult("error")).toBe("permerror");
  });

  it.skipIf(SKIP_XMLLINT)("produces a report with every DKIM and SPF result, every optional element, and IPv6 that validates", async () => {
    const msgs: HistoryRecord[] = [
      ...DKIM_RESULTS.map((result, i) =>
        message({ sourceIp: `2001:db8::${i + 1}`, dkim: [{ domain: "example.com", selector: `s${i}`, result, humanResult: `dkim ${result}` }] }),
      ),
      ...SPF_RESULTS.map((result) =>
        message({
          sourceIp: "203.0.113.9",
          spf: [
            { domain: "mx.example.com", scope: "helo", result },
            { domain: "example.com", scope: "mfrom", result },
          ],
          spfAligned: result === "pass" ? "pass" : "fail",
        }),
      ),
      message({ dkim: [], disposition: "reject", dkimAligned: "fail", spfAligned: "fail", dmarc: "fail" }),
      message({ overrides: [{ type: "sampled_out", comment: "pct=10" }, { type: "forwarded" }], disposition: "none" }),
      message({ sourceIp: "unknown" }),
    ];
    const r = report(msgs);
    const xml = aggregateXml(r, { ...ID, extraContactInfo: "https://receiver.example/dmarc" });
    const v = await validateReport(xml, dir);
    expect(v.output).toMatch(/validates/);
    expect(v.ok).toBe(true);
    expect(xml).toContain("<source_ip>2001:db8:0:0:0:0:0:1</source_ip>");
    for (const result of DKIM_RESULTS) expect(xml).toContain(`<result>${result}</result>`);
    expect(xml).toContain("<result>softfail</result>");
    expect(xml).toContain("<scope>helo</scope>");
    expect(xml).toMatch(/<reason>\s*<type>sampled_out<\/type>\s*<comment>pct=10<\/comment>\s*<\/reason>\s*<reason>\s*<type>forwarded<\/type>\s*<\/reason>/);
  });

  it.skipIf(SKIP_XMLLINT)("the validator bites: compressed IPv6 and a missing <fo> are rejected", async () => {
    const xml = aggregateXml(report([message()]), ID);
    expect((await validateReport(xml, dir)).ok).toBe(true);
    const compressed = await validateReport(xml.replace("<source_ip>192.0.2.10</source_ip>", "<source_ip>2001:db8::1</source_ip>"), dir);
    expect(compressed.ok).toBe(false);
    expect(compressed.output).toMatch(/source_ip/);
    const noFo = await validateReport(xml.replace(/\s*<fo>0<\/fo>/, ""), dir);
    expect(noFo.ok).toBe(false);
    expect(noFo.output).toMatch(/fo/);
  });
});

describe("XML escaping", () => {
  it("escapes markup characters and replaces characters XML cannot carry", () => {
    expect(escapeText(`a<b>&"c'`)).toBe("a&lt;b&gt;&amp;&quot;c&apos;");
    expect(escapeText("nul\u0000bell\u0007tab\tnl\n")).toBe("nul\ufffdbell\ufffdtab\tnl\n");
    expect(escapeText("lone \ud800 surrogate, pair \ud83d\ude00 kept")).toBe("lone \ufffd surrogate, pair \ud83d\ude00 kept");
    expect(escapeText("&amp;")).toBe("&amp;amp;");
  });

  it.skipIf(SKIP_XMLLINT)("hostile domains, selectors and names survive a real XML parser unchanged and the report still validates", async () => {
    const hostile = `evil<script>&amp;"quoted"'single'</feedback>.example`;
    const r = report(
      [
        message({
          headerFrom: hostile,
          envelopeFrom: `<env>&.example`,
          dkim: [{ domain: hostile, selector: `sel"<&>`, result: "fail", humanResult: "]]> <!-- not a comment -->" }],
          spf: [{ domain: `spf'&<.example`, scope: "mfrom", result: "fail" }],
          overrides: [{ type: "other", comment: "</comment><injected/>" }],
          policy: { domain: hostile, p: "none", rua: ["mailto:x@example.com"], ruf: [] },
        }),
      ],
      hostile,
    );
    const xml = aggregateXml(r, { ...ID, orgName: `A & B <"Mail">` });
    expect((await validateReport(xml, dir)).ok).toBe(true);
    const read = (xpath: string) => xpathString(xml, dir, xpath);
    expect(await read("//identifiers/header_from")).toBe(hostile);
    expect(await read("//identifiers/envelope_from")).toBe("<env>&.example");
    expect(await read("//policy_published/domain")).toBe(hostile);
    expect(await read("//auth_results/dkim/domain")).toBe(hostile);
    expect(await read("//auth_results/dkim/selector")).toBe(`sel"<&>`);
    expect(await read("//auth_results/dkim/human_result")).toBe("]]> <!-- not a comment -->");
    expect(await read("//auth_results/spf/domain")).toBe("spf'&<.example");
    expect(await read("//reason/comment")).toBe("</comment><injected/>");
    expect(await read("//report_metadata/org_name")).toBe(`A & B <"Mail">`);
    expect(await read("count(//record)")).toBe("1");
  });

  it.skipIf(SKIP_XMLLINT)("a control character in a domain does not break the document", async () => {
    const xml = aggregateXml(report([message({ headerFrom: "bad\u0000\u001b.example" })]), ID);
    expect((await validateReport(xml, dir)).ok).toBe(true);
    expect(await xpathString(xml, dir, "//identifiers/header_from")).toBe("bad\ufffd\ufffd.example");
  });
});

describe("file names and gzip", () => {
  it("follows RFC 7489 §7.2.1.1", () => {
    expect(reportFilename("receiver.example", "example.com", T0_S, T0_S + 86_399)).toBe(
      "receiver.example!example.com!1714521600!1714607999.xml.gz",
    );
    expect(reportFilename("receiver.example", "example.com", 1, 2, { uniqueId: "a1B2", gzip: false })).toBe(
      "receiver.example!example.com!1!2!a1B2.xml",
    );
    expect(() => reportFilename("r.example", "example.com", 1, 2, { uniqueId: "no-dash" })).toThrow(RangeError);
  });

  it("keeps hostile domains inside the directory and the separators unambiguous; IDNs as A-labels", () => {
    expect(filenameDomain("../../etc/passwd")).toBe("..%2F..%2Fetc%2Fpasswd");
    expect(filenameDomain("a!b.example")).toBe("a%21b.example");
    expect(filenameDomain("Bücher.example")).toBe("xn--bcher-kva.example");
    const name = reportFilename("receiver.example", "x/y!z<&>.example", 1, 2);
    expect(name).not.toMatch(/[/<>&]/);
    expect(name.split("!")).toHaveLength(4);
  });

  it("gzips the XML so that it unzips to the same bytes", () => {
    const xml = aggregateXml(report([message({ headerFrom: "zürich.example" })]), ID);
    const gz = gzipXml(xml);
    expect([gz[0], gz[1]]).toEqual([0x1f, 0x8b]);
    expect(gunzipSync(gz).toString("utf8")).toBe(xml);
    expect(gz.length).toBeLessThan(Buffer.byteLength(xml));
  });
});

describe("from the store", () => {
  it.skipIf(SKIP_XMLLINT)("builds one valid report per policy domain that asked for one, for the interval only", async () => {
    const log = captureLogger();
    const store = openHistoryStore(join(dir, "history.sqlite"), { logger: log.logger });
    const rua = (d: string) => ({ domain: d, p: "reject" as const, rua: [`mailto:dmarc@${d}`], ruf: [] });
    store.record(message({ policy: rua("example.com") }));
    store.record(message({ policy: rua("example.com"), headerFrom: "sub.example.com" }));
    store.record(message({ policy: rua("example.org"), headerFrom: "example.org", sourceIp: "2001:db8::7" }));
    store.record(message({ policy: { domain: "quiet.example", p: "none", rua: [], ruf: [] }, headerFrom: "quiet.example" }));
    store.record(message({ policy: undefined, dmarc: "none", headerFrom: "nopolicy.example" }));
    store.record(message({ policy: rua("late.example"), time: T1 }));
    await store.flush();
    const reports = buildAggregateReports(store, DAY, ID);
    await store.close();

    expect(reports.map((r) => r.filename)).toEqual([
      "receiver.example!example.com!1714521600!1714607999.xml.gz",
      "receiver.example!example.org!1714521600!1714607999.xml.gz",
    ]);
    const [com, org] = reports;
    expect(com?.report).toMatchObject({ messages: 2, rua: ["mailto:dmarc@example.com"] });
    expect(com?.report.records.map((r) => r.headerFrom).sort()).toEqual(["example.com", "sub.example.com"]);
    expect(org?.report.records[0]?.sourceIp).toBe("2001:db8:0:0:0:0:0:7");
    for (const r of reports) {
      expect(gunzipSync(r.data).toString("utf8")).toBe(r.xml);
      const v = await validateReport(r.xml, dir);
      expect(v.output).toMatch(/validates/);
    }
  });
});
