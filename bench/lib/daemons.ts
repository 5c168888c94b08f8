// Starting and stopping the milters under test: authmilter (this checkout), and Debian's
// opendkim and opendmarc configured to do the same job.

import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { findExecutable } from "../../test/support/prereq.ts";
import { freePort, waitForPort } from "../../test/support/ports.ts";
import { run } from "../../test/support/run.ts";
import { AUTHSERV_ID, LOCAL_DOMAIN, SELECTOR } from "./fixtures.ts";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const NODE = join(ROOT, "node_modules/.bin/node");

/**
 * How authmilter is run: "dist", compiled with the checkout's tsconfig.build.json, as the
 * systemd unit and the Docker image run it; or "src", through Node's type stripping, as
 * `npm start` does (~30 MB more per process, and slower to start).
 */
export type Entry = "dist" | "src";

export function parseEntry(v: string | undefined): Entry {
  if (v !== "dist" && v !== "src") throw new Error(`--entry: ${v} is neither dist nor src`);
  return v;
}

const built = new Map<string, Promise<void>>();

/** The CLI of the checkout whose daemon is measured (default: this one; see --root), built if need be. */
export async function cliOf(root: string | undefined, entry: Entry): Promise<string> {
  const dir = root ?? ROOT;
  if (entry === "src") return join(dir, "src/cli/main.ts");
  let build = built.get(dir);
  if (!build) {
    build = run(NODE, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(dir, "tsconfig.build.json")], { timeoutMs: 300_000 }).then((r) => {
      if (r.code !== 0) throw new Error(`building ${dir} failed:\n${r.stdout}${r.stderr}`);
    });
    built.set(dir, build);
  }
  await build;
  return join(dir, "dist/cli/main.js");
}
export const OPENDKIM = findExecutable("opendkim");
export const OPENDMARC = findExecutable("opendmarc");
const UNSHARE = findExecutable("unshare");
const PSL = "/usr/share/publicsuffix/public_suffix_list.dat";

export interface Daemon {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** The daemon's own log (stdout and stderr), for diagnosis. */
  readonly logFile: string;
  /** Prometheus endpoint, when the daemon has one. */
  readonly metricsUrl?: string;
  stop(): Promise<void>;
}

let seq = 0;

async function launch(name: string, command: string, args: readonly string[], dir: string, port: number, extra: { metricsUrl?: string } = {}): Promise<Daemon> {
  const logFile = join(dir, `${name}.${++seq}.log`);
  const fd = openSync(logFile, "w");
  const child: ChildProcess = spawn(command, args, { stdio: ["ignore", fd, fd], cwd: dir, detached: false });
  closeSync(fd);
  let exited: string | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      exited = `${name} exited (${code ?? signal})`;
      resolve();
    });
  });
  const stop = async () => {
    if (exited !== undefined) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    await exit;
    clearTimeout(timer);
  };
  try {
    await waitForPort(port, 20_000, () => (exited === undefined ? undefined : `${exited}:\n${readFileSync(logFile, "utf8").slice(-3000)}`));
  } catch (err) {
    await stop();
    throw err;
  }
  return { name, pid: child.pid!, port, logFile, ...extra, stop };
}

// ---- authmilter ------------------------------------------------------------------------------

export interface AuthmilterOptions {
  readonly dir: string;
  readonly dnsServer: string;
  readonly keyFile: string;
  /** Clients whose mail is signed; the rest is verified. */
  readonly internalHosts: readonly string[];
  readonly logLevel: string;
  /** e.g. ["--cpu-prof", "--cpu-prof-dir=..."] */
  readonly nodeArgs?: readonly string[];
  /** Add metrics.listen (only when the config schema knows it: see metricsSupported). */
  readonly metrics?: boolean;
  /** Another checkout (e.g. a snapshot of a commit) to run instead of this one. */
  readonly root?: string;
  readonly entry: Entry;
  /** milter.workers (cluster size; 0 = one per core), for checkouts that have the option. */
  readonly workers?: number;
}

