// The serving process: one milter server with its handler, alone or as one worker of a
// cluster (src/ops/primary.ts). Serves until SIGTERM, then drains.

import type { Logger } from "pino";
import { buildAuthHandler, buildAuthState, buildResolver } from "../auth/build.ts";
import type { AuthHandler } from "../auth/handler.ts";
import { actionDecision } from "../auth/policy.ts";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import type { Resolver } from "../dns/index.ts";
import { MilterServer } from "../milter/server.ts";
import { FailureReporter } from "../reports/failure.ts";
import type { HistoryStore } from "../reports/history.ts";
import { reportMailer } from "../reports/mailer.ts";
import { openHistory } from "../reports/open-history.ts";
import { startMonitoring } from "./http.ts";
import { AuthMetrics, Observed } from "./metrics.ts";
import { notifySystemd } from "./notify.ts";
import { toPrimary, type PrimaryMessage } from "./cluster-messages.ts";

export interface WorkerOptions {
  readonly config: Config;
  /** The file to read again on reload (undefined: the default path or embedded defaults). */
  readonly configPath: string | undefined;
  readonly logger: Logger;
  /** One of several cluster workers: the primary does readiness, metrics over HTTP and signals. */
  readonly clustered: boolean;
}

export async function runWorker({ config, configPath, logger, clustered }: WorkerOptions): Promise<void> {
  const resolver = buildResolver(config);
  const metrics = config.metrics.listen ? new AuthMetrics() : undefined;
  if (metrics && clustered) metrics.registry.add(new Observed("authmilter_workers", "Cluster workers serving", () => 1));
  const history = config.reports.history ? await openHistory(config.reports.history, { logger }) : undefined;
  if (history) keepPruning(history, config.reports.retentionMs, logger);
  const failureReports = buildFailureReporter(config, resolver, logger);
  const handler = await buildAuthHandler(config, resolver, logger, {
    ...(metrics ? { metrics } : {}),
    ...(history ? { history } : {}),
    ...(failureReports ? { failureReports } : {}),
  });
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
    // In a cluster the primary owns the socket file: a worker must not remove another's.
    replaceStaleSocket: !clustered,
  });
  const address = await server.listen();
  let serving = true;
  if (metrics) {
    const r = metrics.registry;
    r.add(new Observed("authmilter_connections", "Milter connections open", () => server.connectionCount));
    r.add(new Observed("authmilter_dns_cache_hits_total", "DNS answers served from the cache", () => resolver.stats().cacheHits, "counter"));
    r.add(new Observed("authmilter_dns_cache_misses_total", "DNS lookups sent upstream", () => resolver.stats().cacheMisses, "counter"));
    r.add(new Observed("authmilter_dns_cache_entries", "DNS answers cached", () => resolver.stats().cache.entries));
    if (!clustered && config.metrics.listen) {
      const monitoring = await startMonitoring(config.metrics.listen, async () => r.render(), () => serving);
      logger.info({ metrics: monitoring.address }, `metrics on http://${monitoring.address}/metrics`);
    }
  }
  const reloadNow = () => reload(handler, configPath, logger);
  const stop = stopper(server, logger, () => {
    serving = false;
    if (!clustered) notifySystemd("stopping", "draining");
  }, async () => {
    await failureReports?.close();
    await history?.close();
  });
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  let reloading = Promise.resolve();
  const queueReload = () => {
    reloading = reloading.then(reloadNow);
  };
  if (clustered) {
    process.on("message", (m: PrimaryMessage) => {
      if (m?.type === "reload") queueReload();
      else if (m?.type === "drain") stop("drain");
      else if (m?.type === "metrics") toPrimary({ type: "metrics", id: m.id, text: metrics?.registry.render() ?? "" });
    });
    // The primary forwards SIGHUP; one sent to a worker directly is taken too.
    process.on("SIGHUP", queueReload);
    // The primary is gone (killed): it owned the listening socket, so finish what is open and go.
    process.on("disconnect", () => stop("primary gone"));
    toPrimary({ type: "listening", address });
  } else {
    process.on("SIGHUP", queueReload);
    notifySystemd("ready", `serving on ${address}`);
  }
}

/** DMARC (ruf=) and DKIM (r=y) failure reports, when configured: off by default. */
function buildFailureReporter(config: Config, resolver: Resolver, logger: Logger): FailureReporter | undefined {
  const r = config.reports;
  if (!r.failure.dmarc && !r.failure.dkim) return undefined;
  return new FailureReporter({
    logger,
    resolver,
    mailer: reportMailer(r),
    from: r.from ?? `postmaster@${config.hostname}`,
    reportingMta: config.hostname,
    dmarc: r.failure.dmarc,
    dkim: r.failure.dkim,
    perDomainPerHour: r.failure.perDomainPerHour,
  });
}

/** Old history rows go once a day (and once at start). */
function keepPruning(store: HistoryStore, retentionMs: number, logger: Logger): void {
  const prune = async () => {
    try {
      const before = new Date(Date.now() - retentionMs);
      const removed = await store.pruneAsync(before);
      if (removed > 0) logger.info({ removed }, `history: pruned ${removed} row(s) older than the retention`);
    } catch (err) {
      logger.error({ err }, "history: pruning failed");
    }
  };
  void prune();
  setInterval(() => void prune(), 86_400_000).unref();
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

/** SIGTERM (or the primary's word): stop accepting, let sessions finish, then exit 0. */
function stopper(server: MilterServer, logger: Logger, onStop: () => void, afterDrain: () => Promise<void>): (why: string) => void {
  let stopping = false;
  return (why) => {
    if (stopping) return;
    stopping = true;
    onStop();
    logger.info({ signal: why, connections: server.connectionCount }, `${why}: draining, no new connections`);
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
}
