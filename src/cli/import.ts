// `authmilter import --opendkim /etc/opendkim.conf --opendmarc /etc/opendmarc.conf [--out FILE]`:
// writes the equivalent authmilter YAML (standard output, or FILE) and lists on standard error
// every option it could not carry over, and why.
// Exit status: 0 written, 1 an input could not be read or the output not written, 2 bad arguments.

import { writeFile } from "node:fs/promises";
import type { Command } from "commander";
import { buildAuthState } from "../auth/build.ts";
import { ConfReadError, importConfigs, type ImportResult } from "../config/import.ts";
import { parseConfig } from "../config/load.ts";
import { KeyError, TableError } from "../keys/errors.ts";
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, usageExitCodes } from "./genkey.ts";

interface ImportFlags {
  readonly opendkim?: string;
  readonly opendmarc?: string;
  readonly out?: string;
  readonly force?: boolean;
  readonly hostname?: string;
}

export function registerImport(program: Command): void {
  const cmd = program
    .command("import")
    .description("write an authmilter configuration equivalent to an opendkim.conf and an opendmarc.conf")
    .option("--opendkim <file>", "opendkim's configuration, e.g. /etc/opendkim.conf")
    .option("--opendmarc <file>", "opendmarc's configuration, e.g. /etc/opendmarc.conf")
    .option("-o, --out <file>", "write the YAML here instead of to standard output")
    .option("-f, --force", "replace --out if it exists")
    .option("--hostname <name>", 'what "HOSTNAME" in AuthservID/TrustedAuthservIDs means (default: this machine\'s name)')
    .addHelpText(
      "after",
      `
Follows KeyTable, SigningTable, InternalHosts, ExternalIgnoreList, PeerList and IgnoreHosts
files; host lists are copied into the YAML, tables are referenced as they are. Options that
could not be carried over are listed, with the reason, on standard error and as comments at
the top of the YAML.

Exit status: 0 written, 1 an input could not be read or the output could not be written,
2 bad arguments.

Example:
  authmilter import --opendkim /etc/opendkim.conf --opendmarc /etc/opendmarc.conf \\
    --out /etc/authmilter/authmilter.yaml`,
    );
  usageExitCodes(cmd).action(async (flags: ImportFlags) => {
    process.exitCode = await runImport(flags, (message) => cmd.error(`error: ${message}`, { exitCode: EXIT_USAGE }));
  });
}

async function runImport(flags: ImportFlags, usage: (message: string) => never): Promise<number> {
  if (flags.opendkim === undefined && flags.opendmarc === undefined) usage("give --opendkim FILE, --opendmarc FILE or both");
  if (flags.force === true && flags.out === undefined) usage("--force needs --out");
  let result: ImportResult;
  try {
    result = await importConfigs({
      ...(flags.opendkim !== undefined && { opendkim: flags.opendkim }),
      ...(flags.opendmarc !== undefined && { opendmarc: flags.opendmarc }),
      ...(flags.hostname !== undefined && { hostname: flags.hostname }),
    });
  } catch (err) {
    if (err instanceof ConfReadError) {
      console.error(`authmilter import: ${err.message}`);
      return EXIT_FAILED;
    }
    throw err;
  }

  if (flags.out === undefined) {
    process.stdout.write(result.yaml);
  } else {
    try {
      await writeFile(flags.out, result.yaml, { mode: 0o644, flag: flags.force === true ? "w" : "wx" });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === "EEXIST" ? "already exists; move it away or use --force" : (err as Error).message;
      console.error(`authmilter import: ${flags.out}: ${why}`);
      return EXIT_FAILED;
    }
    console.error(`authmilter import: wrote ${flags.out}`);
  }

  const lines: string[] = [];
  lines.push(`not carried over (${result.unmapped.length}):`);
  for (const u of result.unmapped) lines.push(`  ${u.where}: ${u.option} ${u.value}`, `      ${u.reason}`);
  if (result.unmapped.length === 0) lines.push("  (none)");
  lines.push(`notes (${result.notes.length}):`);
  for (const n of result.notes) lines.push(`  - ${n.where ? `${n.where}: ` : ""}${n.text}`);
  if (result.notes.length === 0) lines.push("  (none)");

  // The tables and keys the YAML names must load for the daemon to start; say so now if not
  // (keys still owned by the opendkim user are the usual case during a migration).
  try {
    await buildAuthState(parseConfig(result.yaml, flags.out ?? "(output)"));
  } catch (err) {
    if (!(err instanceof KeyError || err instanceof TableError)) throw err;
    const hint = err instanceof KeyError && /owner|owns|mode|readable|permission/i.test(err.message) ? " (keys must be owned by, and readable only by, the user authmilter runs as)" : "";
    lines.push(`warning: authmilter would not start with this file yet: ${err.message}${hint}`);
  }
  console.error(lines.join("\n"));
  return EXIT_OK;
}
