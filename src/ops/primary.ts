// The cluster's primary: one worker per core sharing the milter socket (node:cluster), so that
// verification and signing use every core. It owns what must exist once: readiness for
// systemd, the metrics endpoint (summing the workers'), signals, and restarting a worker that
// died. It serves no milter connection itself.

import cluster, { type Worker } from "node:cluster";
import type { Logger } from "pino";
import type { Config } from "../config/schema.ts";
import { parseSocketSpec } from "../milter/socket-spec.ts";
import { removeStaleSocket } from "../milter/server.ts";
import type { PrimaryMessage, WorkerMessage } from "./cluster-messages.ts";
import { startMonitoring } from "./http.ts";
import { sumExpositions } from "./metrics.ts";
import { notifySystemd } from "./notify.ts";

const RESTART_DELAY_MS = 1_000;
/**
 * V8's young generation grows to 3 × 16 MB semi-spaces under a worker's allocation rate and
 * stays there: at 20 KB × 32 concurrent messages each worker's RSS rose ~145 MB above idle.
 * With 4 MB it rose ~40 MB, at the same CPU per message (docs/benchmarks.md, "Memory"). A
 * single-process daemon gets the flag from the command's #! line (and `npm start`).
 */
const WORKER_V8_FLAGS = ["--max-semi-space-size=4"];
const SCRAPE_TIMEOUT_MS = 2_000;

export async function runPrimary(config: Config, workers: number, logger: Logger): Promise<void> {
  // The kernel hands each new connection to a worker blocked in accept(); the default
  // round-robin passes every connection through the primary over IPC, which cost 20-35% CPU
  // per message in the benchmark (one milter connection per SMTP session).
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ execArgv: [...new Set([...process.execArgv, ...WORKER_V8_FLAGS])] });
  const spec = parseSocketSpec(config.milter.socket);
  if (spec.kind === "unix") {
    // The primary creates the socket for its workers: its umask and stale-file cleanup apply.
    removeStaleSocket(spec.path);
    process.umask(config.milter.socketUmask);
  }
  let stopping = false;
  let ready = false;
  const listening = new Set<number>();
  let scrapeId = 0;
  const scrapes = new Map<number, (text: string) => void>();

  const send = (w: Worker, m: PrimaryMessage) => {
    if (w.isConnected()) w.send(m);
  };
  const fork = () => {
    const worker = cluster.fork();
    worker.on("message", (m: WorkerMessage) => {
      if (m.type === "listening") {
        listening.add(worker.id);
        if (!ready && listening.size === workers) {
          ready = true;
          logger.info({ workers, socket: m.address }, `${workers} workers serving on ${m.address}`);
          notifySystemd("ready", `${workers} workers serving on ${m.address}`);
        }
      } else if (m.type === "metrics") scrapes.get(m.id)?.(m.text);
    });
    worker.on("exit", (code, signal) => {
      const wasListening = listening.delete(worker.id);
      if (stopping) return;
      if (!wasListening && !ready) {
        // A worker that cannot even start (a bad key, a socket in use) will not do better on a
        // restart: stop all, with its exit status (78 for a configuration error).
        logger.error({ code, signal }, "a worker failed to start; stopping");
        stopAll("worker failed", code ?? 1);
        return;
      }
      logger.error({ code, signal, pid: worker.process.pid }, "a worker died; starting another");
      setTimeout(() => {
        if (!stopping) fork();
      }, RESTART_DELAY_MS).unref();
    });
  };

  const scrape = async (): Promise<string> => {
    const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
    const texts = await Promise.all(
      live.map(
        (w) =>
          new Promise<string>((resolve) => {
            const id = ++scrapeId;
            const timer = setTimeout(() => {
              scrapes.delete(id);
              resolve("");
            }, SCRAPE_TIMEOUT_MS);
            scrapes.set(id, (text) => {
              clearTimeout(timer);
              scrapes.delete(id);
              resolve(text);
            });
            send(w, { type: "metrics", id });
          }),
      ),
    );
    return sumExpositions(texts);
  };

  const stopAll = (why: string, exitCode = 0) => {
    if (stopping) return;
    stopping = true;
    notifySystemd("stopping", "draining");
    logger.info({ signal: why }, `${why}: draining ${listening.size} worker(s)`);
    const all = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    let left = all.length;
    if (left === 0) process.exit(exitCode);
    for (const w of all) {
      w.on("exit", () => {
        if (--left === 0) {
          logger.info("all workers drained; exiting");
          process.exit(exitCode);
        }
      });
      send(w, { type: "drain" });
    }
    // A worker that does not finish in time is ended (its own drain deadline has passed by then).
    setTimeout(() => {
      for (const w of all) w.process.kill("SIGKILL");
    }, config.milter.drainTimeoutMs + 10_000).unref();
  };

  for (let i = 0; i < workers; i++) fork();
  if (config.metrics.listen) {
    const monitoring = await startMonitoring(config.metrics.listen, scrape, () => ready && !stopping);
    logger.info({ metrics: monitoring.address }, `metrics on http://${monitoring.address}/metrics`);
  }
  process.on("SIGTERM", () => stopAll("SIGTERM"));
  process.on("SIGINT", () => stopAll("SIGINT"));
  process.on("SIGHUP", () => {
    logger.info("SIGHUP: asking every worker to reload");
    for (const w of Object.values(cluster.workers ?? {})) if (w) send(w, { type: "reload" });
  });
}
