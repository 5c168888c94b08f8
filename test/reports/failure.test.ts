// Failure reports: the AFRF message read back part by part, fo= and r=y decisions, the
// reporter's rate limit and error handling (DNS from a server on loopback, reports collected
// by an injected send function), and one report through a real Postfix with the SMTP mailer.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { wireForm, type HeaderField } from "../../src/auth/header-field.ts";
import type { DkimFinding, Findings } from "../../src/auth/results.ts";
import { createResolver, type Resolver } from "../../src/dns/index.ts";
import {
  buildDkimFailureReport,
  buildDmarcFailureReport,
  dkimReportCandidates,
  dmarcFailureTrigger,
  FailureReporter,
  parseDkimReportRecord,
  RateLimiter,
  type FailureReportInput,
  type FailureReporterOptions,
} from "../../src/reports/failure.ts";
import { MailerError, smtpMailer, type Mailer, type OutgoingMail } from "../../src/reports/mailer.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";
import { parseHeaders } from "../support/mail.ts";
import { startPostfix, type PostfixInstance } from "../support/postfix.ts";
import { e2eGate } from "../support/prereq.ts";
import { captureLogger, LEVEL } from "./helpers.ts";
import { header, parseMime, type MimeEntity } from "./mime.ts";

const h = (name: string, value: string | Buffer): HeaderField => ({ name, value: typeof value === "string" ? Buffer.from(value, "latin1") : value });

const SIGNATURE = " v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel1; r=y;\n\th=from:to:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\n\tb=AbCdEfGh1234\n\t5678";
const HEADERS: HeaderField[] = [
  h("Received", " from mail.sender.example (mail.sender.example [192.0.2.1])\n\tby mx.receiver.example (Postfix) with ESMTP id 4C9D2A12"),
  h("DKIM-Signature", SIGNATURE),
  h("From", " Alice <alice@example.com>"),
  h("To", " bob@receiver.example"),
  h("Subject", Buffer.from(" Grüße aus Köln", "utf8")),
  h("Message-ID", " <m1@example.com>"),
];

const FAILED_SIGNATURE: DkimFinding = {
  result: "fail",
  reason: "body hash did not verify",
  keyBits: 2048,
  domain: "example.com",
  identity: "@example.com",
  selector: "sel1",
  algorithm: "rsa-sha256",
  signaturePrefix: "AbCdEfGh",
};

const FINDINGS: Findings = {
  dkim: [FAILED_SIGNATURE],
  spf: [{ result: "fail", identity: "mailfrom", domain: "example.com" }],
  dmarc: { result: "fail", headerFrom: "example.com", policy: "REJECT", disposition: "none" },
  arc: { result: "none" },
};

function input(over: Partial<FailureReportInput> & { record?: string; dkimAligned?: boolean; spfAligned?: boolean } = {}): FailureReportInput {
  const { record, dkimAligned, spfAligned, ...rest } = over;
  return {
    queueId: "4C9D2A12",
    authservId: "mx.receiver.example",
    sourceIp: "192.0.2.1",
    sender: "bounce@example.com",
    headers: HEADERS,
    findings: FINDINGS,
    dmarcRecord: {
      policyDomain: "example.com",
      record: record ?? "v=DMARC1; p=reject; ruf=mailto:ruf@example.com; fo=1",
      dkimAligned: dkimAligned ?? false,
      spfAligned: spfAligned ?? false,
    },
    disposition: "reject",
    arrivalDate: new Date("2024-05-01T10:00:00Z"),
    ...rest,
  };
}

const ENVELOPE = { from: "reports@receiver.example", to: "ruf@example.com", reportingMta: "mx.receiver.example", date: new Date("2024-05-01T10:00:05Z") };

/** The message/feedback-report part's fields, name → values. */
function feedbackFields(report: MimeEntity): Map<string, string[]> {
  const part = report.parts.find((p) => p.type === "message/feedback-report");
  if (part === undefined) throw new Error("no message/feedback-report part");
  const fields = new Map<string, string[]>();
  for (const f of parseHeaders(`${part.content.toString("latin1")}\r\n`)) fields.set(f.name, [...(fields.get(f.name) ?? []), f.value]);
  return fields;
}

const field = (fields: Map<string, string[]>, name: string) => fields.get(name)?.[0];

