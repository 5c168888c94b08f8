// One verified message as a row of the DMARC history, from which aggregate reports are built.

import type { HistoryRecord, PublishedPolicy } from "../reports/history.ts";
import { authResultsFromFindings } from "../reports/history.ts";
import type { Disposition } from "./results.ts";
import type { Verification } from "./verify.ts";

export interface HistorySink {
  /** Queues the row; never throws and never waits (the store batches). */
  record(row: HistoryRecord): void;
}

export interface MessageFacts {
  readonly queueId: string;
  readonly sourceIp: string;
  readonly sender: string;
  readonly disposition: Disposition;
}

/** A row for a message DMARC was evaluated for; undefined when there is no author domain. */
export function historyRecordOf(v: Verification, facts: MessageFacts): HistoryRecord | undefined {
  const dmarc = v.findings.dmarc;
  if (!dmarc?.headerFrom) return undefined;
  const auth = authResultsFromFindings(v.findings.dkim, v.findings.spf);
  const policy = v.dmarcRecord ? publishedPolicy(v.dmarcRecord.policyDomain, v.dmarcRecord.record) : undefined;
  const envelopeFrom = facts.sender.includes("@") ? facts.sender.slice(facts.sender.lastIndexOf("@") + 1).toLowerCase() : "";
  return {
    queueId: facts.queueId,
    sourceIp: facts.sourceIp,
    headerFrom: dmarc.headerFrom,
    envelopeFrom,
    dkim: auth.dkim,
    spf: auth.spf,
    dmarc: dmarc.result,
    dkimAligned: v.dmarcRecord?.dkimAligned ? "pass" : "fail",
    spfAligned: v.dmarcRecord?.spfAligned ? "pass" : "fail",
    ...(policy ? { policy } : {}),
    disposition: facts.disposition,
  };
}

/** The record's tags as published (RFC 7489 §6.3), for the report's policy_published. */
export function publishedPolicy(domain: string, record: string): PublishedPolicy | undefined {
  const tags = new Map<string, string>();
  for (const part of record.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0) tags.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  const p = disposition(tags.get("p"));
  if (!p) return undefined;
  const sp = disposition(tags.get("sp"));
  const pct = tags.has("pct") ? Number(tags.get("pct")) : undefined;
  const alignment = (v: string | undefined) => (v === "s" || v === "r" ? v : undefined);
  const uris = (v: string | undefined) => (v ? v.split(",").map((u) => u.trim()).filter(Boolean) : []);
  const adkim = alignment(tags.get("adkim"));
  const aspf = alignment(tags.get("aspf"));
  const t = tags.get("t");
  return {
    domain,
    p,
    ...(sp ? { sp } : {}),
    ...(pct !== undefined && Number.isInteger(pct) && pct >= 0 && pct <= 100 ? { pct } : {}),
    ...(t === "y" || t === "n" ? { testing: t === "y" } : {}),
    ...(adkim ? { adkim } : {}),
    ...(aspf ? { aspf } : {}),
    ...(tags.has("fo") ? { fo: tags.get("fo")! } : {}),
    rua: uris(tags.get("rua")),
    ruf: uris(tags.get("ruf")),
  };
}

function disposition(v: string | undefined): Disposition | undefined {
  const lower = v?.toLowerCase();
  return lower === "none" || lower === "quarantine" || lower === "reject" ? lower : undefined;
}
