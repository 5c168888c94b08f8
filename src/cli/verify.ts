// `authmilter verify message.eml --ip 192.0.2.1 --helo h --mail-from a@b`: what the daemon
// would add to this message, computed by the same handler.

import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { pino } from "pino";
import { buildAuthHandler, buildResolver } from "../auth/build.ts";
import { parseMessage, runMessage } from "../auth/offline.ts";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";

interface VerifyFlags {
  readonly ip: string;
  readonly helo?: string;
  readonly mailFrom?: string;
  readonly config?: string;
  readonly dns?: string[];
  readonly log?: boolean;
}

export function registerVerify(program: Command): void {
  program
    .command("verify")
    .description("verify a message file offline and print the Authentication-Results header the daemon would add")
    .argument("<message>", "the message file (RFC 5322; - for standard input)")
    .requiredOption("--ip <address>", "the connecting client's IP address")
    .option("--helo <name>", "the client's HELO/EHLO name (default: the address literal)")
    .option("--mail-from <address>", "the envelope sender (default: the null sender)")
    .option("-c, --config <file>", "configuration file (default: /etc/authmilter/authmilter.yaml, embedded defaults if absent)")
    .option("--dns <server...>", "DNS servers to ask instead of the configured ones (ip, ip:port, [ipv6]:port)")
    .option("--log", "also print the log lines, as JSON, on standard error")
    .action(async (file: string, flags: VerifyFlags) => {
      const loaded = loadConfig(flags.config).config;
      // The offline command checks every message as external mail: that is what it is for.
      const config: Config = {
        ...loaded,
        internalHosts: [],
        dns: flags.dns ? { ...loaded.dns, servers: flags.dns } : loaded.dns,
      };
      const raw = readFileSync(file === "-" ? 0 : file);
      const logger = pino({ level: flags.log ? "info" : "silent" }, pino.destination(2));
      const resolver = buildResolver(config);
      try {
        const outcome = await runMessage(
          await buildAuthHandler(config, resolver, logger),
          { clientAddress: flags.ip, helo: flags.helo ?? `[${flags.ip}]`, sender: flags.mailFrom ?? "" },
          parseMessage(raw),
        );
        for (const mod of outcome.modifications) {
          if (mod.kind === "insheader" && mod.name === "Authentication-Results") console.log(`${mod.name}: ${String(mod.value)}`);
          if (mod.kind === "chgheader" && String(mod.value) === "") console.log(`(would remove ${mod.name} #${mod.index}: it claims our authserv-id)`);
        }
      } finally {
        resolver.close();
      }
    });
}
