import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { DkimFinding, SpfFinding } from "../../src/auth/results.ts";
import { authResultsFromFindings, HistorySchemaError, type HistoryRecord, type HistoryStore } from "../../src/reports/history.ts";
import { openHistoryReader, openHistoryStore, SCHEMA_VERSION, SqliteHistoryStore } from "../../src/reports/history-sqlite.ts";
import { at, captureLogger, FULL, LEVEL, message, T0, T1, tempDir } from "./helpers.ts";

let dir: string;
let cleanup: () => Promise<void>;
let path: string;
const open: HistoryStore[] = [];
const raw: DatabaseSync[] = [];

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  path = join(dir, "history.sqlite");
});
afterEach(async () => {
  vi.useRealTimers();
  for (const s of open.splice(0)) await s.close();
  for (const db of raw.splice(0)) if (db.isOpen) db.close();
  await cleanup();
});

function store(options: Partial<Parameters<typeof openHistoryStore>[1]> = {}) {
  const log = captureLogger();
  const s = openHistoryStore(path, { logger: log.logger, flushIntervalMs: 60_000, ...options });
  open.push(s);
  return { store: s, lines: log.lines };
}

/** A second connection, as sqlite3(1) or the report command would have: what is really on disk. */
function peek(): DatabaseSync {
  const db = new DatabaseSync(path);
  raw.push(db);
  return db;
}

function count(db: DatabaseSync, table: string): number {
  return Number(db.prepare(`SELECT count(*) AS n FROM ${table}`).get()?.["n"]);
}

const ALL_DAY = { since: T0, until: T1 };

describe("schema", () => {
  it("creates the schema with user_version and WAL on first open, and reopens without losing rows", async () => {
    const { store: s } = store();
    s.record(message());
    await s.close();
    const db = peek();
    expect(db.prepare("PRAGMA user_version").get()?.["user_version"]).toBe(SCHEMA_VERSION);
    expect(db.prepare("PRAGMA journal_mode").get()?.["journal_mode"]).toBe("wal");
    db.close();

    const { store: again } = store();
    expect([...again.query(ALL_DAY)]).toHaveLength(1);
  });

  it("refuses a database written by a newer schema, a foreign SQLite file and a non-database", async () => {
    const db = new DatabaseSync(path);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => store()).toThrow(HistorySchemaError);
    expect(() => store()).toThrow(/newer authmilter/);

    const foreign = join(dir, "foreign.sqlite");
    const f = new DatabaseSync(foreign);
    f.exec("CREATE TABLE notes (x TEXT)");
    f.close();
    const log = captureLogger();
    expect(() => openHistoryStore(foreign, { logger: log.logger })).toThrow(/not an authmilter history database/);

    const junk = join(dir, "junk.sqlite");
    await writeFile(junk, "this is not SQLite at all, just a text file that is long enough...".repeat(10));
    expect(() => openHistoryStore(junk, { logger: log.logger })).toThrow(/not a database/);
  });

  it("the reader opens read-only and refuses a missing or never-written database", async () => {
    expect(() => openHistoryReader(join(dir, "missing.sqlite"))).toThrow(/unable to open/);
    new DatabaseSync(join(dir, "empty.sqlite")).close();
    expect(() => openHistoryReader(join(dir, "empty.sqlite"))).toThrow(/no history recorded yet/);

    const { store: s } = store();
    s.record(message());
    await s.flush();
    const reader = openHistoryReader(path);
    expect([...reader.query(ALL_DAY)]).toHaveLength(1);
    await reader.close();
  });
});

