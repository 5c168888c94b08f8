// The write queue on its own, with a fake database in place of SQLite or PostgreSQL. The stores'
// tests (history.test.ts, history-pg.test.ts) hold it to its promises on real databases; here
// is where a synchronous and an asynchronous writer part ways: while a write is on its way, and
// when closing meets a database that fails.

import { describe, expect, it } from "vitest";
import type { HistoryRecord } from "../../src/reports/history.ts";
import { HistoryWriteQueue, type BatchWriter } from "../../src/reports/history-queue.ts";
import { captureLogger, LEVEL, message } from "./helpers.ts";

type Row = string;

/** A database that stores queue ids; `state` says how its next writes go. */
function fakeDatabase(asynchronous: boolean) {
  const stored: Row[] = [];
  const db = { stored, state: "up" as "up" | "busy" | "failing", writes: 0, closed: false };
  const attempt = (batch: readonly Row[]): void => {
    db.writes++;
    if (db.state === "busy") throw Object.assign(new Error("locked"), { busy: true });
    if (db.state === "failing") throw new Error("gone");
    stored.push(...batch);
  };
  const writer: BatchWriter<Row> = {
    toRow: (r: HistoryRecord) => r.queueId ?? "",
    write: asynchronous ? (batch) => new Promise<void>((resolve) => setImmediate(resolve)).then(() => attempt(batch)) : attempt,
    isBusy: (err) => (err as { busy?: boolean }).busy === true,
    failedWritesAreSlow: asynchronous,
    close: () => void (db.closed = true),
  };
  return { db, writer };
}

function queue(asynchronous: boolean, options: { batchSize?: number; maxQueue?: number } = {}) {
  const { db, writer } = fakeDatabase(asynchronous);
  const log = captureLogger();
  const q = new HistoryWriteQueue(writer, { logger: log.logger, flushIntervalMs: 60_000, ...options });
  return { q, db, lines: log.lines };
}

describe("a synchronous writer", () => {
  it("has written everything by the time flush() returns, before anything is awaited", () => {
    const { q, db } = queue(false, { batchSize: 2 });
    for (const id of ["a", "b", "c"]) q.record(message({ queueId: id }));
    void q.flush();
    expect(db.stored).toEqual(["a", "b", "c"]);
    expect(q.counters).toMatchObject({ written: 3, pending: 0 });
  });

  it("closing tries every batch while the database fails: a failed write costs nothing", async () => {
    const { q, db } = queue(false, { batchSize: 2 });
    for (const id of ["a", "b", "c", "d", "e"]) q.record(message({ queueId: id }));
    db.state = "failing";
    await q.close();
    expect(db.writes).toBe(3);
    expect(q.counters).toMatchObject({ droppedStoreError: 5, droppedClosed: 0, storeErrors: 3, pending: 0 });
    expect(db.closed).toBe(true);
  });

  it("closing drops what a busy database kept, and says so", async () => {
    const { q, db, lines } = queue(false);
    q.record(message());
    db.state = "busy";
    await q.close();
    expect(q.counters).toMatchObject({ droppedClosed: 1, busyRetries: 1, pending: 0 });
    expect(lines.find((l) => l.level === LEVEL.error)).toMatchObject({ dropped: 1, msg: "history: database still busy at close; queued rows dropped" });
  });
});

describe("an asynchronous writer", () => {
  it("counts the batch on its way as pending, and writes what was recorded meanwhile in the same flush", async () => {
    const { q, db } = queue(true, { batchSize: 2 });
    q.record(message({ queueId: "a" }));
    const flushed = q.flush();
    expect(q.counters).toMatchObject({ pending: 1, written: 0 });
    q.record(message({ queueId: "b" }));
    expect(q.counters).toMatchObject({ pending: 2, written: 0 });
    await flushed;
    expect(db.stored).toEqual(["a", "b"]);
    expect(q.counters).toMatchObject({ written: 2, pending: 0 });
  });

  it("a full queue counts the batch on its way", async () => {
    const { q } = queue(true, { batchSize: 2, maxQueue: 2 });
    q.record(message());
    const flushed = q.flush();
    q.record(message());
    q.record(message());
    expect(q.counters).toMatchObject({ recorded: 2, pending: 2, droppedQueueFull: 1 });
    await flushed;
    expect(q.counters).toMatchObject({ written: 2, pending: 0 });
  });

  it("closing during an outage gives up after the first failure: each would wait for its timeout", async () => {
    const { q, db, lines } = queue(true, { batchSize: 2 });
    for (const id of ["a", "b", "c", "d", "e"]) q.record(message({ queueId: id }));
    db.state = "failing";
    await q.close();
    expect(db.writes).toBe(1);
    expect(q.counters).toMatchObject({ droppedStoreError: 2, droppedClosed: 3, storeErrors: 1, pending: 0 });
    expect(lines.filter((l) => l.level === LEVEL.error).map((l) => l.msg)).toEqual([
      "history: writing to the database failed; dropping rows until it works again",
      "history: database still busy or failing at close; queued rows dropped",
    ]);
    expect(db.closed).toBe(true);
  });

  it("close() is one shutdown: a second call gets the same promise, and later rows are dropped as closed", async () => {
    const { q, db } = queue(true);
    q.record(message({ queueId: "a" }));
    const first = q.close();
    expect(q.close()).toBe(first);
    q.record(message({ queueId: "late" }));
    await first;
    expect(db.stored).toEqual(["a"]);
    expect(q.counters).toMatchObject({ written: 1, droppedClosed: 1 });
  });
});
