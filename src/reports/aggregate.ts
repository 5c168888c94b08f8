// DMARC aggregate reports (RFC 7489 §7.2 and Appendix C) from the history store: one report
// per policy domain that asked for them (rua=) and interval. Everything but
// `buildAggregateReports` is a pure function of its arguments.

import { createHash } from "node:crypto";
import { domainToASCII } from "node:url";
import { gzipSync } from "node:zlib";
import type { Disposition } from "../auth/results.ts";
import type { HistoryDkim, HistoryReader, HistoryRecord, HistorySpf, PolicyOverrideReason, PublishedPolicy } from "./history.ts";
import * as norm from "./normalize.ts";
import type { AlignedResult, AlignmentMode } from "./normalize.ts";
import { el, serializeXml, type XmlElement } from "./xml.ts";

export interface ReportIdentity {
  /** report_metadata/org_name: who we are. */
  readonly orgName: string;
  /** report_metadata/email: where domain owners can write to us. */
  readonly email: string;
  readonly extraContactInfo?: string;
  /** The Mail Receiver's domain: the first part of the file name (RFC 7489 §7.2.1.1). */
  readonly receiver: string;
}

export interface ReportInterval {
  /** Inclusive. */
  readonly since: Date;
  /** Exclusive. */
  readonly until: Date;
}

/** policy_published with RFC 7489's defaults filled in: the schema requires sp, pct and fo. */
export interface ResolvedPolicy {
  readonly domain: string;
  readonly adkim: AlignmentMode;
  readonly aspf: AlignmentMode;
  readonly p: Disposition;
  readonly sp: Disposition;
  readonly pct: number;
  readonly fo: string;
}

export interface AggregateRecord {
  /** In the form the schema's IPAddress pattern accepts. */
  readonly sourceIp: string;
  readonly count: number;
  readonly disposition: Disposition;
  readonly dkim: AlignedResult;
  readonly spf: AlignedResult;
  readonly reasons: readonly PolicyOverrideReason[];
  readonly headerFrom: string;
  readonly envelopeFrom: string;
  readonly dkimResults: readonly HistoryDkim[];
  /** Never empty: the schema requires at least one SPF result. */
  readonly spfResults: readonly HistorySpf[];
}

export interface AggregateReport {
  readonly policyDomain: string;
  readonly reportId: string;
  /** date_range in seconds since the epoch, both inclusive. */
  readonly begin: number;
  readonly end: number;
  readonly policy: ResolvedPolicy;
  /** Where the domain owner wants the report, from the latest record seen in the interval. */
  readonly rua: readonly string[];
  readonly records: readonly AggregateRecord[];
  /** Messages counted in records. */
  readonly messages: number;
  /** Messages left out because their source address is no IP address (the schema needs one). */
  readonly skipped: number;
}

export interface GeneratedReport {
  readonly report: AggregateReport;
  readonly xml: string;
  /** receiver!policy-domain!begin!end.xml.gz */
  readonly filename: string;
  /** The gzipped XML. */
  readonly data: Buffer;
}

/** Seconds; date_range's end is the last second inside the interval. */
export function dateRange(interval: ReportInterval): { begin: number; end: number } {
  const begin = Math.floor(interval.since.getTime() / 1000);
  const end = Math.max(begin, Math.ceil(interval.until.getTime() / 1000) - 1);
  return { begin, end };
}

/**
 * RFC 7489 §6.3 defaults. DMARCbis replaced pct with t=; t=y asks receivers not to apply the
 * policy, which RFC 7489's schema can only say as pct=0.
 */
export function resolvePolicy(p: PublishedPolicy): ResolvedPolicy {
  const pct = norm.percent(p.pct) ?? (p.testing === true ? 0 : 100);
  const pDisposition = norm.disposition(p.p);
  return {
    domain: p.domain,
    adkim: norm.alignmentMode(p.adkim) ?? "r",
    aspf: norm.alignmentMode(p.aspf) ?? "r",
    p: pDisposition,
    sp: norm.policyDisposition(p.sp) ?? pDisposition,
    pct,
    fo: p.fo ?? "0",
  };
}

