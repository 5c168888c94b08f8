// The PostgreSQL history store against a real server: a private cluster in a temp dir, on
// loopback, started and stopped by the test (the outage is a real server going away). What the
// SQLite store and this one must answer alike is in history-conformance.test.ts; here is what
// only a server has: the schema on a shared database, several writers, locks, timeouts, outages.
//
// Needs Debian's postgresql package. Without it this file skips; under CI=true it fails.

import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { HistorySchemaError, type HistoryStore } from "../../src/reports/history.ts";
import {
  isPostgresUrl,
  openPgHistoryReader,
  openPgHistoryStore,
  PG_SCHEMA_VERSION,
  PgHistoryStore,
  redactUrl,
  type PgHistoryStoreOptions,
} from "../../src/reports/history-pg.ts";
import { SqliteHistoryStore } from "../../src/reports/history-sqlite.ts";
import { openHistory, openHistoryForReading } from "../../src/reports/open-history.ts";
import { captureLogger, LEVEL, message, REPO, T0, T1 } from "./helpers.ts";
import { PG_LABEL, PG_SKIP, startCluster, type Cluster } from "./pg-cluster.ts";

// ---------------------------------------------------------------------------------------------

describe("URLs and the factory's choice (no server needed)", () => {
  it("knows both URL spellings and redacts passwords", () => {
    expect(isPostgresUrl("postgres://h/db")).toBe(true);
    expect(isPostgresUrl("PostgreSQL://h/db")).toBe(true);
    expect(isPostgresUrl("/var/lib/authmilter/history.sqlite")).toBe(false);
    expect(isPostgresUrl("postgres.sqlite")).toBe(false);
    expect(redactUrl("postgres://mta:s3cret@db.example:5432/history?sslmode=require")).toBe(
      "postgres://mta:***@db.example:5432/history?sslmode=require",
    );
    expect(redactUrl("postgres://db.example/history?password=s3cret")).not.toContain("s3cret");
  });

  it("refuses other URL schemes instead of creating a file named like one", async () => {
    const log = captureLogger();
    await expect(openHistory("mysql://root:pw@db/history", { logger: log.logger })).rejects.toThrow(/unsupported history store/);
    await expect(openHistory("mysql://root:pw@db/history", { logger: log.logger })).rejects.not.toThrow(/pw/);
    await expect(openHistoryForReading("sqlite:///tmp/x")).rejects.toThrow(/unsupported history store/);
  });
});

