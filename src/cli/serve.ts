// `authmilter serve`: load the config, listen, serve until SIGTERM, then drain.

import type { Logger } from "pino";
import { buildAuthHandler, buildResolver } from "../auth/build.ts";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { createLogger } from "../log.ts";
import type { FinalDecision } from "../milter/handler.ts";
import { MilterServer } from "../milter/server.ts";
import { VERSION } from "../version.ts";

export interface ServeOptions {
  readonly config?: string;
  readonly socket?: string;
}

export async function serve(options: ServeOptions): Promise<void> {
  const loaded = loadConfig(options.config);
  const config: Config = options.socket
    ? { ...loaded.config, milter: { ...loaded.config.milter, socket: options.socket } }
    : loaded.config;
  const logger = createLogger(config.log.level);
  logger.info(
    { version: VERSION, config: loaded.source ?? "embedded defaults" },
    `authmilter ${VERSION} starting (config: ${loaded.source ?? "embedded defaults"})`,
  );
  const resolver = buildResolver(config);
  const handler = buildAuthHandler(config, resolver, logger);
  const server = new MilterServer(handler, {
    socket: config.milter.socket,
    umask: config.milter.socketUmask,
    maxConnections: config.milter.maxConnections,
    idleTimeoutMs: config.milter.idleTimeoutMs,
    commandTimeoutMs: config.milter.commandTimeoutMs,
    progressIntervalMs: config.milter.progressIntervalMs,
    maxPacketBytes: config.milter.maxPacketBytes,
    drainTimeoutMs: config.milter.drainTimeoutMs,
    failureDecision: failureDecision(config.milter.onInternalError),
    logger,
  });
  await server.listen();
  handleSignals(server, logger);
}

function failureDecision(action: Config["milter"]["onInternalError"]): FinalDecision {
  return { kind: action === "accept" ? "continue" : action };
}

function handleSignals(server: MilterServer, logger: Logger): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, connections: server.connectionCount }, `${signal}: draining, no new connections`);
    server.drain().then(
      () => {
        logger.info("drained; exiting");
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, "drain failed; exiting");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // The default action of SIGHUP is to die; until reload lands, say so and keep serving.
  process.on("SIGHUP", () => logger.warn("SIGHUP: configuration reload is not implemented yet; still serving"));
}