describe("DMARC failure report format (RFC 6591, RFC 7489 §7.3)", () => {
  const raw = buildDmarcFailureReport(input(), ENVELOPE)!;
  const m = parseMime(raw);

  it("is a multipart/report feedback-report with text, feedback report and the original's headers", () => {
    expect(raw.every((b) => b < 0x80)).toBe(true);
    expect(m.type).toBe("multipart/report");
    expect(m.params.get("report-type")).toBe("feedback-report");
    expect(header(m, "From")).toBe("reports@receiver.example");
    expect(header(m, "To")).toBe("ruf@example.com");
    expect(header(m, "Date")).toBe("Wed, 01 May 2024 10:00:05 +0000");
    expect(header(m, "Subject")).toBe("DMARC failure report for example.com: mail from 192.0.2.1");
    expect(header(m, "Auto-Submitted")).toBe("auto-generated");
    expect(m.parts.map((p) => p.type)).toEqual(["text/plain", "message/feedback-report", "text/rfc822-headers"]);
    expect(m.parts[0]!.content.toString()).toContain("192.0.2.1");
  });

  it("carries the auth-failure fields", () => {
    const f = feedbackFields(m);
    expect(field(f, "Feedback-Type")).toBe("auth-failure");
    expect(field(f, "Version")).toBe("1");
    expect(field(f, "User-Agent")).toMatch(/^authmilter\/\d+\.\d+\.\d+$/);
    expect(field(f, "Auth-Failure")).toBe("dmarc");
    expect(field(f, "Original-Envelope-Id")).toBe("4C9D2A12");
    expect(field(f, "Original-Mail-From")).toBe("<bounce@example.com>");
    expect(field(f, "Arrival-Date")).toBe("Wed, 01 May 2024 10:00:00 +0000");
    expect(field(f, "Reporting-MTA")).toBe("dns; mx.receiver.example");
    expect(field(f, "Source-IP")).toBe("192.0.2.1");
    expect(field(f, "Reported-Domain")).toBe("example.com");
    expect(field(f, "Delivery-Result")).toBe("reject");
    expect(field(f, "Identity-Alignment")).toBe("none");
    expect(field(f, "DKIM-Domain")).toBe("example.com");
    expect(field(f, "DKIM-Selector")).toBe("sel1");
    expect(field(f, "DKIM-Identity")).toBe("@example.com");
    const ar = field(f, "Authentication-Results")!;
    expect(ar).toMatch(/^mx\.receiver\.example;/);
    expect(ar).toContain('dkim=fail reason="body hash did not verify"');
    expect(ar).toContain("spf=fail smtp.mailfrom=example.com");
    expect(ar).toContain("dmarc=fail (p=REJECT dis=none) header.from=example.com");
    expect(f.get("Authentication-Results")).toHaveLength(1);
  });

  it("holds the original header section exactly, and nothing of a body", () => {
    const part = m.parts[2]!;
    expect(header(part, "Content-Transfer-Encoding")).toBe("quoted-printable");
    expect(part.content.equals(Buffer.concat(HEADERS.map(wireForm)))).toBe(true);
    expect(part.content.toString("utf8")).toContain("Subject: Grüße aus Köln\r\n");
    // No message/rfc822 anywhere, and the headers part ends with the last header field.
    expect(m.parts.some((p) => p.type === "message/rfc822")).toBe(false);
    expect(part.content.toString("latin1")).not.toMatch(/\r\n\r\n/);
  });

  it("says delivered or spam for what was not rejected, and names aligned identifiers", () => {
    const f = feedbackFields(parseMime(buildDmarcFailureReport(input({ disposition: "quarantine", dkimAligned: true }), ENVELOPE)!));
    expect(field(f, "Delivery-Result")).toBe("spam");
    expect(field(f, "Identity-Alignment")).toBe("dkim");
    expect(field(feedbackFields(parseMime(buildDmarcFailureReport(input({ disposition: "none" }), ENVELOPE)!)), "Delivery-Result")).toBe("delivered");
  });

  it("uses 7bit for a plain ASCII header section", () => {
    const ascii = HEADERS.filter((x) => x.name !== "Subject");
    const part = parseMime(buildDmarcFailureReport(input({ headers: ascii }), ENVELOPE)!).parts[2]!;
    expect(header(part, "Content-Transfer-Encoding")).toBe("7bit");
    expect(part.content.equals(Buffer.concat(ascii.map(wireForm)))).toBe(true);
  });
});

