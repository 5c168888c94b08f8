// Network glue: listen on an opendkim-style socket, one session per connection, commands
// handled strictly in order, limits and timeouts, graceful drain.

import { lstatSync, unlinkSync } from "node:fs";
import net from "node:net";
import type { Logger } from "pino";
import { decodeCommand, encodeReplies, encodeReply } from "./codec.ts";
import { FrameDecoder, type Frame } from "./frame.ts";
import type { FinalDecision, MilterHandler } from "./handler.ts";
import { MilterSession } from "./session.ts";
import { formatSocketSpec, parseSocketSpec, type SocketSpec } from "./socket-spec.ts";

export interface ServerOptions {
  readonly socket: string;
  /** Applied while a unix socket is created, so its mode lets Postfix in (e.g. 0o007). */
  readonly umask: number;
  readonly maxConnections: number;
  /** A connection with no traffic this long is closed (longer than Postfix's 300 s content timeout). */
  readonly idleTimeoutMs: number;
  readonly commandTimeoutMs: number;
  readonly progressIntervalMs: number;
  readonly maxPacketBytes: number;
  /** On drain, connections still busy after this long are closed. */
  readonly drainTimeoutMs: number;
  readonly failureDecision: FinalDecision;
  readonly logger: Logger;
  /** Remove a socket file left by a crashed run before listening (default true). */
  readonly replaceStaleSocket?: boolean;
}

// A client that pipelines faster than we handle is paused past this many queued bytes (or
// frames): under NR_BODY Postfix streams 64 KB body chunks without waiting, and an unbounded
// queue would hold whole messages in memory.
const MAX_QUEUED_BYTES = 256 * 1024;
const MAX_QUEUED_FRAMES = 1024;

class Connection {
  readonly #socket: net.Socket;
  readonly #session: MilterSession;
  readonly #decoder: FrameDecoder;
  readonly #logger: Logger;
  readonly #queue: Frame[] = [];
  #queuedBytes = 0;
  #running = false;
  #closed = false;

