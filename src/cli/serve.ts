// `authmilter serve`: load the config and serve — alone, or as a cluster of one worker per core.

import cluster from "node:cluster";
import { availableParallelism } from "node:os";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { createLogger } from "../log.ts";
import { runPrimary } from "../ops/primary.ts";
import { runWorker } from "../ops/worker.ts";
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
  // A cluster worker re-runs this command (same arguments) and serves; only it listens.
  if (cluster.isWorker) return runWorker({ config, configPath: options.config, logger, clustered: true });
  const workers = config.milter.workers === 0 ? availableParallelism() : config.milter.workers;
  logger.info(
    { version: VERSION, config: loaded.source ?? "embedded defaults", workers },
    `authmilter ${VERSION} starting (config: ${loaded.source ?? "embedded defaults"}; ${workers} worker${workers === 1 ? "" : "s"})`,
  );
  if (workers > 1) return runPrimary(config, workers, logger);
  return runWorker({ config, configPath: options.config, logger, clustered: false });
}
