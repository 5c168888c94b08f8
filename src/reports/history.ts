// The DMARC history: one row per verified message, what opendmarc's HistoryFile plus
// opendmarc-import kept in MySQL, here in one SQLite file next to the daemon.
//
// The milter records a row for every message it verified; that must never cost the message
// anything. `record()` therefore only normalises and queues (no I/O), and batches are written
// later, from a timer or once enough rows are waiting, in one transaction each. A store that
// cannot write (disk full, file gone, database locked for too long) loses rows, never mail:
// they are dropped, counted and logged.

import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import type { Logger } from "pino";
import type { Disposition, DkimFinding, DkimResult, DmarcResult, SpfFinding, SpfResult } from "../auth/results.ts";
import { fromRow, toRow } from "./history-rows.ts";
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

// ---------------------------------------------------------------------------------------------
// Schema. user_version says which of MIGRATIONS have been applied; each runs in its own
// transaction, so a crash leaves the file at a version that exists.

export const SCHEMA_VERSION = 1;

const MIGRATIONS: readonly string[] = [
  // 0 -> 1
  `CREATE TABLE messages (
     id            INTEGER PRIMARY KEY,
     time_ms       INTEGER NOT NULL,
     queue_id      TEXT,
     source_ip     TEXT NOT NULL,
     header_from   TEXT NOT NULL,
     envelope_from TEXT NOT NULL,
     dmarc_result  TEXT NOT NULL,
     dkim_aligned  TEXT NOT NULL,
     spf_aligned   TEXT NOT NULL,
     disposition   TEXT NOT NULL,
     overrides     TEXT NOT NULL,
     policy_domain TEXT,
     policy_p      TEXT,
     policy_sp     TEXT,
     policy_pct    INTEGER,
     policy_t      INTEGER,
     policy_adkim  TEXT,
     policy_aspf   TEXT,
     policy_fo     TEXT,
     policy_rua    TEXT,
     policy_ruf    TEXT
   ) STRICT;
   CREATE INDEX messages_time ON messages (time_ms);
   CREATE INDEX messages_policy_time ON messages (policy_domain, time_ms);
   CREATE TABLE dkim_results (
     message_id    INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
     ord           INTEGER NOT NULL,
     domain        TEXT NOT NULL,
     selector      TEXT,
     result        TEXT NOT NULL,
     human_result  TEXT,
     PRIMARY KEY (message_id, ord)
   ) STRICT, WITHOUT ROWID;
   CREATE TABLE spf_results (
     message_id    INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
     ord           INTEGER NOT NULL,
     domain        TEXT NOT NULL,
     scope         TEXT NOT NULL,
     result        TEXT NOT NULL,
     PRIMARY KEY (message_id, ord)
   ) STRICT, WITHOUT ROWID;`,
];

export class HistorySchemaError extends Error {
  override readonly name = "HistorySchemaError";
}

function userVersion(db: DatabaseSync): number {
  const row = db.prepare("PRAGMA user_version").get();
  return Number(row?.["user_version"] ?? 0);
}

function checkKnownVersion(db: DatabaseSync, path: string, version: number): void {
  if (version > SCHEMA_VERSION) {
    throw new HistorySchemaError(
      `${path}: history schema version ${version} was written by a newer authmilter (this one knows up to ${SCHEMA_VERSION})`,
    );
  }
  if (version === 0) {
    const objects = db.prepare("SELECT count(*) AS n FROM sqlite_master").get();
    if (Number(objects?.["n"] ?? 0) > 0) {
      throw new HistorySchemaError(`${path}: not an authmilter history database (it has tables but no schema version)`);
    }
  }
}

