// The history's rows, for both stores (history-sqlite.ts, history-pg.ts): what
// record() normalises on the way in, and how a stored row becomes a record again. One piece of
// code, so the two stores cannot drift apart (the conformance test holds them together); what
// differs is only representation, which each store applies around these: SQLite's 0/1 for t=,
// PostgreSQL's text escape for U+0000 and its parsed JSON.

import type { DmarcResult } from "../auth/results.ts";
import type { HistoryDkim, HistoryRecord, HistorySpf, PublishedPolicy, StoredHistoryRecord } from "./history.ts";
import * as norm from "./normalize.ts";

const MAX_TEXT = 1000;

function text(s: string | undefined): string | null {
  if (s === undefined) return null;
  return s.length > MAX_TEXT ? s.slice(0, MAX_TEXT) : s;
}

function dmarcResult(s: string): DmarcResult {
  return s === "pass" || s === "fail" || s === "none" || s === "temperror" ? s : "permerror";
}

/** The columns of the messages table after id, normalised. policy_t: t=y true, t=n false. */
export type MessageColumns = {
  readonly time_ms: number;
  readonly queue_id: string | null;
  readonly source_ip: string;
  readonly header_from: string;
  readonly envelope_from: string;
  readonly dmarc_result: string;
  readonly dkim_aligned: string;
  readonly spf_aligned: string;
  readonly disposition: string;
  readonly overrides: string;
  readonly policy_domain: string | null;
  readonly policy_p: string | null;
  readonly policy_sp: string | null;
  readonly policy_pct: number | null;
  readonly policy_t: boolean | null;
  readonly policy_adkim: string | null;
  readonly policy_aspf: string | null;
  readonly policy_fo: string | null;
  readonly policy_rua: string | null;
  readonly policy_ruf: string | null;
};

/** One message's rows: messages, and dkim_results and spf_results in header order. */
export interface HistoryRow {
  readonly message: MessageColumns;
  readonly dkim: readonly HistoryDkim[];
  readonly spf: readonly HistorySpf[];
}

/** Everything the database stores passes through here, once, at record() time. */
export function toRow(r: HistoryRecord, now: Date): HistoryRow {
  const time = r.time ?? now;
  const ms = time.getTime();
  if (!Number.isFinite(ms)) throw new TypeError("time is not a valid date");
  const p = r.policy;
  const policyP = p && norm.policyDisposition(p.p);
  const hasPolicy = p !== undefined && policyP !== undefined;
  return {
    message: {
      time_ms: ms,
      queue_id: text(r.queueId),
      source_ip: text(norm.sourceIp(r.sourceIp)) ?? "",
      header_from: text(norm.domain(r.headerFrom)) ?? "",
      envelope_from: text(norm.domain(r.envelopeFrom ?? "")) ?? "",
      dmarc_result: dmarcResult(r.dmarc),
      dkim_aligned: norm.alignedResult(r.dkimAligned),
      spf_aligned: norm.alignedResult(r.spfAligned),
      disposition: norm.disposition(r.disposition),
      overrides: JSON.stringify((r.overrides ?? []).map((o) => norm.override(o.type, text(o.comment) ?? undefined))),
      policy_domain: hasPolicy ? text(norm.domain(p.domain)) : null,
      policy_p: hasPolicy ? policyP : null,
      policy_sp: hasPolicy ? (norm.policyDisposition(p.sp) ?? null) : null,
      policy_pct: hasPolicy ? (norm.percent(p.pct) ?? null) : null,
      policy_t: hasPolicy && p.testing !== undefined ? Boolean(p.testing) : null,
      policy_adkim: hasPolicy ? (norm.alignmentMode(p.adkim) ?? null) : null,
      policy_aspf: hasPolicy ? (norm.alignmentMode(p.aspf) ?? null) : null,
      policy_fo: hasPolicy ? text(p.fo) : null,
      policy_rua: hasPolicy ? JSON.stringify(p.rua.map(String)) : null,
      policy_ruf: hasPolicy ? JSON.stringify(p.ruf.map(String)) : null,
    },
    dkim: r.dkim.map((d) => ({
      domain: text(norm.domain(d.domain)) ?? "",
      ...(d.selector !== undefined && { selector: text(d.selector) ?? "" }),
      result: norm.dkimResult(d.result),
      ...(d.humanResult !== undefined && { humanResult: text(d.humanResult) ?? "" }),
    })),
    spf: r.spf.map((s) => ({
      domain: text(norm.domain(s.domain)) ?? "",
      scope: norm.spfScope(s.scope),
      result: norm.spfResult(s.result),
    })),
  };
}

