// A private PostgreSQL cluster for the history store's tests: initdb in a temp dir, a server on
// loopback started and stopped by the test, trust authentication. Needs Debian's postgresql
// package (/usr/lib/postgresql/<major>/bin) or initdb on PATH: without it the suites that use
// this skip (PG_SKIP, with PG_LABEL saying why); under CI=true they run and fail.

import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { chown, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Client } from "pg";
import { afterEach } from "vitest";
import { freePort } from "../support/ports.ts";
import { findExecutable } from "../support/prereq.ts";

const run = promisify(execFile);
const CI = process.env["CI"] === "true";
const AS_ROOT = process.getuid?.() === 0;

/** Debian: /usr/lib/postgresql/<major>/bin, newest first; elsewhere initdb on PATH. */
function findPgBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  const majors = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of majors) if (existsSync(join(root, v, "bin", "initdb"))) return join(root, v, "bin");
  const initdb = findExecutable("initdb");
  return initdb === undefined ? undefined : join(initdb, "..");
}

function userIds(name: string): { uid: number; gid: number } | undefined {
  try {
    const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith(`${name}:`));
    const [, , uid, gid] = line?.split(":") ?? [];
    return uid === undefined || gid === undefined ? undefined : { uid: Number(uid), gid: Number(gid) };
  } catch {
    return undefined;
  }
}

const PG_BIN = findPgBin();
/** The server refuses to run as root: as root the cluster belongs to the postgres user. */
const RUN_AS = AS_ROOT ? userIds("postgres") : undefined;
const PG_MISSING =
  PG_BIN === undefined
    ? "PostgreSQL server not installed (apt-get install postgresql)"
    : AS_ROOT && RUN_AS === undefined
      ? "no postgres user to run the server as (apt-get install postgresql)"
      : "";
export const PG_SKIP = PG_MISSING !== "" && !CI;
export const PG_LABEL = PG_MISSING === "" ? "" : CI ? ` [CI: ${PG_MISSING}]` : ` [skipped: ${PG_MISSING}]`;

export interface Cluster {
  url(database: string, user?: string): string;
  /** A new empty UTF-8 database whose default collation is not bytewise (ICU en-US) where available. */
  createDatabase(options?: { encoding?: string }): Promise<string>;
  sql(url: string, text: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
  /** A connection of its own (a DBA's psql), ended in afterEach. */
  session(url: string): Promise<Client>;
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

export async function startCluster(): Promise<Cluster> {
  if (PG_MISSING !== "" || PG_BIN === undefined) throw new Error(`PostgreSQL missing under CI=true: ${PG_MISSING}`);
  const bin = PG_BIN;
  const dir = await mkdtemp(join(tmpdir(), "authmilter-pg-"));
  if (RUN_AS !== undefined) await chown(dir, RUN_AS.uid, RUN_AS.gid);
  const data = join(dir, "data");
  const asOwner = (program: string, args: string[]) =>
    RUN_AS !== undefined ? run("runuser", ["-u", "postgres", "--", join(bin, program), ...args]) : run(join(bin, program), args);
  await asOwner("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]);
  let port = 0;
  const start = async () => {
    await asOwner("pg_ctl", ["-D", data, "-w", "-l", join(dir, "server.log"), "-o", `-k ${dir} -p ${port} -c listen_addresses=127.0.0.1 -c fsync=off`, "start"]);
  };
  // The kernel's free port can be taken before the server binds it: try another.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await start();
      break;
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
  const url = (database: string, user = "postgres") => `postgres://${user}@127.0.0.1:${port}/${database}`;
  const sql = async (target: string, text: string, values: unknown[] = []) => {
    const c = new Client({ connectionString: target });
    await c.connect();
    try {
      return (await c.query(text, values)).rows as Record<string, unknown>[];
    } finally {
      await c.end();
    }
  };
  let n = 0;
  let icu: boolean | undefined;
  const sessions: Client[] = [];
  afterEach(async () => {
    for (const c of sessions.splice(0)) await c.end().catch(() => {});
  });
  return {
    url,
    async createDatabase(options = {}) {
      const name = `h${++n}`;
      const encoding = options.encoding ?? "UTF8";
      if (encoding === "UTF8" && icu !== false) {
        try {
          await sql(url("postgres"), `CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C' LOCALE_PROVIDER icu ICU_LOCALE 'en-US'`);
          icu = true;
          return url(name);
        } catch {
          icu = false; // a server without ICU: the default collation is then C
        }
      }
      await sql(url("postgres"), `CREATE DATABASE ${name} TEMPLATE template0 ENCODING '${encoding}' LOCALE 'C'`);
      return url(name);
    },
    sql,
    async session(target) {
      const c = new Client({ connectionString: target });
      c.on("error", () => {});
      await c.connect();
      sessions.push(c);
      return c;
    },
    stop: async () => {
      await asOwner("pg_ctl", ["-D", data, "-w", "-m", "fast", "stop"]);
    },
    start,
    async destroy() {
      await asOwner("pg_ctl", ["-D", data, "-w", "-m", "immediate", "stop"]).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}
