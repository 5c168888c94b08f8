// The DMARC history in one SQLite file next to the daemon: the default store. What it holds and
// promises is in history.ts; record() and batching are history-queue.ts, over the synchronous
// writes of node:sqlite, one transaction per batch.

import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import {
  HistorySchemaError,
  type HistoryCounters,
  type HistoryDkim,
  type HistoryQuery,
  type HistoryReader,
  type HistoryRecord,
  type HistorySpf,
  type HistoryStore,
  type HistoryStoreOptions,
  type StoredHistoryRecord,
} from "./history.ts";
import { HistoryWriteQueue } from "./history-queue.ts";
import { fromRow, toRow } from "./history-rows.ts";

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


/** One transaction; a failed one is rolled back before its error goes on to the queue. */
function insertBatch(db: DatabaseSync, batch: readonly QueuedRow[]): void {
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
    throw err;
  }
}

export class SqliteHistoryStore extends SqliteHistoryReader implements HistoryStore {
  private readonly writes: HistoryWriteQueue<QueuedRow>;

  /** Takes over an open database with the current schema (see openHistoryStore). */
  constructor(db: DatabaseSync, options: HistoryStoreOptions) {
    super(db);
    const { logger } = options;
    this.writes = new HistoryWriteQueue<QueuedRow>(
      {
        toRow: toQueuedRow,
        write: (batch) => insertBatch(db, batch),
        isBusy,
        failedWritesAreSlow: false,
        close: () => {
          try {
            if (db.isOpen) db.close();
          } catch (err) {
            logger.error({ err }, "history: closing the database failed");
          }
        },
      },
      options,
    );
  }

  get counters(): HistoryCounters {
    return this.writes.counters;
  }

  record(r: HistoryRecord): void {
    this.writes.record(r);
  }

  flush(): Promise<void> {
    return this.writes.flush();
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
    return this.writes.close();
  }
}
