// Runs Debian's miltertest (from OpenDKIM) with a Lua script against a running milter: an MTA
// simulator independent of both Postfix and our own codec, so a bug shared by our encoder and
// decoder cannot hide behind a round-trip test.

import { fileURLToPath } from "node:url";
import { findExecutable } from "./prereq.ts";
import { run, type CommandResult } from "./run.ts";

export interface MiltertestOptions {
  /** libmilter socket form, e.g. "inet:8891@127.0.0.1"; the script sees it as the global `socket`. */
  readonly socket: string;
  /** More Lua globals (miltertest -D name=value); values arrive as strings. */
  readonly vars?: Readonly<Record<string, string>>;
  /** miltertest -v: logs every packet, useful when a script fails. */
  readonly verbose?: boolean;
  readonly timeoutMs?: number;
}

/** A script next to the end-to-end tests, e.g. scriptPath("milter-cadence.lua"). */
export function scriptPath(name: string): string {
  return fileURLToPath(new URL(`../e2e/${name}`, import.meta.url));
}

export function runMiltertest(script: string, options: MiltertestOptions): Promise<CommandResult> {
  const binary = findExecutable("miltertest") ?? "miltertest";
  const args = ["-s", script, "-D", `socket=${options.socket}`];
  for (const [name, value] of Object.entries(options.vars ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`not a Lua identifier: ${name}`);
    args.push("-D", `${name}=${value}`);
  }
  if (options.verbose === true) args.push("-v");
  return run(binary, args, { timeoutMs: options.timeoutMs ?? 30_000 });
}