/**
 * Deterministic, so generating the same interval twice yields the same report_id and the
 * domain owner can discard the duplicate (RFC 7489 §7.2.1.1 on Report-ID).
 */
export function reportId(receiver: string, policyDomain: string, begin: number, end: number): string {
  const hash = createHash("sha256").update(`${receiver}\n${policyDomain}\n${begin}\n${end}`).digest("hex");
  return `${begin}.${end}.${hash.slice(0, 16)}`;
}

/**
 * Groups one policy domain's messages into report records. Messages differing in anything the
 * record shows (including their DKIM/SPF results) stay apart: merging them would report results
 * some of the counted messages never had. Undefined when no message can be reported.
 */
export function aggregate(
  policyDomain: string,
  messages: Iterable<HistoryRecord>,
  interval: ReportInterval,
  identity: ReportIdentity,
): AggregateReport | undefined {
  const groups = new Map<string, { record: Omit<AggregateRecord, "count">; count: number }>();
  let latest: PublishedPolicy | undefined;
  let latestTime = -Infinity;
  let skipped = 0;
  let total = 0;
  for (const m of messages) {
    const t = m.time?.getTime() ?? 0;
    // Policies change; the report carries the one in force at the end of the interval.
    if (m.policy !== undefined && t >= latestTime) {
      latest = m.policy;
      latestTime = t;
    }
    const sourceIp = norm.reportSourceIp(m.sourceIp);
    if (sourceIp === undefined) {
      skipped++;
      continue;
    }
    const envelopeFrom = norm.domain(m.envelopeFrom ?? "");
    // Built field by field, in one order: the record's JSON is its grouping key.
    const dkimResults = m.dkim.map(
      (d): HistoryDkim => ({
        domain: norm.domain(d.domain),
        ...(d.selector !== undefined && { selector: d.selector }),
        result: norm.dkimResult(d.result),
        ...(d.humanResult !== undefined && { humanResult: d.humanResult }),
      }),
    );
    const spfResults = m.spf.map(
      (s): HistorySpf => ({ domain: norm.domain(s.domain), scope: norm.spfScope(s.scope), result: norm.spfResult(s.result) }),
    );
    // The schema wants at least one SPF result; a message SPF was not run for has "none".
    if (spfResults.length === 0) spfResults.push({ domain: envelopeFrom, scope: "mfrom", result: "none" });
    const record: Omit<AggregateRecord, "count"> = {
      sourceIp,
      disposition: norm.disposition(m.disposition),
      dkim: norm.alignedResult(m.dkimAligned),
      spf: norm.alignedResult(m.spfAligned),
      reasons: (m.overrides ?? []).map((o) => norm.override(o.type, o.comment)),
      headerFrom: norm.domain(m.headerFrom),
      envelopeFrom,
      dkimResults,
      spfResults,
    };
    const key = JSON.stringify(record);
    const group = groups.get(key);
    if (group) group.count++;
    else groups.set(key, { record, count: 1 });
    total++;
  }
  if (latest === undefined || groups.size === 0) return undefined;
  const { begin, end } = dateRange(interval);
  const records = [...groups.entries()]
    // Biggest senders first, as a domain owner reads them; ties in a stable, reproducible order.
    .sort(([ka, a], [kb, b]) => b.count - a.count || (ka < kb ? -1 : ka > kb ? 1 : 0))
    .map(([, g]) => ({ ...g.record, count: g.count }));
  return {
    policyDomain,
    reportId: reportId(identity.receiver, policyDomain, begin, end),
    begin,
    end,
    policy: resolvePolicy(latest),
    rua: latest.rua,
    records,
    messages: total,
    skipped,
  };
}

