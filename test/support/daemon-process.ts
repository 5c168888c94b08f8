// The real daemon as a child process (`authmilter serve`), configured from a JS object
// written as YAML, with its JSON log lines collected.

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import { stringify } from "yaml";

const ROOT = new URL("../..", import.meta.url).pathname;
const NODE = join(ROOT, "node_modules/.bin/node");
export const CLI = join(ROOT, "src/cli/main.ts");

/**
 * `authmilter report aggregate --dry-run` over the hour around now, as the daemon's history
 * recorded it: the report files written to `out`, by name, unzipped.
 */
export async function aggregateReportsOfTheHour(db: string, out: string): Promise<Map<string, string>> {
  const since = new Date(Date.now() - 3_600_000).toISOString();
  const until = new Date(Date.now() + 3_600_000).toISOString();
  await promisify(execFile)(NODE, [CLI, "report", "aggregate", "--db", db, "--dry-run", "--out", out, "--since", since, "--until", until, "--org-email", "postmaster@example.net"]);
  return new Map(readdirSync(out).map((name) => [name, gunzipSync(readFileSync(join(out, name))).toString()]));
}

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

export interface Daemon {
  readonly process: ChildProcess;
  readonly configPath: string;
  /** The milter port (the config's socket should be inet:0@127.0.0.1). */
  readonly port: number;
  readonly logs: LogLine[];
  readonly stderr: () => string;
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<LogLine>;
  /** Rewrites the config file (for reload tests). */
  writeConfig(config: unknown): void;
  signal(sig: NodeJS.Signals): void;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  /** SIGTERM, wait for exit, remove the temp dir. */
  stop(): Promise<number | null>;
}

/** Tests never ask a real resolver: without DNS servers of its own, a daemon gets a closed loopback port. */
function loopbackDnsOnly(config: unknown): unknown {
  if (typeof config !== "object" || config === null) return config;
  const c = config as { dns?: { servers?: unknown } };
  return c.dns?.servers ? c : { ...c, dns: { ...c.dns, servers: ["127.0.0.1:9"] } };
}

export async function startDaemon(config: unknown, env: Record<string, string> = {}): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), "authmilter-daemon-"));
  const configPath = join(dir, "authmilter.yaml");
  const writeConfig = (c: unknown) => writeFileSync(configPath, typeof c === "string" ? c : stringify(loopbackDnsOnly(c)));
  writeConfig(config);
  const child = spawn(NODE, [CLI, "serve", "--config", configPath], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const logs: LogLine[] = [];
  let stderr = "";
  let waiters: Array<() => void> = [];
  let partial = "";
  child.stdout!.on("data", (d: Buffer) => {
    const lines = (partial + d.toString()).split("\n");
    partial = lines.pop()!;
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ level: 0, msg: line });
      }
    }
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  // "close", not "exit": it comes after the last of stdout is read.
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  let exitedYet = false;
  void exited.then(() => {
    exitedYet = true;
    for (const w of waiters.splice(0)) w();
  });

  const waitForLog = async (pattern: RegExp, timeoutMs = 15_000): Promise<LogLine> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = logs.find((l) => pattern.test(l.msg));
      if (found) return found;
      if (exitedYet) throw new Error(`daemon exited before logging ${pattern}; stderr: ${stderr}`);
      if (Date.now() > deadline) throw new Error(`daemon did not log ${pattern}; logs: ${logs.map((l) => l.msg).join(" | ")}; stderr: ${stderr}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 100);
        waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  };

  const listening = await waitForLog(/^listening on /);
  const port = Number(/:(\d+)@/.exec(String(listening["socket"]))?.[1]);
  return {
    process: child,
    configPath,
    port,
    logs,
    stderr: () => stderr,
    waitForLog,
    writeConfig,
    signal: (sig) => void child.kill(sig),
    exited,
    async stop() {
      if (!exitedYet) child.kill("SIGTERM");
      const code = await exited;
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}