describe.skipIf(PG_SKIP)(`PostgreSQL history store${PG_LABEL}`, () => {
  let cluster: Cluster;
  const open: HistoryStore[] = [];

  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  async function store(url: string, options: Partial<PgHistoryStoreOptions> = {}) {
    const log = captureLogger();
    const s = await openPgHistoryStore(url, { logger: log.logger, flushIntervalMs: 60_000, ...options });
    open.push(s);
    return { store: s, lines: log.lines };
  }

  async function count(url: string, table: string): Promise<number> {
    const [row] = await cluster.sql(url, `SELECT count(*)::int AS n FROM ${table}`);
    return Number(row?.["n"]);
  }

  const ALL_DAY = { since: T0, until: T1 };

  describe("schema", () => {
    it("creates the tables and the version on first connect, and reconnects without losing rows", async () => {
      const url = await cluster.createDatabase();
      const { store: s } = await store(url);
      s.record(message());
      await s.close();
      expect(await cluster.sql(url, "SELECT version FROM authmilter_history_schema")).toEqual([{ version: PG_SCHEMA_VERSION }]);
      expect(await count(url, "messages")).toBe(1);

      const { store: again } = await store(url);
      expect([...again.query(ALL_DAY)]).toHaveLength(1);
      expect(await cluster.sql(url, "SELECT version FROM authmilter_history_schema")).toHaveLength(1);
    });

    it("migrates once when several MTAs connect to a new database at the same moment", async () => {
      const url = await cluster.createDatabase();
      const stores = await Promise.all([store(url), store(url), store(url)]);
      stores.forEach(({ store: s }, i) => s.record(message({ queueId: `mta${i}` })));
      await Promise.all(stores.map(({ store: s }) => s.flush()));
      expect(await cluster.sql(url, "SELECT version FROM authmilter_history_schema")).toEqual([{ version: PG_SCHEMA_VERSION }]);
      expect(await count(url, "messages")).toBe(3);
    });

    it("refuses a newer schema, tables of someone else, and a database that is not UTF-8", async () => {
      const url = await cluster.createDatabase();
      await (await store(url)).store.close();
      await cluster.sql(url, "UPDATE authmilter_history_schema SET version = $1", [PG_SCHEMA_VERSION + 1]);
      await expect(store(url)).rejects.toThrow(HistorySchemaError);
      await expect(store(url)).rejects.toThrow(/newer authmilter/);

      const foreign = await cluster.createDatabase();
      await cluster.sql(foreign, "CREATE TABLE messages (x text)");
      await expect(store(foreign)).rejects.toThrow(/not an authmilter history database/);

      // A database shared with other applications is fine as long as nothing is named like ours.
      const shared = await cluster.createDatabase();
      await cluster.sql(shared, "CREATE TABLE notes (x text)");
      await expect(store(shared)).resolves.toMatchObject({ store: expect.any(PgHistoryStore) });

      const ascii = await cluster.createDatabase({ encoding: "SQL_ASCII" });
      await expect(store(ascii)).rejects.toThrow(/encoding is SQL_ASCII; the history needs UTF8/);
    });

    it("names the server without its password when it cannot connect", async () => {
      const url = cluster.url("no_such_database").replace("postgres@", "postgres:s3cret@");
      const err = await store(url).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/no_such_database.*does not exist/);
      expect((err as Error).message).toContain("postgres:***@");
      expect((err as Error).message).not.toContain("s3cret");
    });

    it("the reader refuses a database without history and reads one with it", async () => {
      const url = await cluster.createDatabase();
      await expect(openPgHistoryReader(url)).rejects.toThrow(/no history recorded yet/);
      const { store: s } = await store(url);
      s.record(message());
      await s.flush();
      const reader = await openPgHistoryReader(url);
      try {
        expect([...reader.query(ALL_DAY)]).toHaveLength(1);
        expect(reader.policyDomains(T0, T1)).toEqual(["example.com"]);
      } finally {
        await reader.close();
      }
    });
  });

  describe("the factory", () => {
    it("opens SQLite for a path and PostgreSQL for either URL spelling", async () => {
      const url = await cluster.createDatabase();
      const log = captureLogger();
      const dir = await mkdtemp(join(tmpdir(), "authmilter-open-"));
      try {
        const sqlite = await openHistory(join(dir, "history.sqlite"), { logger: log.logger });
        const pg = await openHistory(url, { logger: log.logger });
        const pg2 = await openHistory(url.replace(/^postgres:/, "postgresql:"), { logger: log.logger });
        open.push(sqlite, pg, pg2);
        expect(sqlite).toBeInstanceOf(SqliteHistoryStore);
        expect(pg).toBeInstanceOf(PgHistoryStore);
        expect(pg2).toBeInstanceOf(PgHistoryStore);
        for (const s of [sqlite, pg]) {
          s.record(message());
          await s.close();
        }
        for (const target of [join(dir, "history.sqlite"), url]) {
          const reader = await openHistoryForReading(target);
          expect([...reader.query(ALL_DAY)]).toHaveLength(1);
          await reader.close();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe("writing", () => {
    it("record() only queues; one statement per batch writes messages with their DKIM and SPF rows", async () => {
      const url = await cluster.createDatabase();
      const { store: s } = await store(url);
      s.record(message());
      expect(await count(url, "messages")).toBe(0);
      expect(s.counters).toMatchObject({ recorded: 1, pending: 1, written: 0 });
      await s.flush();
      expect(await count(url, "messages")).toBe(1);
      expect(await count(url, "dkim_results")).toBe(1);
      expect(await count(url, "spf_results")).toBe(1);
      expect(s.counters).toMatchObject({ recorded: 1, pending: 0, written: 1, dropped: 0 });
    });

    it("writes a full batch right after the caller's turn, and a partial one when the timer fires", async () => {
      const url = await cluster.createDatabase();
      const { store: s } = await store(url, { batchSize: 3, flushIntervalMs: 50 });
      for (let i = 0; i < 3; i++) s.record(message());
      expect(await pollCount(url, 3)).toBe(3);
      s.record(message());
      expect(await pollCount(url, 4)).toBe(4);
      expect(s.counters).toMatchObject({ written: 4, pending: 0 });
    });

    async function pollCount(url: string, want: number): Promise<number> {
      for (let i = 0; i < 200; i++) {
        const n = await count(url, "messages");
        if (n >= want) return n;
        await new Promise((r) => setTimeout(r, 25));
      }
      return count(url, "messages");
    }

    it("a row the database rejects loses its whole batch, logged and counted; the next batch gets through", async () => {
      const url = await cluster.createDatabase();
      const { store: s, lines } = await store(url, { batchSize: 3 });
      await cluster.sql(
        url,
        `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.header_from = 'boom.example' THEN RAISE EXCEPTION 'refused by test trigger'; END IF; RETURN NEW; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse();`,
      );
      s.record(message({ queueId: "a" }));
      s.record(message({ queueId: "b", headerFrom: "boom.example" }));
      s.record(message({ queueId: "c" }));
      s.record(message({ queueId: "d" }));
      await s.flush();
      expect([...s.query(ALL_DAY)].map((r) => r.queueId)).toEqual(["d"]);
      expect(await count(url, "dkim_results")).toBe(1);
      expect(s.counters).toMatchObject({ written: 1, droppedStoreError: 3, dropped: 3, storeErrors: 1, pending: 0 });
      expect(lines.find((l) => l.level === LEVEL.error)).toMatchObject({
        dropped: 3,
        err: { message: expect.stringMatching(/refused by test trigger/), code: "P0001" },
      });
    });

    it("several MTAs write to one database at once: every row arrives once, ids unique, read back in time order", async () => {
      const url = await cluster.createDatabase();
      const writers = await Promise.all([store(url, { batchSize: 7 }), store(url, { batchSize: 5 })]);
      for (let i = 0; i < 60; i++) {
        const { store: s } = writers[i % 2]!;
        s.record(message({ queueId: `m${i}`, time: new Date(T0.getTime() + (i % 13) * 1000) }));
      }
      await Promise.all(writers.map(({ store: s }) => s.flush()));
      const rows = [...writers[0]!.store.query(ALL_DAY)];
      expect(rows).toHaveLength(60);
      expect(new Set(rows.map((r) => r.id)).size).toBe(60);
      expect(new Set(rows.map((r) => r.queueId)).size).toBe(60);
      const times = rows.map((r) => r.time.getTime());
      expect(times).toEqual([...times].sort((a, b) => a - b));
      expect(writers.map(({ store: s }) => s.counters.written)).toEqual([30, 30]);
    });

    it("keeps rows queued while a table lock is held elsewhere, and writes them after", async () => {
      const url = await cluster.createDatabase();
      const { store: s } = await store(url, { lockTimeoutMs: 100 });
      const dba = await cluster.session(url);
      await dba.query("BEGIN");
      await dba.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
      s.record(message());
      s.record(message());
      await s.flush();
      expect(s.counters).toMatchObject({ written: 0, pending: 2, dropped: 0 });
      expect(s.counters.busyRetries).toBeGreaterThanOrEqual(1);
      await dba.query("COMMIT");
      await s.flush();
      expect(s.counters).toMatchObject({ written: 2, pending: 0, dropped: 0 });
      expect(await count(url, "messages")).toBe(2);
    });

    it("drops (never blocks, never throws) when the queue is full, and says so once", async () => {
      const url = await cluster.createDatabase();
      const { store: s, lines } = await store(url, { batchSize: 2, maxQueue: 3, lockTimeoutMs: 100 });
      const dba = await cluster.session(url);
      await dba.query("BEGIN");
      await dba.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
      for (let i = 0; i < 6; i++) expect(() => s.record(message())).not.toThrow();
      expect(s.counters).toMatchObject({ recorded: 3, pending: 3, droppedQueueFull: 3, dropped: 3 });
      expect(lines.filter((l) => l.level === LEVEL.warn && /queue full/.test(l.msg))).toHaveLength(1);
      await s.flush();
      expect(s.counters).toMatchObject({ written: 0, pending: 3 });
      await dba.query("COMMIT");
      await s.flush();
      expect(s.counters).toMatchObject({ written: 3, pending: 0 });
      expect(lines.find((l) => /room again/.test(l.msg))).toMatchObject({ dropped: 3 });
    });

    it("drops and counts a record it cannot store, without throwing", async () => {
      const url = await cluster.createDatabase();
      const { store: s, lines } = await store(url);
      expect(() => s.record(message({ time: new Date(Number.NaN) }))).not.toThrow();
      expect(() => s.record({ ...message(), dkim: undefined } as never)).not.toThrow();
      expect(s.counters).toMatchObject({ droppedInvalid: 2, recorded: 0, pending: 0 });
      expect(lines.filter((l) => l.level === LEVEL.error)).toHaveLength(2);
    });

    it("close() writes what is queued; later records are dropped as closed", async () => {
      const url = await cluster.createDatabase();
      const { store: s } = await store(url);
      s.record(message());
      await s.close();
      s.record(message());
      expect(s.counters).toMatchObject({ written: 1, droppedClosed: 1 });
      expect(await count(url, "messages")).toBe(1);
      expect(() => s.policyDomains(T0, T1)).toThrow(/closed/);
    });
  });

  describe("reads, prune and the statement timeout", () => {
    it("prune deletes the messages' DKIM and SPF rows too; pruneAsync does the same without blocking", async () => {
      const url = await cluster.createDatabase();
      const { store: s } = await store(url);
      s.record(message({ time: new Date("2024-03-01T00:00:00Z") }));
      s.record(message({ time: new Date("2024-04-01T00:00:00Z") }));
      s.record(message({ time: T0 }));
      await s.flush();
      expect(s.prune(new Date("2024-03-15T00:00:00Z"))).toBe(1);
      expect(await (s as PgHistoryStore).pruneAsync(T0)).toBe(1);
      expect(await count(url, "messages")).toBe(1);
      expect(await count(url, "dkim_results")).toBe(1);
      expect(await count(url, "spf_results")).toBe(1);
    });

    it("a statement that waits too long is cancelled by the server: prune() throws instead of hanging", async () => {
      const url = await cluster.createDatabase();
      const { store: s } = await store(url, { statementTimeoutMs: 300, lockTimeoutMs: 0 });
      const dba = await cluster.session(url);
      await dba.query("BEGIN");
      await dba.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
      expect(() => s.prune(T0)).toThrow(/statement timeout/);
      await expect((s as PgHistoryStore).pruneAsync(T0)).rejects.toThrow(/statement timeout/);
      await dba.query("COMMIT");
      expect(s.prune(T0)).toBe(0);
    });

    it("query() reads page after page: many rows, with equal times, each once and in order", async () => {
      const url = await cluster.createDatabase();
      const { store: s } = await store(url, { batchSize: 400 });
      for (let i = 0; i < 1234; i++) s.record(message({ queueId: String(i), time: new Date(T0.getTime() + Math.floor(i / 300)) }));
      await s.flush();
      const ids = [...s.query(ALL_DAY)].map((r) => Number(r.queueId));
      expect(ids).toEqual(Array.from({ length: 1234 }, (_, i) => i));
      const partial: number[] = [];
      for (const r of s.query({ ...ALL_DAY, policyDomain: "example.com" })) {
        partial.push(Number(r.queueId));
        if (partial.length === 600) break; // leaving early holds nothing open
      }
      expect(partial).toEqual(Array.from({ length: 600 }, (_, i) => i));
      expect(s.policyDomains(T0, T1)).toEqual(["example.com"]);
    });
  });

  describe("outage", () => {
    it("server stopped mid-run: record() still returns at once, rows are dropped and counted, logged once; restarted: writes resume", async () => {
      const url = await cluster.createDatabase();
      const { store: s, lines } = await store(url, { batchSize: 2, connectTimeoutMs: 2_000 });
      s.record(message({ queueId: "before" }));
      await s.flush();
      expect(s.counters).toMatchObject({ written: 1, dropped: 0 });

      await cluster.stop();
      try {
        // The message path: record() is synchronous and does no I/O, so it cannot wait for the
        // dead server. What it queued is visible before anything was awaited.
        for (let i = 0; i < 5; i++) expect(s.record(message({ queueId: `lost${i}` }))).toBeUndefined();
        expect(s.counters).toMatchObject({ recorded: 6, pending: 5 });
        await s.flush();
        expect(s.counters).toMatchObject({ written: 1, pending: 0, droppedStoreError: 5, dropped: 5, storeErrors: 3 });
        // Still down, more mail: counted, not logged again.
        for (let i = 5; i < 8; i++) s.record(message({ queueId: `lost${i}` }));
        await s.flush();
        expect(s.counters).toMatchObject({ droppedStoreError: 8, storeErrors: 5 });
        const loud = lines.filter((l) => l.level >= LEVEL.warn);
        expect(loud).toHaveLength(1);
        expect(loud[0]).toMatchObject({ level: LEVEL.error, dropped: 2, err: { message: expect.any(String) } });
        expect(loud[0]?.msg).toMatch(/dropping rows until it works again/);
        // Reports cannot read a server that is down: they fail, they do not hang.
        expect(() => s.policyDomains(T0, T1)).toThrow();
      } finally {
        await cluster.start();
      }

      s.record(message({ queueId: "after" }));
      await s.flush();
      expect(s.counters).toMatchObject({ recorded: 10, written: 2, droppedStoreError: 8, pending: 0 });
      expect(lines.filter((l) => l.level >= LEVEL.warn).at(-1)).toMatchObject({ level: LEVEL.warn, dropped: 8 });
      expect([...s.query(ALL_DAY)].map((r) => r.queueId)).toEqual(["before", "after"]);
    });

    it("refuses to open while the server is down, naming it without the password", async () => {
      const url = await cluster.createDatabase();
      await cluster.stop();
      try {
        const withPassword = url.replace("postgres@", "postgres:s3cret@");
        const err = await store(withPassword).catch((e: unknown) => e as Error);
        expect(err).toBeInstanceOf(Error);
        expect((err as Error).message).toMatch(/ECONNREFUSED/);
        expect((err as Error).message).not.toContain("s3cret");
      } finally {
        await cluster.start();
      }
    });
  });

  describe("process lifetime", () => {
    it("a write on its way keeps the process alive; an idle open store does not", async () => {
      const url = await cluster.createDatabase();
      const dir = await mkdtemp(join(tmpdir(), "authmilter-pg-exit-"));
      try {
        const script = join(dir, "script.mjs");
        const module = join(REPO, "src/reports/history-pg.ts");
        await writeFile(
          script,
          `import { openPgHistoryStore } from ${JSON.stringify(module)};
           const quiet = () => {};
           const logger = { error: quiet, warn: quiet, info: quiet, debug: quiet };
           const store = await openPgHistoryStore(${JSON.stringify(url)}, { logger, flushIntervalMs: 60000 });
           store.record({ queueId: "child", sourceIp: "192.0.2.1", headerFrom: "example.com", dkim: [], spf: [],
             dmarc: "none", dkimAligned: "fail", spfAligned: "fail", disposition: "none", time: new Date(${T0.getTime()}) });
           // Not awaited, and the store is never closed.
           store.flush().then(() => console.log("written", store.counters.written));`,
        );
        const child = spawn(join(REPO, "node_modules/.bin/node"), [script], { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        child.stdout.on("data", (d: Buffer) => (out += d.toString()));
        child.stderr.on("data", (d: Buffer) => (out += d.toString()));
        // A child that never exits is the failure this test is about: stop it, and say so below.
        const hung = setTimeout(() => child.kill("SIGKILL"), 30_000);
        const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
        clearTimeout(hung);
        expect(out).toMatch(/written 1/);
        expect(code).toBe(0);
        expect(await count(url, "messages")).toBe(1);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});