/** The report document, valid against RFC 7489 Appendix C. */
export function aggregateXml(report: AggregateReport, identity: ReportIdentity): string {
  const metadata: XmlElement[] = [
    el("org_name", identity.orgName),
    el("email", identity.email),
    ...(identity.extraContactInfo !== undefined ? [el("extra_contact_info", identity.extraContactInfo)] : []),
    el("report_id", report.reportId),
    el("date_range", [el("begin", report.begin), el("end", report.end)]),
    // The schema's place for telling the domain owner what the report does not contain.
    ...(report.skipped > 0
      ? [el("error", `${report.skipped} message(s) without a client IP address (e.g. local submission) are not included`)]
      : []),
  ];
  const p = report.policy;
  const policy = el("policy_published", [
    el("domain", p.domain),
    el("adkim", p.adkim),
    el("aspf", p.aspf),
    el("p", p.p),
    el("sp", p.sp),
    el("pct", p.pct),
    el("fo", p.fo),
  ]);
  return serializeXml(
    el("feedback", [
      el("version", "1.0"),
      el("report_metadata", metadata),
      policy,
      ...report.records.map(recordXml),
    ]),
  );
}

function recordXml(r: AggregateRecord): XmlElement {
  const evaluated = el("policy_evaluated", [
    el("disposition", r.disposition),
    el("dkim", r.dkim),
    el("spf", r.spf),
    ...r.reasons.map((reason) =>
      el("reason", [el("type", reason.type), ...(reason.comment !== undefined ? [el("comment", reason.comment)] : [])]),
    ),
  ]);
  return el("record", [
    el("row", [el("source_ip", r.sourceIp), el("count", r.count), evaluated]),
    el("identifiers", [el("envelope_from", r.envelopeFrom), el("header_from", r.headerFrom)]),
    el("auth_results", [
      ...r.dkimResults.map((d) =>
        el("dkim", [
          el("domain", d.domain),
          ...(d.selector !== undefined ? [el("selector", d.selector)] : []),
          el("result", d.result),
          ...(d.humanResult !== undefined ? [el("human_result", d.humanResult)] : []),
        ]),
      ),
      ...r.spfResults.map((s) => el("spf", [el("domain", s.domain), el("scope", s.scope), el("result", s.result)])),
    ]),
  ]);
}

/**
 * A domain as a file name part. Domains come from mail and DNS: A-labels for IDNs, and anything
 * outside letters, digits, "-", "." and "_" percent-encoded, so a hostile name can neither
 * leave the output directory ("/") nor blur the "!" separators.
 */
export function filenameDomain(domain: string): string {
  const ascii = /^[\x21-\x7e]*$/.test(domain) ? domain : domainToASCII(domain) || domain;
  return [...Buffer.from(ascii.toLowerCase(), "utf8")]
    .map((b) => (/[a-z0-9._-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`))
    .join("");
}

/** RFC 7489 §7.2.1.1: receiver "!" policy-domain "!" begin "!" end [ "!" unique-id ] "." extension */
export function reportFilename(
  receiver: string,
  policyDomain: string,
  begin: number,
  end: number,
  options: { uniqueId?: string; gzip?: boolean } = {},
): string {
  if (options.uniqueId !== undefined && !/^[A-Za-z0-9]+$/.test(options.uniqueId)) {
    throw new RangeError(`unique-id must be letters and digits: ${JSON.stringify(options.uniqueId)}`);
  }
  const unique = options.uniqueId === undefined ? "" : `!${options.uniqueId}`;
  const extension = options.gzip === false ? "xml" : "xml.gz";
  return `${filenameDomain(receiver)}!${filenameDomain(policyDomain)}!${begin}!${end}${unique}.${extension}`;
}

export function gzipXml(xml: string): Buffer {
  return gzipSync(Buffer.from(xml, "utf8"), { level: 9 });
}

/**
 * Every report due for the interval: one per policy domain whose latest published record in
 * the interval asks for aggregate reports (non-empty rua=).
 */
export function buildAggregateReports(reader: HistoryReader, interval: ReportInterval, identity: ReportIdentity): GeneratedReport[] {
  const out: GeneratedReport[] = [];
  for (const policyDomain of reader.policyDomains(interval.since, interval.until)) {
    const report = aggregate(policyDomain, reader.query({ ...interval, policyDomain }), interval, identity);
    if (report === undefined || report.rua.length === 0) continue;
    const xml = aggregateXml(report, identity);
    out.push({
      report,
      xml,
      filename: reportFilename(identity.receiver, policyDomain, report.begin, report.end),
      data: gzipXml(xml),
    });
  }
  return out;
}
