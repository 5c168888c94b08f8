// `authmilter serve`: load the config, listen, serve until SIGTERM, then drain.

import type { Logger } from "pino";
import { buildAuthHandler, buildAuthState, buildResolver } from "../auth/build.ts";
import type { AuthHandler } from "../auth/handler.ts";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { createLogger } from "../log.ts";
import { actionDecision } from "../auth/policy.ts";
import { startMonitoring } from "../ops/http.ts";
import { AuthMetrics, Observed } from "../ops/metrics.ts";
import { notifySystemd } from "../ops/notify.ts";
import { openHistoryStore, type HistoryStore } from "../reports/history.ts";
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
  const logger = createLogger(config.log);
  logger.info(
    { version: VERSION, config: loaded.source ?? "embedded defaults" },
    `authmilter ${VERSION} starting (config: ${loaded.source ?? "embedded defaults"})`,
  );
  const resolver = buildResolver(config);
  const metrics = config.metrics.listen ? new AuthMetrics() : undefined;
  const history = config.reports.history ? openHistoryStore(config.reports.history, { logger }) : undefined;
  if (history) keepPruning(history, config.reports.retentionMs, logger);
  const handler = await buildAuthHandler(config, resolver, logger, { ...(metrics ? { metrics } : {}), ...(history ? { history } : {}) });
  const server = new MilterServer(handler, {
    socket: config.milter.socket,
    umask: config.milter.socketUmask,
    maxConnections: config.milter.maxConnections,
    idleTimeoutMs: config.milter.idleTimeoutMs,
    commandTimeoutMs: config.milter.commandTimeoutMs,
    progressIntervalMs: config.milter.progressIntervalMs,
    maxPacketBytes: config.milter.maxPacketBytes,
    drainTimeoutMs: config.milter.drainTimeoutMs,
    failureDecision: actionDecision(config.actions.internalError),
    logger,
  });
  const address = await server.listen();
  let serving = true;
  if (metrics && config.metrics.listen) {
    const r = metrics.registry;
    r.add(new Observed("authmilter_connections", "Milter connections open", () => server.connectionCount));
    r.add(new Observed("authmilter_dns_cache_hits_total", "DNS answers served from the cache", () => resolver.stats().cacheHits, "counter"));
    r.add(new Observed("authmilter_dns_cache_misses_total", "DNS lookups sent upstream", () => resolver.stats().cacheMisses, "counter"));
    r.add(new Observed("authmilter_dns_cache_entries", "DNS answers cached", () => resolver.stats().cache.entries));
    const monitoring = await startMonitoring(config.metrics.listen, r, () => serving);
    logger.info({ metrics: monitoring.address }, `metrics on http://${monitoring.address}/metrics`);
  }
  notifySystemd("ready", `serving on ${address}`);
  handleSignals(
    server,
    logger,
    () => reload(handler, options.config, logger),
    () => {
      serving = false;
      notifySystemd("stopping", "draining");
    },
    async () => {
      await history?.close();
    },
  );
}

/** Old history rows go once a day (and once at start). */
function keepPruning(store: HistoryStore, retentionMs: number, logger: Logger): void {
  const prune = () => {
    try {
      const removed = store.prune(new Date(Date.now() - retentionMs));
      if (removed > 0) logger.info({ removed }, `history: pruned ${removed} row(s) older than the retention`);
    } catch (err) {
      logger.error({ err }, "history: pruning failed");
    }
  };
  prune();
  setInterval(prune, 86_400_000).unref();
}

/**
 * SIGHUP: read the configuration, tables and keys again and swap them in whole. A broken new
 * configuration is refused and the old one keeps serving; messages in flight keep theirs.
 * The milter section (socket, connection limits, timeouts), DNS, logging and metrics are read
 * at start only.
 */
async function reload(handler: AuthHandler, configPath: string | undefined, logger: Logger): Promise<void> {
  try {
    const loaded = loadConfig(configPath);
    handler.reload(await buildAuthState(loaded.config));
    logger.info({ config: loaded.source ?? "embedded defaults" }, "SIGHUP: configuration, tables and keys reloaded");
  } catch (err) {
    logger.error({ err }, `SIGHUP: reload refused, still serving the previous configuration: ${(err as Error).message}`);
  }
}

function handleSignals(server: MilterServer, logger: Logger, onReload: () => Promise<void>, onStop: () => void, afterDrain: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    onStop();
    logger.info({ signal, connections: server.connectionCount }, `${signal}: draining, no new connections`);
    server.drain().then(afterDrain).then(
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
  let reloading = Promise.resolve();
  process.on("SIGHUP", () => {
    reloading = reloading.then(onReload);
  });
}