function migrate(db: DatabaseSync, path: string): void {
  // Another process may be migrating the same file: wait for its lock rather than fail start-up.
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec("BEGIN IMMEDIATE");
  try {
    const version = userVersion(db);
    checkKnownVersion(db, path, version);
    for (let v = version; v < SCHEMA_VERSION; v++) {
      db.exec(MIGRATIONS[v] ?? "");
    }
    // PRAGMA takes no parameters; the value is our own integer constant.
    if (version < SCHEMA_VERSION) db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    db.exec("COMMIT");
  } catch (err) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw err;
  }
  // From here on a locked database must not stall the event loop (every call is synchronous):
  // it answers "busy" at once, and the batch waits for the next timer.
  db.exec("PRAGMA busy_timeout = 0");
}

/**
 * Opens (creating it and its schema if needed) the history database for writing. Throws when
 * the file cannot be opened or has a schema this version does not know: that is a start-up
 * problem for the operator, unlike later write failures, which only cost history rows.
 */
export function openHistoryStore(path: string, options: HistoryStoreOptions): SqliteHistoryStore {
  const db = new DatabaseSync(path, { enableForeignKeyConstraints: true });
  try {
    // Cluster workers open the file at the same moment: the first one's journal switch and
    // migration hold a lock the others wait for (writes later use no timeout, see migrate).
    db.exec("PRAGMA busy_timeout = 5000");
    // WAL: the report command reads while the daemon writes, neither waiting for the other.
    db.exec("PRAGMA journal_mode = WAL");
    // NORMAL in WAL mode is durable except for the last transactions before a power cut; for
    // statistics that is the right trade against an fsync per batch.
    db.exec("PRAGMA synchronous = NORMAL");
    migrate(db, path);
  } catch (err) {
    db.close();
    throw err;
  }
  return new SqliteHistoryStore(db, options);
}

/** Opens an existing history database read-only, for reports. */
export function openHistoryReader(path: string): HistoryReader {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const version = userVersion(db);
    checkKnownVersion(db, path, version);
    if (version === 0) throw new HistorySchemaError(`${path}: empty database, no history recorded yet`);
  } catch (err) {
    db.close();
    throw err;
  }
  return new SqliteHistoryReader(db);
}

// ---------------------------------------------------------------------------------------------

/** A HistoryRow as the insert statements take it. */
interface QueuedRow {
  readonly message: Record<string, SQLInputValue>;
  readonly dkim: readonly HistoryDkim[];
  readonly spf: readonly HistorySpf[];
}

function toQueuedRow(r: HistoryRecord, now: Date): QueuedRow {
  const { message, dkim, spf } = toRow(r, now);
  const t = message.policy_t;
  // STRICT tables have no boolean: t= is 1 or 0.
  return { message: { ...message, policy_t: t === null ? null : t ? 1 : 0 }, dkim, spf };
}

const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

/** Busy and locked are another connection's transaction: transient, worth a retry. */
function isBusy(err: unknown): boolean {
  const code = (err as { errcode?: unknown }).errcode;
  return typeof code === "number" && ((code & 0xff) === SQLITE_BUSY || (code & 0xff) === SQLITE_LOCKED);
}

const SELECT_MESSAGES = `
  SELECT m.*,
    (SELECT json_group_array(json_array(d.ord, d.domain, d.selector, d.result, d.human_result))
       FROM dkim_results d WHERE d.message_id = m.id) AS dkim_json,
    (SELECT json_group_array(json_array(s.ord, s.domain, s.scope, s.result))
       FROM spf_results s WHERE s.message_id = m.id) AS spf_json
  FROM messages m`;

class SqliteHistoryReader implements HistoryReader {
  protected readonly db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.db = db;
  }

  policyDomains(since: Date, until: Date): string[] {
    return this.db
      .prepare(
        `SELECT DISTINCT policy_domain AS d FROM messages
          WHERE time_ms >= ? AND time_ms < ? AND policy_domain IS NOT NULL ORDER BY policy_domain`,
      )
      .all(since.getTime(), until.getTime())
      .map((r) => String(r["d"]));
  }

  *query(q: HistoryQuery): IterableIterator<StoredHistoryRecord> {
    const rows =
      q.policyDomain === undefined
        ? this.db
            .prepare(`${SELECT_MESSAGES} WHERE m.time_ms >= ? AND m.time_ms < ? ORDER BY m.time_ms, m.id`)
            .iterate(q.since.getTime(), q.until.getTime())
        : this.db
            .prepare(`${SELECT_MESSAGES} WHERE m.policy_domain = ? AND m.time_ms >= ? AND m.time_ms < ? ORDER BY m.time_ms, m.id`)
            .iterate(q.policyDomain, q.since.getTime(), q.until.getTime());
    for (const row of rows) yield fromRow(row);
  }

  close(): Promise<void> {
    if (this.db.isOpen) this.db.close();
    return Promise.resolve();
  }
}

