#!/usr/bin/env -S node --max-semi-space-size=4
// The command line. Thin: each command parses its options and calls one function.

import { Command } from "commander";
import { buildAuthState } from "../auth/build.ts";
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig } from "../config/load.ts";
import { KeyError, TableError } from "../keys/errors.ts";
import { VERSION } from "../version.ts";
import { registerReport } from "./report.ts";
import { registerGenkey } from "./genkey.ts";
import { registerImport } from "./import.ts";
import { registerCheck } from "./check.ts";
import { serve } from "./serve.ts";
import { registerTestkey } from "./testkey.ts";
import { registerVerify } from "./verify.ts";

const program = new Command("authmilter")
  .description("DKIM signing and DKIM/SPF/DMARC verification for Postfix, as one milter")
  .version(VERSION);

program
  .command("serve")
  .description("run the milter daemon")
  .option("-c, --config <file>", `configuration file (default: ${DEFAULT_CONFIG_PATH}, embedded defaults if absent)`)
  .option("-s, --socket <spec>", "listen here instead of the configured socket, e.g. inet:8891@127.0.0.1")
  .action(async (opts: { config?: string; socket?: string }) => {
    await serve(opts);
  });

registerVerify(program);

const config = program.command("config").description("configuration tools");
config
  .command("check")
  .description("validate a configuration file and report the first error with file, line and column")
  .option("-c, --config <file>", `configuration file (default: ${DEFAULT_CONFIG_PATH})`)
  .action(async (opts: { config?: string }) => {
    const loaded = loadConfig(opts.config ?? DEFAULT_CONFIG_PATH);
    // Tables and keys too: a key that fails to load must fail here, not on a message.
    const state = await buildAuthState(loaded.config);
    console.log(`${loaded.source}: OK (${state.signing.keyCount} signing key(s) loaded)`);
  });

registerReport(program);
registerGenkey(program);
registerTestkey(program);
registerImport(program);
registerCheck(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof ConfigError || err instanceof KeyError || err instanceof TableError) {
    console.error(`authmilter: configuration error: ${err.message}`);
    process.exit(78); // EX_CONFIG: systemd and scripts can tell a bad config from a crash
  }
  console.error(`authmilter: ${(err as Error).message}`);
  process.exit(1);
}