function authmilterConfig(o: AuthmilterOptions, port: number, metricsPort?: number): unknown {
  return {
    mode: "sign+verify",
    hostname: AUTHSERV_ID,
    authservId: AUTHSERV_ID,
    internalHosts: o.internalHosts,
    signing: { keys: [{ domain: LOCAL_DOMAIN, selector: SELECTOR, keyFile: o.keyFile }] },
    dns: { servers: [o.dnsServer] },
    milter: { socket: `inet:${port}@127.0.0.1`, ...(o.workers !== undefined ? { workers: o.workers } : {}) },
    log: { level: o.logLevel },
    ...(metricsPort !== undefined ? { metrics: { listen: `127.0.0.1:${metricsPort}` } } : {}),
  };
}

const metricsKnown = new Map<string, boolean>();

/** Whether the checkout's configuration accepts metrics.listen (asked once, with `config check`). */
export async function metricsSupported(o: AuthmilterOptions): Promise<boolean> {
  const cli = await cliOf(o.root, o.entry);
  let known = metricsKnown.get(cli);
  if (known === undefined) {
    const file = join(o.dir, "metrics-probe.yaml");
    writeFileSync(file, stringify(authmilterConfig(o, 1, 1)));
    const r = await run(NODE, [cli, "config", "check", "--config", file], { timeoutMs: 30_000 });
    known = r.code === 0;
    metricsKnown.set(cli, known);
  }
  return known;
}