describe("fo= decides (RFC 7489 §6.3)", () => {
  const spfPass: Findings = { ...FINDINGS, spf: [{ result: "pass", identity: "mailfrom", domain: "example.com" }] };
  const dkimPass: Findings = { ...FINDINGS, dkim: [{ ...FAILED_SIGNATURE, result: "pass", reason: undefined }] };
  const cases: Array<[string, Partial<Parameters<typeof input>[0]>, string | undefined]> = [
    ["fo=0, nothing aligned", { record: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com; fo=0" }, "dmarc"],
    ["fo=0, DKIM aligned", { record: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com; fo=0", dkimAligned: true }, undefined],
    ["no fo= means 0", { record: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com", spfAligned: true }, undefined],
    ["no fo=, nothing aligned", { record: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com" }, "dmarc"],
    ["fo=1, SPF not aligned", { record: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com; fo=1", dkimAligned: true }, "dmarc"],
    ["fo=1, both aligned", { record: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com; fo=1", dkimAligned: true, spfAligned: true }, undefined],
    ["fo=d, a signature failed though DMARC passed", { record: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com; fo=d", spfAligned: true }, "bodyhash"],
    ["fo=d, no signature failed", { record: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com; fo=d", findings: dkimPass }, undefined],
    ["fo=s, SPF failed", { record: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com; fo=s", dkimAligned: true }, "spf"],
    ["fo=s, SPF passed", { record: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com; fo=s", findings: spfPass }, undefined],
    ["fo=0:s, DKIM aligned, SPF failed", { record: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com; fo=0:s", dkimAligned: true }, "spf"],
    ["fo=0:1 counts once", { record: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com; fo=0:1" }, "dmarc"],
    ["no ruf=", { record: "v=DMARC1; p=reject; fo=1" }, undefined],
    ["no DMARC record", { dmarcRecord: undefined }, undefined],
  ];
  for (const [name, over, expected] of cases) {
    it(`${name} → ${expected ?? "no report"}`, () => {
      const i = input(over);
      expect(dmarcFailureTrigger(i)?.authFailure).toBe(expected);
      const report = buildDmarcFailureReport(i, ENVELOPE);
      if (expected === undefined) expect(report).toBeUndefined();
      else expect(field(feedbackFields(parseMime(report!)), "Auth-Failure")).toBe(expected);
    });
  }
});

describe("DKIM failure reports (RFC 6651)", () => {
  it("finds failed signatures that asked for reports with r=y, matched by d=, s= and b=", () => {
    expect(dkimReportCandidates(input())).toEqual([
      { finding: FAILED_SIGNATURE, domain: "example.com", selector: "sel1", identity: "@example.com", failureClass: "v" },
    ]);
    const noR = input({ headers: HEADERS.map((x) => (x.name === "DKIM-Signature" ? h(x.name, SIGNATURE.replace(" r=y;", "")) : x)) });
    expect(dkimReportCandidates(noR)).toEqual([]);
    const otherSig = input({ findings: { ...FINDINGS, dkim: [{ ...FAILED_SIGNATURE, signaturePrefix: "ZZZZZZZZ" }] } });
    expect(dkimReportCandidates(otherSig)).toEqual([]);
    const passed = input({ findings: { ...FINDINGS, dkim: [{ ...FAILED_SIGNATURE, result: "pass" }] } });
    expect(dkimReportCandidates(passed)).toEqual([]);
  });

  it("reads ra=, rp= and rr= of the reporting record", () => {
    expect(parseDkimReportRecord("ra=dkim=2Dfail; rp=25; rr=v:x")).toEqual({ ra: "dkim-fail", rp: 25, rr: new Set(["v", "x"]) });
    expect(parseDkimReportRecord("ra=ops")).toEqual({ ra: "ops", rp: 100, rr: new Set(["d", "o", "p", "s", "u", "v", "x"]) });
    expect(parseDkimReportRecord("rp=100; rr=all")).toBeUndefined();
  });

  it("builds Auth-Failure bodyhash with DKIM-Domain, -Identity and -Selector", () => {
    const [candidate] = dkimReportCandidates(input());
    const m = parseMime(buildDkimFailureReport(input(), candidate!, { ...ENVELOPE, to: "dkim-fail@example.com" }));
    expect(m.type).toBe("multipart/report");
    expect(header(m, "Subject")).toBe("DKIM failure report for example.com s=sel1: mail from 192.0.2.1");
    const f = feedbackFields(m);
    expect(field(f, "Feedback-Type")).toBe("auth-failure");
    expect(field(f, "Auth-Failure")).toBe("bodyhash");
    expect(field(f, "DKIM-Domain")).toBe("example.com");
    expect(field(f, "DKIM-Identity")).toBe("@example.com");
    expect(field(f, "DKIM-Selector")).toBe("sel1");
    expect(field(f, "Reported-Domain")).toBe("example.com");
    expect(f.has("Identity-Alignment")).toBe(false);
    const bad = { ...FAILED_SIGNATURE, reason: "bad signature" };
    const [c2] = dkimReportCandidates(input({ findings: { ...FINDINGS, dkim: [bad] } }));
    expect(field(feedbackFields(parseMime(buildDkimFailureReport(input(), c2!, ENVELOPE))), "Auth-Failure")).toBe("signature");
  });
});

describe("rate limiter", () => {
  it("allows N per key in any hour, and keys apart", () => {
    const limiter = new RateLimiter(2, 3_600_000);
    expect([limiter.take("a", 0), limiter.take("a", 1000), limiter.take("a", 2000), limiter.take("b", 2000)]).toEqual([true, true, false, true]);
    expect(limiter.take("a", 3_600_000)).toBe(true); // the event at 0 left the window
    expect(limiter.take("a", 3_600_500)).toBe(false); // the one at 1000 has not
  });

  it("refuses new keys rather than growing past its bound while all are busy", () => {
    const limiter = new RateLimiter(1, 1000, 2);
    expect([limiter.take("a", 0), limiter.take("b", 0), limiter.take("c", 0)]).toEqual([true, true, false]);
    expect(limiter.take("c", 1000)).toBe(true); // a and b expired and were pruned
  });
});

describe("FailureReporter", () => {
  let dns: DnsTestServer;
  let resolver: Resolver;
  beforeAll(async () => {
    dns = await startDnsServer({
      zone: {
        "_dmarc.example.com": { TXT: "v=DMARC1; p=reject; ruf=mailto:ruf@example.com" },
        "_report._domainkey.example.com": { TXT: "ra=dkim-fail; rp=100; rr=v" },
        "_report._domainkey.sampled.example": { TXT: "ra=dkim-fail; rp=50" },
        "_report._domainkey.dns-only.example": { TXT: "ra=dkim-fail; rr=d" },
        "example.com._report._dmarc.reports.example.net": { TXT: "v=DMARC1" },
      },
    });
  });
  afterAll(async () => {
    await dns.close();
  });
  beforeEach(() => {
    resolver = createResolver({ servers: dns.servers, timeoutMs: 500, tries: 1 });
    dns.resetLog();
  });

  function reporter(over: Partial<FailureReporterOptions> = {}) {
    const sent: OutgoingMail[] = [];
    const { logger, lines } = captureLogger();
    const mailer: Mailer = { description: "test", send: async (mail) => void sent.push(mail) };
    const r = new FailureReporter({ logger, mailer, resolver, from: "reports@receiver.example", reportingMta: "mx.receiver.example", dmarc: true, dkim: true, ...over });
    return { r, sent, lines };
  }

  const dkimOnly = (domain: string, over: Partial<DkimFinding> = {}): FailureReportInput =>
    input({
      dmarcRecord: undefined,
      headers: HEADERS.map((x) => (x.name === "DKIM-Signature" ? h(x.name, SIGNATURE.replace("d=example.com", `d=${domain}`)) : x)),
      findings: { ...FINDINGS, dkim: [{ ...FAILED_SIGNATURE, domain, ...over }] },
    });

  it("is off by default: no report, no DNS query", async () => {
    const { r, sent } = reporter({ dmarc: undefined, dkim: undefined });
    expect(r.enabled).toBe(false);
    await r.consider(input());
    expect(sent).toEqual([]);
    expect(dns.queries).toEqual([]);
  });

  it("sends the DMARC report to ruf= and the DKIM report to ra=@d, from the report address", async () => {
    const { r, sent, lines } = reporter();
    await r.consider(input());
    expect(sent.map((m) => m.to)).toEqual([["ruf@example.com"], ["dkim-fail@example.com"]]);
    for (const m of sent) expect(m.from).toBe("reports@receiver.example");
    expect(field(feedbackFields(parseMime(sent[0]!.data)), "Auth-Failure")).toBe("dmarc");
    expect(field(feedbackFields(parseMime(sent[1]!.data)), "Auth-Failure")).toBe("bodyhash");
    expect(r.stats).toMatchObject({ sent: 2, failed: 0 });
    expect(lines.map((l) => l.msg)).toContain("4C9D2A12: DMARC failure report for example.com sent to ruf@example.com");
  });

  it("follows rr= and rp= of the signer's record", async () => {
    const { r, sent } = reporter({ dmarc: false, random: () => 0.7 });
    await r.consider(dkimOnly("dns-only.example"));
    await r.consider(dkimOnly("sampled.example"));
    expect(sent).toEqual([]);
    expect(r.stats.skipped).toBe(2);
    const lucky = reporter({ dmarc: false, random: () => 0.3 });
    await lucky.r.consider(dkimOnly("sampled.example"));
    expect(lucky.sent.map((m) => m.to)).toEqual([["dkim-fail@sampled.example"]]);
  });

  it("sends no DKIM report for a signature without r=y, and does not even look", async () => {
    const { r, sent } = reporter({ dmarc: false });
    await r.consider(input({ headers: HEADERS.map((x) => (x.name === "DKIM-Signature" ? h(x.name, SIGNATURE.replace(" r=y;", "")) : x)) }));
    expect(sent).toEqual([]);
    expect(dns.count({ name: "_report._domainkey.example.com" })).toBe(0);
  });

  it("verifies an external ruf= destination and skips one that is not authorized", async () => {
    const { r, sent, lines } = reporter({ dkim: false });
    await r.consider(input({ record: "v=DMARC1; p=reject; fo=1; ruf=mailto:forensic@reports.example.net,mailto:forensic@nobody.example" }));
    expect(sent.map((m) => m.to)).toEqual([["forensic@reports.example.net"]]);
    expect(lines.map((l) => l.msg)).toContainEqual(expect.stringMatching(/not sent to mailto:forensic@nobody\.example: external destination not authorized/));
  });

  it("honours a ruf= size limit", async () => {
    const { r, sent, lines } = reporter({ dkim: false });
    await r.consider(input({ record: "v=DMARC1; p=reject; fo=1; ruf=mailto:ruf@example.com!1k" }));
    expect(sent).toEqual([]);
    expect(lines.map((l) => l.msg)).toContainEqual(expect.stringMatching(/not sent to ruf@example\.com: \d+ bytes exceed its limit of 1024/));
  });

  it("limits reports per domain and hour", async () => {
    let now = 0;
    const { r, sent, lines } = reporter({ dkim: false, perDomainPerHour: 2, now: () => now });
    for (let i = 0; i < 3; i++) await r.consider(input());
    expect(sent).toHaveLength(2);
    expect(r.stats.rateLimited).toBe(1);
    expect(lines.map((l) => l.msg)).toContain("4C9D2A12: DMARC failure report for example.com not sent: rate limit reached");
    // Another domain has its own budget.
    await r.consider(input({ dmarcRecord: { policyDomain: "other.example", record: "v=DMARC1; p=none; ruf=mailto:ruf@other.example", dkimAligned: false, spfAligned: false } }));
    expect(sent.map((m) => m.to[0])).toEqual(["ruf@example.com", "ruf@example.com", "ruf@other.example"]);
    now = 3_600_001;
    await r.consider(input());
    expect(sent).toHaveLength(4);
  });

  it("logs a failed send and neither throws nor rejects", async () => {
    const { logger, lines } = captureLogger();
    const mailer: Mailer = {
      description: "smtp://relay.invalid:25",
      send: () => Promise.reject(new MailerError("cannot connect to relay.invalid:25: ECONNREFUSED", { permanent: false })),
    };
    const r = new FailureReporter({ logger, mailer, resolver, from: "reports@receiver.example", reportingMta: "mx", dmarc: true, dkim: true });
    await expect(r.consider(input())).resolves.toBeUndefined();
    expect(r.stats).toMatchObject({ sent: 0, failed: 2 });
    const warnings = lines.filter((l) => l.level === LEVEL.warn).map((l) => l.msg);
    expect(warnings).toContain("4C9D2A12: sending the DMARC failure report for example.com to ruf@example.com failed: cannot connect to relay.invalid:25: ECONNREFUSED");
  });

  it("survives a mailer that throws synchronously and input it cannot read", async () => {
    const { logger, lines } = captureLogger();
    const mailer: Mailer = {
      description: "broken",
      send: () => {
        throw new Error("boom");
      },
    };
    const r = new FailureReporter({ logger, mailer, resolver, from: "reports@receiver.example", reportingMta: "mx", dmarc: true, dkim: true });
    await expect(r.consider(input())).resolves.toBeUndefined();
    expect(r.stats.failed).toBe(2);
    await expect(r.consider({ queueId: "Q1" } as unknown as FailureReportInput)).resolves.toBeUndefined();
    expect(lines.filter((l) => l.level === LEVEL.error).map((l) => l.msg)).toContain("Q1: failure report: internal error; no report");
  });

  it("does not report about reports", async () => {
    const { r, sent } = reporter();
    await r.consider(input({ headers: [...HEADERS, h("Content-Type", ' multipart/report; report-type=feedback-report; boundary="b"')] }));
    await r.consider(input({ headers: [...HEADERS, h("Auto-Submitted", " auto-generated")] }));
    expect(sent).toEqual([]);
  });

  it("decides without waiting: consider() returns while the send is still under way, and close() waits for it", async () => {
    const { logger } = captureLogger();
    let release: (() => void) | undefined;
    const started: string[] = [];
    const mailer: Mailer = {
      description: "slow",
      send: (mail) => {
        started.push(mail.to[0]!);
        return new Promise<void>((resolve) => (release = resolve));
      },
    };
    const r = new FailureReporter({ logger, mailer, resolver, from: "reports@receiver.example", reportingMta: "mx", dmarc: true, maxConcurrent: 1 });
    let settled = false;
    const pending = r.consider(input()).then(() => (settled = true));
    const closed = r.close();
    // consider() has returned before any send started: the message path never waits for one.
    expect(started).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 0));
    while (release === undefined) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(settled).toBe(false);
    release();
    await closed;
    await pending;
    expect(settled).toBe(true);
    expect(started).toEqual(["ruf@example.com"]);
  });
});

const gate = e2eGate({ tools: ["postfix", "postconf"], root: true });

describe.skipIf(gate.skip)(`failure reports through a real Postfix${gate.label}`, () => {
  let pf: PostfixInstance;
  let dns: DnsTestServer;
  beforeAll(async () => {
    gate.assertReady();
    dns = await startDnsServer({ zone: { "_report._domainkey.example.com": { TXT: "ra=dkim-fail" } } });
    pf = await startPostfix();
  });
  afterAll(async () => {
    await pf?.stop();
    await dns?.close();
  });

  it("arrive as AFRF messages with the original headers and no body", async () => {
    const { logger, lines } = captureLogger();
    const r = new FailureReporter({
      logger,
      mailer: smtpMailer({ host: "127.0.0.1", port: pf.smtpPort, helo: "mx.receiver.example" }),
      resolver: createResolver({ servers: dns.servers, timeoutMs: 500, tries: 1 }),
      from: "reports@receiver.example",
      reportingMta: "mx.receiver.example",
      dmarc: true,
      dkim: true,
    });
    await r.consider(input());
    expect(lines.filter((l) => l.level >= LEVEL.warn)).toEqual([]);
    expect(r.stats.sent).toBe(2);
    const delivered = await pf.waitForDelivered(2);
    const byRcpt = new Map(delivered.map((d) => [d.rcptTo[0], d]));
    const dmarc = byRcpt.get("ruf@example.com")!;
    expect(dmarc.mailFrom).toBe("reports@receiver.example");
    const m = parseMime(dmarc.raw);
    expect(m.type).toBe("multipart/report");
    expect(m.parts.map((p) => p.type)).toEqual(["text/plain", "message/feedback-report", "text/rfc822-headers"]);
    const f = feedbackFields(m);
    expect(field(f, "Auth-Failure")).toBe("dmarc");
    expect(field(f, "Source-IP")).toBe("192.0.2.1");
    expect(m.parts[2]!.content.equals(Buffer.concat(HEADERS.map(wireForm)))).toBe(true);
    const dkim = parseMime(byRcpt.get("dkim-fail@example.com")!.raw);
    expect(field(feedbackFields(dkim), "Auth-Failure")).toBe("bodyhash");
    expect(field(feedbackFields(dkim), "DKIM-Selector")).toBe("sel1");
  });
});