  constructor(socket: net.Socket, handler: MilterHandler, sessionId: string, opts: ServerOptions) {
    this.#socket = socket;
    this.#logger = opts.logger.child({ session: sessionId });
    this.#decoder = new FrameDecoder(opts.maxPacketBytes);
    this.#session = new MilterSession(handler, {
      sessionId,
      logger: this.#logger,
      commandTimeoutMs: opts.commandTimeoutMs,
      progressIntervalMs: opts.progressIntervalMs,
      failureDecision: opts.failureDecision,
      sendProgress: () => this.#write(encodeReply({ kind: "progress" })),
    });
    // One event's replies leave in one write; without Nagle they leave at once (reference §13).
    socket.setNoDelay(true);
    socket.setTimeout(opts.idleTimeoutMs);
    socket.on("timeout", () => {
      this.#logger.warn("milter connection idle too long; closing");
      socket.destroy();
    });
    socket.on("data", (data: Buffer) => this.#receive(data));
    socket.on("error", (err) => this.#logger.debug({ err }, "milter socket error"));
    socket.on("close", () => this.#finish());
  }

  get closed(): Promise<void> {
    return this.#closed ? Promise.resolve() : new Promise((resolve) => this.#socket.once("close", () => resolve()));
  }

  destroy(): void {
    this.#socket.destroy();
  }

  #receive(data: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.#decoder.push(data);
    } catch (err) {
      this.#logger.warn({ err }, "malformed milter packet; closing the connection");
      this.#socket.destroy();
      return;
    }
    if (frames.length === 0) return;
    for (const f of frames) {
      this.#queue.push(f);
      this.#queuedBytes += f.payload.length;
    }
    if (this.#overQueued()) this.#socket.pause();
    if (!this.#running) void this.#run();
  }

  async #run(): Promise<void> {
    this.#running = true;
    try {
      for (let frame = this.#queue.shift(); frame !== undefined; frame = this.#queue.shift()) {
        if (this.#closed) return;
        this.#queuedBytes -= frame.payload.length;
        if (this.#socket.isPaused() && !this.#overQueued()) this.#socket.resume();
        const command = decodeCommand(frame);
        const step = await this.#session.handle(command);
        if (step.replies.length > 0) this.#write(encodeReplies(step.replies));
        if (step.close) {
          this.#socket.end();
          return;
        }
      }
    } catch (err) {
      // Decoding errors and anything unexpected end this connection only; the daemon lives.
      this.#logger.warn({ err }, "milter protocol error; closing the connection");
      this.#socket.destroy();
    } finally {
      this.#running = false;
    }
  }

  #overQueued(): boolean {
    return this.#queuedBytes > MAX_QUEUED_BYTES || this.#queue.length > MAX_QUEUED_FRAMES;
  }

  #write(bytes: Buffer): void {
    if (!this.#closed && this.#socket.writable) this.#socket.write(bytes);
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
    this.#session.close();
  }
}

export class MilterServer {
  readonly #handler: MilterHandler;
  readonly #opts: ServerOptions;
  readonly #spec: SocketSpec;
  readonly #server: net.Server;
  readonly #connections = new Set<Connection>();
  #nextSession = 0;

  constructor(handler: MilterHandler, opts: ServerOptions) {
    this.#handler = handler;
    this.#opts = opts;
    this.#spec = parseSocketSpec(opts.socket);
    this.#server = net.createServer((socket) => this.#accept(socket));
    this.#server.maxConnections = opts.maxConnections;
    this.#server.on("drop", (data) =>
      opts.logger.warn(
        { limit: opts.maxConnections, client: data?.remoteAddress },
        "milter connection limit reached; connection refused (Postfix applies milter_default_action)",
      ),
    );
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Resolves with the address actually bound (a port of 0 picks a free one). */
  async listen(): Promise<string> {
    const spec = this.#spec;
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      if (spec.kind === "tcp") {
        this.#server.listen({ host: spec.host, port: spec.port, backlog: 511 }, resolve);
        return;
      }
      if (this.#opts.replaceStaleSocket !== false) removeStaleSocket(spec.path);
      const previous = process.umask(this.#opts.umask);
      try {
        this.#server.listen({ path: spec.path, backlog: 511 }, resolve);
      } finally {
        process.umask(previous);
      }
    });
    const bound = this.#server.address();
    const actual = spec.kind === "tcp" && typeof bound === "object" && bound !== null ? { ...spec, port: bound.port } : spec;
    const address = formatSocketSpec(actual);
    this.#opts.logger.info({ socket: address }, `listening on ${address}`);
    return address;
  }

  /**
   * Stops accepting (new connections are refused, Postfix applies milter_default_action) and
   * waits for open connections to end their SMTP sessions. None is closed early: under NR_*
   * Postfix only notices a closed milter at end of message, so closing a connection "between
   * messages" would fail the message its SMTP client is sending right then. Past
   * drainTimeout what is left is closed.
   */
  async drain(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    const allClosed = Promise.all([...this.#connections].map((c) => c.closed));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.#opts.drainTimeoutMs);
    });
    if ((await Promise.race([allClosed, deadline])) === "timeout") {
      this.#opts.logger.warn({ open: this.#connections.size }, "drain timed out; closing remaining connections");
      for (const connection of this.#connections) connection.destroy();
    }
    clearTimeout(timer);
    await stopped;
  }

  #accept(socket: net.Socket): void {
    const sessionId = (++this.#nextSession).toString(36);
    const connection = new Connection(socket, this.#handler, sessionId, this.#opts);
    this.#connections.add(connection);
    socket.once("close", () => this.#connections.delete(connection));
  }
}

/** A socket file left by a crashed run would make listen fail with EADDRINUSE. */
export function removeStaleSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}
