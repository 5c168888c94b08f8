// The DMARC history: one row per verified message, what opendmarc's HistoryFile plus
// opendmarc-import kept in MySQL. This is what it holds and what a store promises; the stores
// are history-sqlite.ts (one file next to the daemon, the default) and history-pg.ts (one
// PostgreSQL database for several MTAs), both writing through history-queue.ts.

import type { Logger } from "pino";
import type { Disposition, DkimFinding, DkimResult, DmarcResult, SpfFinding, SpfResult } from "../auth/results.ts";
import type { AlignedResult, AlignmentMode, PolicyOverride, SpfScope } from "./normalize.ts";

export const DEFAULT_HISTORY_PATH = "/var/lib/authmilter/history.sqlite";

export interface HistoryDkim {
  /** The signature's d=. */
  readonly domain: string;
  /** The signature's s=. */
  readonly selector?: string;
  readonly result: DkimResult;
  /** Free text for the report's human_result, e.g. why verification failed. */
  readonly humanResult?: string;
}

export interface HistorySpf {
  /** The domain SPF checked: MAIL FROM's domain, or the HELO name. */
  readonly domain: string;
  readonly scope: SpfScope;
  readonly result: SpfResult;
}

export interface PolicyOverrideReason {
  readonly type: PolicyOverride;
  readonly comment?: string;
}

/** The DMARC record that applied, as published (before pct/t and local policy). */
export interface PublishedPolicy {
  /** Where the record was found: the From domain or its organizational domain. */
  readonly domain: string;
  readonly p: Disposition;
  /** Absent when the record had no sp= (then p applies to subdomains too). */
  readonly sp?: Disposition;
  /** Absent when the record had no pct= (RFC 7489 default 100). */
  readonly pct?: number;
  /** DMARCbis t= (testing mode): true for t=y, false for t=n, absent when not published. */
  readonly testing?: boolean;
  readonly adkim?: AlignmentMode;
  readonly aspf?: AlignmentMode;
  readonly fo?: string;
  /** Aggregate report URIs exactly as published, e.g. "mailto:dmarc@example.com!10m". */
  readonly rua: readonly string[];
  readonly ruf: readonly string[];
}

export interface HistoryRecord {
  /** When the message was verified; default: when record() was called. */
  readonly time?: Date;
  /** Postfix queue id, to find the message in the mail log. */
  readonly queueId?: string;
  /** The SMTP client's address. */
  readonly sourceIp: string;
  /** RFC5322.From domain. */
  readonly headerFrom: string;
  /** RFC5321.MailFrom domain; empty or absent for the null sender. */
  readonly envelopeFrom?: string;
  /** One entry per DKIM signature, in header order. */
  readonly dkim: readonly HistoryDkim[];
  readonly spf: readonly HistorySpf[];
  readonly dmarc: DmarcResult;
  /** The report's policy_evaluated/dkim: did an aligned DKIM signature pass? */
  readonly dkimAligned: AlignedResult;
  /** The report's policy_evaluated/spf: did SPF pass for an aligned domain? */
  readonly spfAligned: AlignedResult;
  /** Absent when no DMARC record was found (dmarc=none, or temperror/permerror on lookup). */
  readonly policy?: PublishedPolicy;
  /** What was done to the message. */
  readonly disposition: Disposition;
  /** Why the disposition differs from the policy (pct sampling, local policy, ...). */
  readonly overrides?: readonly PolicyOverrideReason[];
}

/**
 * The verifier's findings as history entries. A DKIM finding without a domain (dkim=none: no
 * signature, or one too broken to name its d=) is no signature the report could list.
 */
export function authResultsFromFindings(
  dkim: readonly DkimFinding[],
  spf: readonly SpfFinding[],
): { dkim: HistoryDkim[]; spf: HistorySpf[] } {
  return {
    dkim: dkim.flatMap((d): HistoryDkim[] =>
      d.domain === undefined || d.domain === ""
        ? []
        : [
            {
              domain: d.domain,
              ...(d.selector !== undefined && { selector: d.selector }),
              result: d.result,
              ...(d.result !== "pass" && d.reason !== undefined && { humanResult: d.reason }),
            },
          ],
    ),
    spf: spf.map((s) => ({ domain: s.domain, scope: s.identity === "helo" ? "helo" : "mfrom", result: s.result })),
  };
}

export interface StoredHistoryRecord extends HistoryRecord {
  readonly id: number;
  readonly time: Date;
  readonly envelopeFrom: string;
  readonly overrides: readonly PolicyOverrideReason[];
}

export interface HistoryCounters {
  /** Rows accepted by record() into the queue. */
  readonly recorded: number;
  /** Rows committed to the database. */
  readonly written: number;
  /** Rows waiting in the queue. */
  readonly pending: number;
  /** All rows lost, for whatever reason (the sum of the four below). */
  readonly dropped: number;
  /** Lost because their batch could not be written. */
  readonly droppedStoreError: number;
  /** Lost because the queue was full (the database stayed busy or slow). */
  readonly droppedQueueFull: number;
  /** Recorded after close(), or still queued when close() could not write them. */
  readonly droppedClosed: number;
  /** record() was given something it could not store (a caller bug; logged). */
  readonly droppedInvalid: number;
  /** Batch writes that failed (each loses up to batchSize rows). */
  readonly storeErrors: number;
  /** Batch writes put off because another connection held the write lock. */
  readonly busyRetries: number;
}

export interface HistoryQuery {
  /** Inclusive. */
  readonly since: Date;
  /** Exclusive. */
  readonly until: Date;
  readonly policyDomain?: string;
}

export interface HistoryReader {
  /** Policy domains with messages in [since, until), sorted. */
  policyDomains(since: Date, until: Date): string[];
  /** Messages in [since, until), oldest first. Streams: a day of mail need not fit in memory. */
  query(q: HistoryQuery): IterableIterator<StoredHistoryRecord>;
  close(): Promise<void>;
}

export interface HistoryStore extends HistoryReader {
  /** Queues one message's row. Synchronous, no I/O, never throws. */
  record(r: HistoryRecord): void;
  /** Writes what is queued now. Resolves even when rows had to be dropped (see counters). */
  flush(): Promise<void>;
  /** Deletes messages older than the date; returns how many. */
  prune(olderThan: Date): number;
  /** The same without blocking the event loop where the store can (the daemon's daily prune). */
  pruneAsync(olderThan: Date): Promise<number>;
  /** Writes what is queued, then closes the database. Later record() calls are dropped. */
  close(): Promise<void>;
  readonly counters: HistoryCounters;
}

export interface HistoryStoreOptions {
  readonly logger: Logger;
  /** Rows per transaction; a full batch is written on the next turn of the event loop. */
  readonly batchSize?: number;
  /** A partial batch waits at most this long. */
  readonly flushIntervalMs?: number;
  /** Rows kept while the database is busy; beyond this new rows are dropped. */
  readonly maxQueue?: number;
}

export const HISTORY_DEFAULTS = { batchSize: 200, flushIntervalMs: 1000, maxQueue: 20_000 } as const;

/** The database exists but is not a history this version can use: for the operator to fix. */
export class HistorySchemaError extends Error {
  override readonly name = "HistorySchemaError";
}
