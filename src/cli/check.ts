// `authmilter check [--config F] [--json]`: the daily check of what is published in DNS for every
// signing domain (DKIM key matches, SPF exists and authorizes the outbound IPs, DMARC is valid).
// Exit status: 0 all well, 1 a problem found (or a lookup failed), 2 bad arguments or configuration.

import { isIP } from "node:net";
import type { Command } from "commander";
import { buildResolver } from "../auth/build.ts";
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { KeyError, TableError } from "../keys/errors.ts";
import { formatReport, runChecks, signingTargets } from "../ops/check.ts";
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, usageExitCodes } from "./genkey.ts";

interface CheckFlags {
  readonly config?: string;
  readonly json?: boolean;
  readonly ip?: string[];
}

export function registerCheck(program: Command): void {
  const cmd = program
    .command("check")
    .description("check the DNS of every signing domain: DKIM key matches, SPF authorizes our IPs, DMARC record valid")
    .option("-c, --config <file>", `configuration file (default: ${DEFAULT_CONFIG_PATH})`)
    .option("--json", "print the results as JSON")
    .option("--ip <address...>", "outbound IP address(es) SPF must authorize (default: check.outboundIps of the configuration)")
    .addHelpText(
      "after",
      `
Signing domains are those of signing.keys and every KeyTable entry with a fixed domain (not "%").
Lookups go through the configured resolver (dns.servers).

Exit status: 0 all checks OK; 1 a problem (key mismatch, missing or revoked key, missing SPF,
an outbound IP SPF does not authorize, missing or invalid DMARC) or a failed lookup;
2 bad arguments or a configuration that cannot be read.

Example (crontab: prints, and so mails, the table only when something is wrong):
  0 6 * * *  out=$(authmilter check) || echo "$out"`,
    );
  usageExitCodes(cmd).action(async (flags: CheckFlags) => {
    process.exitCode = await check(flags, (message) => cmd.error(`error: ${message}`, { exitCode: EXIT_USAGE }));
  });
}

async function check(flags: CheckFlags, usage: (message: string) => never): Promise<number> {
  for (const ip of flags.ip ?? []) if (isIP(ip) === 0) usage(`--ip: "${ip}" is not an IP address`);
  const configError = (message: string): number => {
    console.error(`authmilter check: configuration error: ${message}`);
    return EXIT_USAGE;
  };
  let config: Config;
  try {
    config = loadConfig(flags.config ?? DEFAULT_CONFIG_PATH).config;
    const { targets } = await signingTargets(config);
    if (targets.length === 0) return configError("no signing domain to check (signing.keys and signing.keyTable name none with a fixed domain)");
  } catch (err) {
    if (err instanceof ConfigError || err instanceof TableError || err instanceof KeyError) return configError(err.message);
    throw err;
  }
  const resolver = buildResolver(config);
  try {
    const report = await runChecks(config, { resolver, ...(flags.ip !== undefined && { outboundIps: flags.ip }) });
    if (flags.json === true) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else process.stdout.write(formatReport(report));
    return report.ok ? EXIT_OK : EXIT_FAILED;
  } finally {
    resolver.close();
  }
}