export class SqliteHistoryStore extends SqliteHistoryReader implements HistoryStore {
  private readonly logger: Logger;
  private readonly batchSize: number;
  private readonly flushIntervalMs: number;
  private readonly maxQueue: number;
  private readonly queue: QueuedRow[] = [];
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private closed = false;
  /** Rows lost since the last successful write: logged once when it starts and once when it ends. */
  private failingSince: number | undefined;
  private queueFullSince: number | undefined;
  private readonly count = {
    recorded: 0,
    written: 0,
    droppedStoreError: 0,
    droppedQueueFull: 0,
    droppedClosed: 0,
    droppedInvalid: 0,
    storeErrors: 0,
    busyRetries: 0,
  };

  /** Takes over an open database with the current schema (see openHistoryStore). */
  constructor(db: DatabaseSync, options: HistoryStoreOptions) {
    super(db);
    this.logger = options.logger;
    this.batchSize = Math.max(1, options.batchSize ?? HISTORY_DEFAULTS.batchSize);
    this.flushIntervalMs = Math.max(1, options.flushIntervalMs ?? HISTORY_DEFAULTS.flushIntervalMs);
    this.maxQueue = Math.max(this.batchSize, options.maxQueue ?? HISTORY_DEFAULTS.maxQueue);
  }

  get counters(): HistoryCounters {
    const c = this.count;
    return {
      ...c,
      pending: this.queue.length,
      dropped: c.droppedStoreError + c.droppedQueueFull + c.droppedClosed + c.droppedInvalid,
    };
  }

  record(r: HistoryRecord): void {
    try {
      if (this.closed) {
        this.count.droppedClosed++;
        return;
      }
      let row: QueuedRow;
      try {
        row = toQueuedRow(r, new Date());
      } catch (err) {
        this.count.droppedInvalid++;
        this.logger.error({ err }, "history: record() got a row it cannot store; dropped");
        return;
      }
      if (this.queue.length >= this.maxQueue) {
        this.count.droppedQueueFull++;
        if (this.queueFullSince === undefined) {
          this.queueFullSince = this.count.droppedQueueFull - 1;
          this.logger.warn({ maxQueue: this.maxQueue }, "history: queue full (database busy or failing); dropping new rows");
        }
        return;
      }
      this.queue.push(row);
      this.count.recorded++;
      this.schedule();
    } catch {
      // Not even logging may fail a message. Unreachable unless the logger itself throws.
    }
  }

  flush(): Promise<void> {
    this.writeQueued();
    return Promise.resolve();
  }

  /** SQLite deletes locally and quickly: the synchronous prune is the asynchronous one. */
  async pruneAsync(olderThan: Date): Promise<number> {
    return this.prune(olderThan);
  }

  prune(olderThan: Date): number {
    const result = this.db.prepare("DELETE FROM messages WHERE time_ms < ?").run(olderThan.getTime());
    return Number(result.changes);
  }

