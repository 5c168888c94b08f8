// Starts a MilterServer in the test process on a free loopback port, with logs captured.

import { Writable } from "node:stream";
import { pino } from "pino";
import type { MilterHandler } from "../../src/milter/handler.ts";
import { MilterServer, type ServerOptions } from "../../src/milter/server.ts";

export interface Running {
  readonly server: MilterServer;
  readonly port: number;
  readonly logs: Array<{ level: number; msg: string; [k: string]: unknown }>;
  stop(): Promise<void>;
}

export async function startServer(handler: MilterHandler, overrides: Partial<ServerOptions> = {}): Promise<Running> {
  const logs: Running["logs"] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  const server = new MilterServer(handler, {
    socket: "inet:0@127.0.0.1",
    umask: 0o007,
    maxConnections: 2048,
    idleTimeoutMs: 60_000,
    commandTimeoutMs: 5_000,
    progressIntervalMs: 10_000,
    maxPacketBytes: 1024 * 1024,
    drainTimeoutMs: 5_000,
    failureDecision: { kind: "tempfail" },
    logger: pino({ level: "debug" }, sink),
    ...overrides,
  });
  const address = await server.listen();
  const port = Number(/^inet6?:(\d+)@/.exec(address)?.[1]);
  return { server, port, logs, stop: () => server.drain() };
}
