// A milter that asks the MTA for everything authmilter asks for and does nothing with it:
// our wire layer (src/milter) with an empty handler, one process. Through Postfix it measures
// the floor any milter of this shape costs — Postfix's side of the protocol, a connection per
// SMTP session, our framing — apart from the work of verifying and signing.
//
//   node bench/null-milter.ts PORT

import { pino } from "pino";
import { WANTED_MACROS } from "../src/auth/handler.ts";
import * as C from "../src/milter/constants.ts";
import type { MilterHandler } from "../src/milter/handler.ts";
import { MilterServer } from "../src/milter/server.ts";

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) throw new Error("usage: node bench/null-milter.ts PORT");

const handler: MilterHandler = {
  requirements: { requiredActions: C.SMFIF_ADDHDRS, optionalActions: C.SMFIF_CHGHDRS | C.SMFIF_QUARANTINE, macros: WANTED_MACROS },
  openConnection: () => ({
    connect() {},
    helo() {},
    startMessage: () => ({
      recipient() {},
      header() {},
      endOfHeaders() {},
      body() {},
      endOfMessage: () => ({ modifications: [], decision: { kind: "continue" } }),
    }),
  }),
};

const server = new MilterServer(handler, {
  socket: `inet:${port}@127.0.0.1`,
  umask: 0o007,
  maxConnections: 1024,
  idleTimeoutMs: 600_000,
  commandTimeoutMs: 30_000,
  progressIntervalMs: 10_000,
  maxPacketBytes: 1024 * 1024,
  drainTimeoutMs: 1_000,
  failureDecision: { kind: "tempfail" },
  logger: pino({ level: "warn" }),
});
await server.listen();
process.on("SIGTERM", () => void server.drain().then(() => process.exit(0)));