  override close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.writeQueued();
    this.closed = true;
    this.clearTimers();
    if (this.queue.length > 0) {
      const n = this.queue.length;
      this.queue.length = 0;
      this.count.droppedClosed += n;
      this.logger.error({ dropped: n }, "history: database still busy at close; queued rows dropped");
    }
    try {
      if (this.db.isOpen) this.db.close();
    } catch (err) {
      this.logger.error({ err }, "history: closing the database failed");
    }
    return Promise.resolve();
  }

  private schedule(): void {
    if (this.queue.length >= this.batchSize) {
      // Not now: the caller is handling a message. Right after it, on this turn's tail.
      this.immediate ??= setImmediate(() => {
        this.immediate = undefined;
        this.writeQueued();
      }).unref();
    } else {
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.writeQueued();
      }, this.flushIntervalMs).unref();
    }
  }

  private clearTimers(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }

  private writeQueued(): void {
    if (this.closed) return;
    while (this.queue.length > 0) {
      const batch = this.queue.slice(0, this.batchSize);
      const outcome = this.writeBatch(batch);
      if (outcome === "busy") {
        this.count.busyRetries++;
        this.logger.debug({ pending: this.queue.length }, "history: database busy; will retry");
        break;
      }
      this.queue.splice(0, batch.length);
    }
    if (this.queue.length < this.maxQueue && this.queueFullSince !== undefined) {
      const lost = this.count.droppedQueueFull - this.queueFullSince;
      this.queueFullSince = undefined;
      this.logger.warn({ dropped: lost }, `history: queue has room again after dropping ${lost} rows`);
    }
    this.clearTimers();
    // What a busy database left behind goes again with the next timer.
    if (this.queue.length > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.writeQueued();
      }, this.flushIntervalMs).unref();
    }
  }

  private writeBatch(batch: readonly QueuedRow[]): "ok" | "busy" | "failed" {
    const db = this.db;
    try {
      db.exec("BEGIN IMMEDIATE");
      const insertMessage = db.prepare(
        `INSERT INTO messages (time_ms, queue_id, source_ip, header_from, envelope_from, dmarc_result,
           dkim_aligned, spf_aligned, disposition, overrides, policy_domain, policy_p, policy_sp, policy_pct,
           policy_t, policy_adkim, policy_aspf, policy_fo, policy_rua, policy_ruf)
         VALUES (:time_ms, :queue_id, :source_ip, :header_from, :envelope_from, :dmarc_result,
           :dkim_aligned, :spf_aligned, :disposition, :overrides, :policy_domain, :policy_p, :policy_sp, :policy_pct,
           :policy_t, :policy_adkim, :policy_aspf, :policy_fo, :policy_rua, :policy_ruf)`,
      );
      const insertDkim = db.prepare(
        "INSERT INTO dkim_results (message_id, ord, domain, selector, result, human_result) VALUES (?, ?, ?, ?, ?, ?)",
      );
      const insertSpf = db.prepare("INSERT INTO spf_results (message_id, ord, domain, scope, result) VALUES (?, ?, ?, ?, ?)");
      for (const row of batch) {
        const id = insertMessage.run(row.message).lastInsertRowid;
        row.dkim.forEach((d, i) => insertDkim.run(id, i, d.domain, d.selector ?? null, d.result, d.humanResult ?? null));
        row.spf.forEach((s, i) => insertSpf.run(id, i, s.domain, s.scope, s.result));
      }
      db.exec("COMMIT");
    } catch (err) {
      try {
        if (db.isOpen && db.isTransaction) db.exec("ROLLBACK");
      } catch {
        // The database is gone; there is nothing to roll back.
      }
      if (isBusy(err)) return "busy";
      this.count.storeErrors++;
      this.count.droppedStoreError += batch.length;
      if (this.failingSince === undefined) {
        this.failingSince = this.count.droppedStoreError - batch.length;
        this.logger.error({ err, dropped: batch.length }, "history: writing to the database failed; dropping rows until it works again");
      } else {
        this.logger.debug({ err, dropped: batch.length }, "history: write failed again");
      }
      return "failed";
    }
    this.count.written += batch.length;
    if (this.failingSince !== undefined) {
      const lost = this.count.droppedStoreError - this.failingSince;
      this.failingSince = undefined;
      this.logger.warn({ dropped: lost }, `history: writing again after dropping ${lost} rows`);
    }
    return "ok";
  }
}