/**
 * A row of SELECT m.*, dkim_json, spf_json as either store returns it. dkim_json and spf_json
 * hold [ord, ...columns] per result: as JSON text (SQLite) or already parsed (PostgreSQL).
 */
export type StoredRow = Readonly<Record<string, unknown>>;

function jsonArray(s: string | undefined): unknown[] {
  if (s === undefined) return [];
  try {
    const v: unknown = JSON.parse(s);
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

function byOrd(a: unknown, b: unknown): number {
  return Number((a as unknown[])[0]) - Number((b as unknown[])[0]);
}

const asStored = (s: string): string => s;

/**
 * The record a stored row holds. `decode` undoes what the store did to text on the way in
 * (PostgreSQL's escape of U+0000); SQLite keeps text as it is.
 */
export function fromRow(row: StoredRow, decode: (s: string) => string = asStored): StoredHistoryRecord {
  const optText = (v: unknown): string | undefined => (v === null || v === undefined ? undefined : decode(String(v)));
  const optStr = (key: string): string | undefined => optText(row[key]);
  const str = (key: string): string => optStr(key) ?? "";
  const results = (key: string): unknown[][] => {
    const v = row[key];
    const entries = Array.isArray(v) ? v : typeof v === "string" ? jsonArray(v) : [];
    // json_group_array (SQLite) promises no order.
    return (entries as unknown[][]).sort(byOrd);
  };
  const dkim = results("dkim_json").map((e): HistoryDkim => {
    const [, domain, selector, result, human] = e;
    const sel = optText(selector);
    const hr = optText(human);
    return {
      domain: optText(domain) ?? "",
      ...(sel !== undefined && { selector: sel }),
      result: norm.dkimResult(String(result)),
      ...(hr !== undefined && { humanResult: hr }),
    };
  });
  const spf = results("spf_json").map((e): HistorySpf => {
    const [, domain, scope, result] = e;
    return { domain: optText(domain) ?? "", scope: norm.spfScope(String(scope)), result: norm.spfResult(String(result)) };
  });
  const overrides = jsonArray(optStr("overrides")).map((o) => {
    const { type, comment } = o as { type?: unknown; comment?: unknown };
    return norm.override(String(type), typeof comment === "string" ? comment : undefined);
  });
  const policyDomain = optStr("policy_domain");
  const p = norm.policyDisposition(optStr("policy_p"));
  let policy: PublishedPolicy | undefined;
  if (policyDomain !== undefined && p !== undefined) {
    const sp = norm.policyDisposition(optStr("policy_sp"));
    const pctRaw = row["policy_pct"];
    const pct = norm.percent(pctRaw === null || pctRaw === undefined ? undefined : Number(pctRaw));
    const t = row["policy_t"];
    const adkim = norm.alignmentMode(optStr("policy_adkim"));
    const aspf = norm.alignmentMode(optStr("policy_aspf"));
    const fo = optStr("policy_fo");
    policy = {
      domain: policyDomain,
      p,
      ...(sp !== undefined && { sp }),
      ...(pct !== undefined && { pct }),
      // SQLite's 1 or 0, PostgreSQL's true or false.
      ...(t !== null && t !== undefined && { testing: Number(t) === 1 }),
      ...(adkim !== undefined && { adkim }),
      ...(aspf !== undefined && { aspf }),
      ...(fo !== undefined && { fo }),
      rua: jsonArray(optStr("policy_rua")).map(String),
      ruf: jsonArray(optStr("policy_ruf")).map(String),
    };
  }
  const queueId = optStr("queue_id");
  return {
    id: Number(row["id"]),
    time: new Date(Number(row["time_ms"])),
    ...(queueId !== undefined && { queueId }),
    sourceIp: str("source_ip"),
    headerFrom: str("header_from"),
    envelopeFrom: str("envelope_from"),
    dkim,
    spf,
    dmarc: dmarcResult(str("dmarc_result")),
    dkimAligned: norm.alignedResult(str("dkim_aligned")),
    spfAligned: norm.alignedResult(str("spf_aligned")),
    ...(policy !== undefined && { policy }),
    disposition: norm.disposition(str("disposition")),
    overrides,
  };
}