// Queries over intervals, policy domains, ordering and normalisation are also in
// history-conformance.test.ts, which runs them against this store and the PostgreSQL one.
describe("record and query", () => {
  it("stores every field and reads the same record back", async () => {
    const { store: s } = store();
    s.record(FULL);
    await s.flush();
    const [got, ...rest] = [...s.query(ALL_DAY)];
    expect(rest).toEqual([]);
    expect(got).toEqual({ ...FULL, id: expect.any(Number) });

    const db = peek();
    expect(count(db, "dkim_results")).toBe(2);
    expect(count(db, "spf_results")).toBe(2);
  });

  it("normalises on the way in: domain case and root dot, address spellings, result spellings", async () => {
    const { store: s } = store();
    s.record(
      message({
        sourceIp: "::ffff:192.0.2.7",
        headerFrom: "Example.COM.",
        envelopeFrom: "",
        dkim: [{ domain: "EXAMPLE.com", selector: "S1", result: "TEMPFAIL" as never }],
        spf: [{ domain: "example.com", scope: "mfrom", result: "hardfail" as never }],
        overrides: [{ type: "whitelisted" as never }],
      }),
    );
    s.record(message({ sourceIp: "2001:DB8:0:0:0:0:0:1", dkim: [{ domain: "x.example", result: "bogus" as never }] }));
    await s.flush();
    const [a, b] = [...s.query(ALL_DAY)];
    expect(a).toMatchObject({
      sourceIp: "192.0.2.7",
      headerFrom: "example.com",
      envelopeFrom: "",
      // The selector keeps its case: it names a DNS record the domain owner wrote.
      dkim: [{ domain: "example.com", selector: "S1", result: "temperror" }],
      spf: [{ result: "fail" }],
      overrides: [{ type: "other", comment: "whitelisted" }],
    });
    expect(b).toMatchObject({ sourceIp: "2001:db8::1", dkim: [{ result: "permerror" }] });
  });

  it("treats hostile text as data: parameters, not SQL", async () => {
    const { store: s } = store();
    const evil = "x'); drop table messages; --"; // lower case: domains are stored lower-cased
    s.record(message({ headerFrom: evil, dkim: [{ domain: evil, selector: "'", result: "pass" }] }));
    await s.flush();
    const [got] = [...s.query(ALL_DAY)];
    expect(got?.headerFrom).toBe(evil);
    expect(got?.dkim[0]).toEqual({ domain: evil, selector: "'", result: "pass" });
    expect(count(peek(), "messages")).toBe(1);
  });

  it("maps the verifier's findings: dkim=none without a domain is no signature; identity becomes scope", () => {
    const dkim: DkimFinding[] = [
      { result: "none" },
      { result: "pass", domain: "example.com", selector: "s1", reason: "ignored on pass" },
      { result: "permerror", domain: "bad.example", reason: "key syntax error" },
    ];
    const spf: SpfFinding[] = [
      { result: "softfail", identity: "mailfrom", domain: "example.com" },
      { result: "pass", identity: "helo", domain: "mx.example.com" },
    ];
    expect(authResultsFromFindings(dkim, spf)).toEqual({
      dkim: [
        { domain: "example.com", selector: "s1", result: "pass" },
        { domain: "bad.example", result: "permerror", humanResult: "key syntax error" },
      ],
      spf: [
        { domain: "example.com", scope: "mfrom", result: "softfail" },
        { domain: "mx.example.com", scope: "helo", result: "pass" },
      ],
    });
  });
});

