// The write queue both history stores put in front of their database (history-sqlite.ts,
// history-pg.ts). The milter records a row for every message it verified, and that must never
// cost the message anything: record() only converts and queues (no I/O, never throws), and
// batches are written later, from a timer or once enough rows are waiting. A store that cannot
// write loses rows, never mail: they are dropped and counted, and an outage is logged once when
// it starts and once when it ends.
//
// A store brings only its database's part (BatchWriter). Its writes may be synchronous (SQLite:
// a batch is on disk when the timer that wrote it returns) or asynchronous (PostgreSQL: one
// batch on its way at a time, and what is recorded meanwhile waits for the next); the queue
// stays synchronous as long as they are.

import type { Logger } from "pino";
import { HISTORY_DEFAULTS, type HistoryCounters, type HistoryRecord, type HistoryStoreOptions } from "./history.ts";

/** What a store does with its database; the queue does the rest. */
export interface BatchWriter<Row> {
  /** The record as write() takes it. Throws on a record that cannot be stored. */
  toRow(r: HistoryRecord, now: Date): Row;
  /** Writes the batch, all of it or nothing. Throws (or rejects) when it could not. */
  write(batch: readonly Row[]): void | Promise<void>;
  /** An error of write() that is another writer's lock: the batch waits for the next timer. */
  isBusy(err: unknown): boolean;
  /**
   * A failed write may have waited for its timeouts (a server gone away): closing then gives up
   * after the first failure instead of waiting as long for every batch left.
   */
  readonly failedWritesAreSlow: boolean;
  /** Closes the database once the queue is done with it. Never throws: it logs. */
  close(): void | Promise<void>;
}

type WriteOutcome = "ok" | "busy" | "failed";

export class HistoryWriteQueue<Row> {
  private readonly writer: BatchWriter<Row>;
  private readonly logger: Logger;
  private readonly batchSize: number;
  private readonly flushIntervalMs: number;
  private readonly maxQueue: number;
  private readonly queue: Row[] = [];
  /** Rows of the batch being written (still pending: not yet written, not yet dropped). */
  private inFlight = 0;
  /** Only while an asynchronous write is on its way. */
  private draining: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
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

  constructor(writer: BatchWriter<Row>, options: HistoryStoreOptions) {
    this.writer = writer;
    this.logger = options.logger;
    this.batchSize = Math.max(1, options.batchSize ?? HISTORY_DEFAULTS.batchSize);
    this.flushIntervalMs = Math.max(1, options.flushIntervalMs ?? HISTORY_DEFAULTS.flushIntervalMs);
    this.maxQueue = Math.max(this.batchSize, options.maxQueue ?? HISTORY_DEFAULTS.maxQueue);
  }

  get counters(): HistoryCounters {
    const c = this.count;
    return {
      ...c,
      pending: this.queue.length + this.inFlight,
      dropped: c.droppedStoreError + c.droppedQueueFull + c.droppedClosed + c.droppedInvalid,
    };
  }

  /** Queues one message's row. Synchronous, no I/O, never throws. */
  record(r: HistoryRecord): void {
    try {
      if (this.closed) {
        this.count.droppedClosed++;
        return;
      }
      let row: Row;
      try {
        row = this.writer.toRow(r, new Date());
      } catch (err) {
        this.count.droppedInvalid++;
        this.logger.error({ err }, "history: record() got a row it cannot store; dropped");
        return;
      }
      if (this.queue.length + this.inFlight >= this.maxQueue) {
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

  /** Writes what is queued (and what is recorded meanwhile). Never rejects. */
  flush(): Promise<void> {
    return this.drain();
  }

  /** Writes what is queued, drops what still cannot be written, then closes the database. */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.closed = true;
    this.clearTimers();
    await this.drain();
    if (this.queue.length > 0) {
      const n = this.queue.length;
      this.queue.length = 0;
      this.count.droppedClosed += n;
      const why = this.writer.failedWritesAreSlow ? "still busy or failing" : "still busy";
      this.logger.error({ dropped: n }, `history: database ${why} at close; queued rows dropped`);
    }
    await this.writer.close();
  }

  private schedule(): void {
    if (this.draining !== undefined) return; // the running drain takes the new row too
    if (this.queue.length >= this.batchSize) {
      // Not now: the caller is handling a message. Right after it, on this turn's tail.
      this.immediate ??= setImmediate(() => {
        this.immediate = undefined;
        void this.drain();
      }).unref();
    } else {
      this.startTimer();
    }
  }

  private startTimer(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.drain();
    }, this.flushIntervalMs).unref();
  }

  private clearTimers(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }

  /** One writer at a time; a second caller waits for the running one, which takes its rows too. */
  private drain(): Promise<void> {
    if (this.draining !== undefined) return this.draining;
    let running: Promise<void> | undefined;
    try {
      running = this.writeQueued();
    } catch {
      // Only a throwing logger gets here; flush() and the timers must not throw either way.
    }
    if (running === undefined) {
      this.drained();
      return Promise.resolve();
    }
    this.draining = running.catch(() => {}).finally(() => this.drained());
    return this.draining;
  }

  private drained(): void {
    this.draining = undefined;
    this.inFlight = 0;
    // What a busy database left behind goes again with the next timer.
    if (this.queue.length > 0 && !this.closed) this.startTimer();
  }

  /** Returns a Promise only once a write turned out asynchronous. */
  private writeQueued(): Promise<void> | undefined {
    this.clearTimers();
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.batchSize);
      this.inFlight = batch.length;
      const outcome = this.writeBatch(batch);
      if (outcome instanceof Promise) {
        return outcome.then((o) => (this.takeNext(batch, o) ? this.writeQueued() : this.noteQueueRoom()));
      }
      if (!this.takeNext(batch, outcome)) break;
    }
    this.noteQueueRoom();
    return undefined;
  }

  /** Puts a busy batch back; false when the rest has to wait. */
  private takeNext(batch: Row[], outcome: WriteOutcome): boolean {
    this.inFlight = 0;
    if (outcome === "busy") {
      this.queue.unshift(...batch);
      this.count.busyRetries++;
      this.logger.debug({ pending: this.queue.length }, "history: database busy; will retry");
      return false;
    }
    this.noteQueueRoom();
    return !(outcome === "failed" && this.closed && this.writer.failedWritesAreSlow);
  }

  private noteQueueRoom(): void {
    if (this.queueFullSince !== undefined && this.queue.length + this.inFlight < this.maxQueue) {
      const lost = this.count.droppedQueueFull - this.queueFullSince;
      this.queueFullSince = undefined;
      this.logger.warn({ dropped: lost }, `history: queue has room again after dropping ${lost} rows`);
    }
  }

  private writeBatch(batch: readonly Row[]): WriteOutcome | Promise<WriteOutcome> {
    let writing: void | Promise<void>;
    try {
      writing = this.writer.write(batch);
    } catch (err) {
      return this.failed(batch, err);
    }
    if (writing instanceof Promise) {
      return writing.then(
        () => this.written(batch),
        (err: unknown) => this.failed(batch, err),
      );
    }
    return this.written(batch);
  }

  private written(batch: readonly Row[]): WriteOutcome {
    this.count.written += batch.length;
    if (this.failingSince !== undefined) {
      const lost = this.count.droppedStoreError - this.failingSince;
      this.failingSince = undefined;
      this.logger.warn({ dropped: lost }, `history: writing again after dropping ${lost} rows`);
    }
    return "ok";
  }

  private failed(batch: readonly Row[], err: unknown): WriteOutcome {
    if (this.writer.isBusy(err)) return "busy";
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
}