export async function startAuthmilter(o: AuthmilterOptions): Promise<Daemon> {
  const port = await freePort();
  const metricsPort = o.metrics && (await metricsSupported(o)) ? await freePort() : undefined;
  const configFile = join(o.dir, `authmilter.${port}.yaml`);
  writeFileSync(configFile, stringify(authmilterConfig(o, port, metricsPort)));
  return launch("authmilter", NODE, [...(o.nodeArgs ?? []), await cliOf(o.root, o.entry), "serve", "--config", configFile], o.dir, port, {
    ...(metricsPort !== undefined ? { metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` } : {}),
  });
}

/** bench/null-milter.ts: authmilter's wire layer with a handler that does nothing (this checkout's src/milter). */
export async function startNullMilter(dir: string): Promise<Daemon> {
  const port = await freePort();
  return launch("null-milter", NODE, [join(ROOT, "bench/null-milter.ts"), String(port)], dir, port);
}

/** Sum of a counter (all label sets) from a Prometheus text page. */
export function metricValue(page: string, name: string): number {
  let sum = 0;
  for (const line of page.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1)) || 0;
  }
  return sum;
}

export async function scrape(url: string | undefined): Promise<string | undefined> {
  if (url === undefined) return undefined;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3_000) });
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}

// ---- opendkim ----------------------------------------------------------------------------------

/**
 * How opendkim (libunbound inside) is pointed at the loopback DNS server:
 * - nameservers: `Nameservers 127.0.0.1@PORT` (ub_ctx_set_fwd takes addr@port);
 * - unbound-conf: `ResolverConfiguration FILE` with a forward-zone to 127.0.0.1@PORT
 *   (the reference notes crashes under concurrency with this one).
 */
export type OpendkimDns = "nameservers" | "unbound-conf";

export interface OpendkimOptions {
  readonly dir: string;
  readonly dnsHost: string;
  readonly dnsPort: number;
  readonly dnsMode: OpendkimDns;
  /** PKCS#1 PEM of the signing key. */
  readonly keyFile: string;
  readonly internalHosts: readonly string[];
}

export async function startOpendkim(o: OpendkimOptions): Promise<Daemon> {
  if (OPENDKIM === undefined) throw new Error("opendkim is not installed (apt-get install opendkim)");
  const port = await freePort();
  const conf = join(o.dir, `opendkim.${port}.conf`);
  const lines = [
    "Mode sv",
    "Syslog no",
    `Socket inet:${port}@127.0.0.1`,
    `AuthservID ${AUTHSERV_ID}`,
    `Domain ${LOCAL_DOMAIN}`,
    `Selector ${SELECTOR}`,
    `KeyFile ${o.keyFile}`,
    // authmilter's defaults: relaxed/relaxed, rsa-sha256 (Debian's file says relaxed/simple).
    "Canonicalization relaxed/relaxed",
    "SignatureAlgorithm rsa-sha256",
    // Debian's /etc/opendkim.conf.
    "OversignHeaders From",
    `InternalHosts csl:${o.internalHosts.join(",")}`,
    // The key lives in a 0700 temp dir of root's; opendkim runs as root here.
    "RequireSafeKeys false",
  ];
  if (o.dnsMode === "nameservers") {
    lines.push(`Nameservers ${o.dnsHost}@${o.dnsPort}`);
  } else {
    const unboundConf = join(o.dir, `unbound.${port}.conf`);
    writeFileSync(
      unboundConf,
      [
        "server:",
        "  do-not-query-localhost: no",
        "forward-zone:",
        '  name: "."',
        `  forward-addr: ${o.dnsHost}@${o.dnsPort}`,
        "",
      ].join("\n"),
    );
    lines.push(`ResolverConfiguration ${unboundConf}`);
  }
  writeFileSync(conf, `${lines.join("\n")}\n`);
  return launch("opendkim", OPENDKIM, ["-f", "-x", conf], o.dir, port);
}

// ---- opendmarc ---------------------------------------------------------------------------------

export interface OpendmarcOptions {
  readonly dir: string;
  /** An address on port 53 (bench/dns-child.ts's relay): what a resolv.conf can name. */
  readonly relay: string;
  /** IgnoreHosts: clients opendmarc accepts at CONNECT without looking (its default: 127.0.0.1). */
  readonly ignoreHosts: readonly string[];
}

/**
 * opendmarc 1.4.2 has no nameserver option: libspf2 and its DMARC lookups use the system
 * resolver. It runs in a private mount namespace where /etc/resolv.conf is a bind mount of a
 * file naming the relay, so nothing outside this process sees the change.
 */
export async function startOpendmarc(o: OpendmarcOptions): Promise<Daemon> {
  if (OPENDMARC === undefined) throw new Error("opendmarc is not installed (apt-get install opendmarc)");
  if (UNSHARE === undefined) throw new Error("unshare (util-linux) is needed to give opendmarc its own resolv.conf");
  const port = await freePort();
  const resolv = join(o.dir, `resolv.${port}.conf`);
  writeFileSync(resolv, `nameserver ${o.relay}\noptions timeout:2 attempts:2\n`);
  const ignore = join(o.dir, `opendmarc-ignore.${port}`);
  writeFileSync(ignore, `${o.ignoreHosts.join("\n")}\n`);
  const conf = join(o.dir, `opendmarc.${port}.conf`);
  const lines = [
    `Socket inet:${port}@127.0.0.1`,
    "Syslog false",
    `AuthservID ${AUTHSERV_ID}`,
    // opendkim's Authentication-Results carry our authserv-id: DMARC takes its DKIM result.
    `TrustedAuthservIDs ${AUTHSERV_ID}`,
    // authmilter's defaults: SPF checked by the milter itself, RFC 5322 header checks on,
    // DMARC results reported, not enforced.
    "SPFSelfValidate true",
    "RequiredHeaders true",
    "RejectFailures false",
    "FailureReports false",
    `IgnoreHosts ${ignore}`,
    ...(existsSync(PSL) ? [`PublicSuffixList ${PSL}`] : []),
  ];
  writeFileSync(conf, `${lines.join("\n")}\n`);
  const script = `mount --bind "$1" /etc/resolv.conf && exec "$2" -f -c "$3"`;
  return launch("opendmarc", UNSHARE, ["-m", "--propagation", "private", "sh", "-c", script, "sh", resolv, OPENDMARC, conf], o.dir, port);
}