describe("queueing and batches", () => {
  it("record() only queues: nothing is on disk until a flush", async () => {
    const { store: s } = store();
    s.record(message());
    const db = peek();
    expect(count(db, "messages")).toBe(0);
    expect(s.counters).toMatchObject({ recorded: 1, pending: 1, written: 0 });
    await s.flush();
    expect(count(db, "messages")).toBe(1);
    expect(s.counters).toMatchObject({ recorded: 1, pending: 0, written: 1, dropped: 0 });
  });

  it("writes a full batch right after the caller's turn, and a partial one when the timer fires", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "clearImmediate"] });
    const { store: s } = store({ batchSize: 3, flushIntervalMs: 5000 });
    const db = peek();
    s.record(message());
    s.record(message());
    vi.advanceTimersByTime(0);
    expect(count(db, "messages")).toBe(0);
    s.record(message());
    // Still nothing inside the call that filled the batch: the message being handled comes first.
    expect(count(db, "messages")).toBe(0);
    vi.advanceTimersByTime(0);
    expect(count(db, "messages")).toBe(3);

    s.record(message());
    vi.advanceTimersByTime(4999);
    expect(count(db, "messages")).toBe(3);
    vi.advanceTimersByTime(1);
    expect(count(db, "messages")).toBe(4);
    expect(s.counters).toMatchObject({ written: 4, pending: 0 });
  });

  it("writes a batch in one transaction: a row the database rejects loses its whole batch, logged and counted", async () => {
    const { store: s, lines } = store({ batchSize: 3 });
    const db = peek();
    db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.header_from = 'boom.example'
             BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END`);
    s.record(message({ queueId: "a" }));
    s.record(message({ queueId: "b", headerFrom: "boom.example" }));
    s.record(message({ queueId: "c" }));
    s.record(message({ queueId: "d" }));
    await s.flush();
    // a, b, c shared a transaction; d was the next batch and got through.
    expect([...s.query(ALL_DAY)].map((r) => r.queueId)).toEqual(["d"]);
    expect(count(db, "dkim_results")).toBe(1);
    expect(s.counters).toMatchObject({ written: 1, droppedStoreError: 3, dropped: 3, storeErrors: 1, pending: 0 });
    const error = lines.find((l) => l.level === LEVEL.error);
    expect(error).toMatchObject({ dropped: 3, err: { message: expect.stringMatching(/refused by test trigger/) } });
  });

  it("logs the start of an outage once and its end with the number of rows lost", async () => {
    const { store: s, lines } = store({ batchSize: 1 });
    const db = peek();
    db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'disk on fire'); END`);
    for (let i = 0; i < 5; i++) s.record(message());
    await s.flush();
    expect(s.counters).toMatchObject({ storeErrors: 5, droppedStoreError: 5 });
    expect(lines.filter((l) => l.level >= LEVEL.warn)).toHaveLength(1);
    db.exec("DROP TRIGGER refuse");
    s.record(message());
    await s.flush();
    expect(s.counters).toMatchObject({ written: 1, dropped: 5 });
    expect(lines.filter((l) => l.level >= LEVEL.warn).at(-1)).toMatchObject({ level: LEVEL.warn, dropped: 5 });
  });

  it("keeps rows queued while another connection holds the write lock, and writes them after", async () => {
    const { store: s } = store();
    const other = peek();
    other.exec("BEGIN IMMEDIATE");
    s.record(message());
    s.record(message());
    await s.flush();
    expect(s.counters).toMatchObject({ written: 0, pending: 2, dropped: 0 });
    expect(s.counters.busyRetries).toBeGreaterThanOrEqual(1);
    other.exec("COMMIT");
    await s.flush();
    expect(s.counters).toMatchObject({ written: 2, pending: 0, dropped: 0 });
    expect(count(other, "messages")).toBe(2);
  });

  it("drops (never blocks, never throws) when the queue is full, and says so once", async () => {
    const { store: s, lines } = store({ batchSize: 2, maxQueue: 3 });
    const other = peek();
    other.exec("BEGIN IMMEDIATE");
    for (let i = 0; i < 6; i++) expect(() => s.record(message())).not.toThrow();
    expect(s.counters).toMatchObject({ recorded: 3, pending: 3, droppedQueueFull: 3, dropped: 3 });
    expect(lines.filter((l) => l.level === LEVEL.warn && /queue full/.test(l.msg))).toHaveLength(1);
    other.exec("COMMIT");
    await s.flush();
    expect(s.counters).toMatchObject({ written: 3, pending: 0 });
    expect(lines.find((l) => /room again/.test(l.msg))).toMatchObject({ dropped: 3 });
  });

  it("survives the database being closed underneath it: record() does not throw, flush() resolves, rows are counted and logged", async () => {
    await store().store.close(); // creates the schema
    const db = new DatabaseSync(path);
    const log = captureLogger();
    const s = new SqliteHistoryStore(db, { logger: log.logger, flushIntervalMs: 60_000 });
    open.push(s);
    s.record(message());
    db.close();
    expect(() => s.record(message())).not.toThrow();
    await expect(s.flush()).resolves.toBeUndefined();
    expect(s.counters).toMatchObject({ recorded: 2, written: 0, droppedStoreError: 2, dropped: 2, storeErrors: 1 });
    expect(log.lines.find((l) => l.level === LEVEL.error)).toMatchObject({ err: { message: expect.stringMatching(/not open/) } });
    await expect(s.close()).resolves.toBeUndefined();
  });

  it("drops and counts a record it cannot store, without throwing", async () => {
    const { store: s, lines } = store();
    expect(() => s.record(message({ time: new Date(Number.NaN) }))).not.toThrow();
    expect(() => s.record({ ...message(), dkim: undefined } as unknown as HistoryRecord)).not.toThrow();
    expect(s.counters).toMatchObject({ droppedInvalid: 2, recorded: 0, pending: 0 });
    expect(lines.filter((l) => l.level === LEVEL.error)).toHaveLength(2);
  });

  it("close() writes what is queued; later records are dropped as closed", async () => {
    const { store: s } = store();
    s.record(message());
    await s.close();
    s.record(message());
    expect(s.counters).toMatchObject({ written: 1, droppedClosed: 1 });
    const reader = openHistoryReader(path);
    expect([...reader.query(ALL_DAY)]).toHaveLength(1);
    await reader.close();
  });
});

describe("prune", () => {
  it("deletes messages older than the date with their DKIM and SPF rows, and returns how many", async () => {
    const { store: s } = store();
    s.record(message({ time: at("2024-03-01T00:00:00Z"), queueId: "old" }));
    s.record(message({ time: at("2024-04-30T23:59:59Z"), queueId: "older" }));
    s.record(message({ time: T0, queueId: "kept" }));
    await s.flush();
    expect(s.prune(T0)).toBe(2);
    expect(s.prune(T0)).toBe(0);
    expect([...s.query({ since: new Date(0), until: T1 })].map((r) => r.queueId)).toEqual(["kept"]);
    const db = peek();
    expect(count(db, "dkim_results")).toBe(1);
    expect(count(db, "spf_results")).toBe(1);
  });
});
