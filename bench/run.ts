// `npm run bench`: authmilter against opendkim → opendmarc over the milter protocol.
//
// For each path (verify: an external client's DKIM-signed message with SPF and DMARC records;
// sign: an internal client's message to sign), message size and concurrency, every target is
// started fresh, checked once (the headers it adds must say pass / carry a signature), warmed
// up, then loaded for a fixed time by `concurrency` workers, each running one SMTP session's
// milter traffic per message (connect, negotiate, CONNECT … EOB, QUIT), as Postfix does for a
// client that sends one message per session.
//
// Reported per cell: messages/s, added latency (first connect → last milter's EOB decision)
// p50/p99/max, the daemons' RSS (idle → peak, summed over each daemon and its children,
// sampled every 20 ms), CPU time per message and DNS queries per message reaching the server.
//
//   npm run bench                                   the full matrix (long: ~20 min)
//   npm run bench -- --quick                        fewer cells, shorter runs (a few minutes)
//   npm run bench -- --path verify --size 20k --concurrency 1,32
//   npm run bench -- --target authmilter --cpu-prof /tmp/prof   (then bench/profile-report.ts)
//   npm run bench -- --help

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startBenchDns, type BenchDns } from "./lib/dns.ts";
import { makeKeys, makeMessage, SIZES, type BenchKeys, type BenchMessage, type BenchPath } from "./lib/fixtures.ts";
import {
  metricValue,
  ROOT,
  OPENDKIM,
  OPENDMARC,
  scrape,
  startAuthmilter,
  startOpendkim,
  startOpendmarc,
  type Daemon,
  type OpendkimDns,
  parseEntry,
  type Entry,
} from "./lib/daemons.ts";
import { closeAllClients, runSession, type MilterSpec, type WriteMode } from "./lib/driver.ts";
import { processTree, RssSampler, treeCpuSeconds, treeMemory, treePss } from "./lib/procs.ts";
import { describeMachine, fmt, machine, markdownTable, percentile } from "./lib/stats.ts";

type TargetName = "authmilter" | "chain" | "opendkim";

const HELP = `usage: npm run bench -- [options]
  --quick                  sizes 2k,20k,1m,20m at concurrency 1 and 32, 2 s per cell
  --path LIST              verify,sign (default both)
  --size LIST              2k,20k,1m,20m (default all)
  --concurrency LIST       default 1,8,32,128
  --target LIST            authmilter,chain,opendkim (default: authmilter and chain; sign
                           also against opendkim alone). chain = opendkim → opendmarc.
  --duration SECONDS       measured time per cell (default 5; --quick 2)
  --warmup SECONDS         warm-up per cell at concurrency min(c, 8) (default 1; --quick 0.5)
  --repeat N               measure every cell N times, targets interleaved; report the median
                           run by msgs/s (default 1)
  --max-messages N         cap per cell (default 20000)
  --messages-per-session N messages per milter connection (default 1, as Postfix with one
                           message per SMTP session)
  --writes MODE            postfix (default): packets buffered and written as Postfix's milter8
                           does (Nagle on, flush before each awaited reply, at the smtpd →
                           cleanup hand-off after DATA, and every 4 × MSS); nodelay: the test
                           client's one write per packet with TCP_NODELAY
  --log-level LEVEL        authmilter's log.level (default info; the log goes to a file)
  --opendkim-dns MODE      nameservers (default) or unbound-conf
  --root DIR               run the authmilter checkout in DIR (e.g. a "git archive" of another
                           commit, with node_modules) instead of this one
  --workers N              set authmilter's milter.workers (cluster size; 0 = one per core)
  --entry dist|src         run authmilter compiled (default; as systemd and Docker run it) or
                           through Node's type stripping (as npm start does)
  --cpu-prof DIR           run authmilter under node --cpu-prof, one profile per cell in DIR
  --out FILE               also write the markdown report to FILE
  --json FILE              also write every measurement as JSON
  --keep                   keep the temp dir (configs, daemon logs)`;

interface Options {
  readonly paths: BenchPath[];
  readonly sizes: string[];
  readonly concurrency: number[];
  readonly targets: TargetName[] | undefined;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly maxMessages: number;
  readonly repeat: number;
  readonly messagesPerSession: number;
  readonly writeMode: WriteMode;
  readonly logLevel: string;
  readonly opendkimDns: OpendkimDns;
  readonly cpuProf: string | undefined;
  readonly root: string | undefined;
  readonly workers: number | undefined;
  readonly entry: Entry;
  readonly out: string | undefined;
  readonly json: string | undefined;
  readonly keep: boolean;
  readonly quick: boolean;
}

function list(value: string | undefined, fallback: string[]): string[] {
  return value === undefined ? fallback : value.split(",").map((s) => s.trim().toLowerCase()).filter((s) => s !== "");
}

function workersOf(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 256) throw new Error(`--workers: ${v} is not a whole number in 0..256`);
  return n;
}

function writeModeOf(v: string | undefined): WriteMode {
  if (v !== "postfix" && v !== "nodelay") throw new Error(`--writes: ${v} is neither postfix nor nodelay`);
  return v;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      path: { type: "string" },
      size: { type: "string" },
      concurrency: { type: "string" },
      target: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      "max-messages": { type: "string" },
      repeat: { type: "string" },
      "messages-per-session": { type: "string" },
      writes: { type: "string", default: "postfix" },
      "log-level": { type: "string", default: "info" },
      "opendkim-dns": { type: "string", default: "nameservers" },
      "cpu-prof": { type: "string" },
      root: { type: "string" },
      workers: { type: "string" },
      entry: { type: "string", default: "dist" },
      out: { type: "string" },
      json: { type: "string" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  const quick = values.quick === true;
  const paths = list(values.path, ["verify", "sign"]);
  for (const p of paths) if (p !== "verify" && p !== "sign") throw new Error(`--path: unknown path ${p}`);
  const sizes = list(values.size, Object.keys(SIZES));
  for (const s of sizes) if (SIZES[s] === undefined) throw new Error(`--size: unknown size ${s} (one of ${Object.keys(SIZES).join(", ")})`);
  const concurrency = list(values.concurrency, quick ? ["1", "32"] : ["1", "8", "32", "128"]).map((c) => {
    const n = Number(c);
    if (!Number.isInteger(n) || n < 1 || n > 1024) throw new Error(`--concurrency: ${c} is not a whole number in 1..1024`);
    return n;
  });
  const targets = values.target === undefined ? undefined : (list(values.target, []) as TargetName[]);
  for (const t of targets ?? []) if (!["authmilter", "chain", "opendkim"].includes(t)) throw new Error(`--target: unknown target ${t}`);
  const seconds = (v: string | undefined, fallback: number, name: string) => {
    const n = v === undefined ? fallback : Number(v);
    if (!Number.isFinite(n) || n <= 0 || n > 3600) throw new Error(`--${name}: ${v} is not a number of seconds in (0, 3600]`);
    return Math.round(n * 1000);
  };
  const count = (v: string | undefined, fallback: number, name: string) => {
    const n = v === undefined ? fallback : Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 10_000_000) throw new Error(`--${name}: ${v} is not a whole number ≥ 1`);
    return n;
  };
  const dnsMode = values["opendkim-dns"];
  if (dnsMode !== "nameservers" && dnsMode !== "unbound-conf") throw new Error(`--opendkim-dns: ${dnsMode} is neither nameservers nor unbound-conf`);
  return {
    paths: paths as BenchPath[],
    sizes,
    concurrency,
    targets,
    durationMs: seconds(values.duration, quick ? 2 : 5, "duration"),
    warmupMs: seconds(values.warmup, quick ? 0.5 : 1, "warmup"),
    maxMessages: count(values["max-messages"], 20_000, "max-messages"),
    repeat: count(values.repeat, 1, "repeat"),
    messagesPerSession: count(values["messages-per-session"], 1, "messages-per-session"),
    writeMode: writeModeOf(values.writes),
    logLevel: values["log-level"] ?? "info",
    opendkimDns: dnsMode,
    cpuProf: values["cpu-prof"],
    root: values.root,
    entry: parseEntry(values.entry),
    workers: workersOf(values.workers),
    out: values.out,
    json: values.json,
    keep: values.keep === true,
    quick,
  };
}

// ---- one cell ------------------------------------------------------------------------------

interface LoadResult {
  readonly completed: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly elapsedMs: number;
  readonly latencies: number[];
  readonly maxOptnegMs: number;
  /** CPU the load generator itself used, as a share of one core. */
  readonly generatorCpu: number;
}

/** After the measured time, sessions still running get this long before their sockets are cut. */
const STRAGGLER_MS = 330_000;

async function runLoad(specs: readonly MilterSpec[], message: BenchMessage, concurrency: number, durationMs: number, maxMessages: number, perSession: number, writeMode: WriteMode): Promise<LoadResult> {
  const latencies: number[] = [];
  let maxOptnegMs = 0;
  let started = 0;
  let errors = 0;
  let firstError: string | undefined;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + durationMs;
  const cut = setTimeout(() => {
    firstError ??= `cut after ${(durationMs + STRAGGLER_MS) / 1000} s`;
    closeAllClients();
  }, durationMs + STRAGGLER_MS);
  const worker = async () => {
    while (performance.now() < deadline && started < maxMessages) {
      started += perSession;
      try {
        for (const o of await runSession(specs, message, { messages: perSession, writeMode })) {
          latencies.push(o.latencyMs);
          maxOptnegMs = Math.max(maxOptnegMs, o.optnegMs);
        }
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
        // A refusing daemon must not turn the loop into a busy spin.
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearTimeout(cut);
  const elapsedMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { completed: latencies.length, errors, firstError, elapsedMs, latencies, maxOptnegMs, generatorCpu: (cpu.user + cpu.system) / 1000 / elapsedMs };
}

interface CellResult {
  readonly target: TargetName;
  readonly path: BenchPath;
  readonly size: string;
  readonly messageBytes: number;
  readonly concurrency: number;
  readonly messages: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly seconds: number;
  readonly msgsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Slowest OPTNEG answer (connection setup) in the measured phase. */
  readonly maxOptnegMs: number;
  readonly idleRssMb: number;
  readonly peakRssMb: number;
  /** Per daemon (chain: opendkim, opendmarc). */
  readonly peakRssPerDaemonMb: number[];
  readonly hwmSumMb: number;
  /** Summed PSS (shared pages counted once), idle and peak (sampled every 500 ms). */
  readonly idlePssMb: number;
  readonly peakPssMb: number;
  readonly cpuMsPerMsg: number;
  readonly dnsQueriesPerMsg: number;
  readonly dnsCacheHitRatio?: number;
  readonly generatorCpu: number;
  /** Why the one-message check failed, when it did (the numbers then measure something else). */
  readonly invalid?: string;
  readonly sample?: string;
  /** msgs/s of every repeat (--repeat); the row is the median one. */
  readonly runs?: number[];
}

interface Context {
  readonly dir: string;
  readonly dns: BenchDns;
  readonly keys: BenchKeys;
  readonly opts: Options;
}

async function startTarget(ctx: Context, target: TargetName, cellName: string): Promise<Daemon[]> {
  const { dir, dns, keys, opts } = ctx;
  const internalHosts = ["127.0.0.1"];
  const daemons: Daemon[] = [];
  try {
    if (target === "authmilter") {
      let nodeArgs: string[] = [];
      if (opts.cpuProf !== undefined) {
        const profDir = join(opts.cpuProf, cellName);
        mkdirSync(profDir, { recursive: true });
        nodeArgs = ["--cpu-prof", `--cpu-prof-dir=${profDir}`];
      }
      daemons.push(
        await startAuthmilter({ dir, dnsServer: `${dns.host}:${dns.port}`, keyFile: keys.localPkcs8File, internalHosts, logLevel: opts.logLevel, nodeArgs, metrics: true, entry: opts.entry, ...(opts.root !== undefined ? { root: opts.root } : {}), ...(opts.workers !== undefined ? { workers: opts.workers } : {}) }),
      );
    } else {
      daemons.push(await startOpendkim({ dir, dnsHost: dns.host, dnsPort: dns.port, dnsMode: opts.opendkimDns, keyFile: keys.localPkcs1File, internalHosts }));
      if (target === "chain") daemons.push(await startOpendmarc({ dir, relay: dns.relay!, ignoreHosts: internalHosts }));
    }
    return daemons;
  } catch (err) {
    for (const d of daemons) await d.stop();
    throw err;
  }
}

function check(path: BenchPath, headers: ReadonlyArray<readonly [string, string]>): string | undefined {
  if (path === "verify") {
    const ar = headers.filter(([n]) => n.toLowerCase() === "authentication-results").map(([, v]) => v.replace(/\s+/g, " ")).join(" ");
    const missing = ["dkim=pass", "spf=pass", "dmarc=pass"].filter((r) => !ar.includes(r));
    return missing.length === 0 ? undefined : `Authentication-Results lack ${missing.join(", ")}`;
  }
  const sig = headers.find(([n, v]) => n.toLowerCase() === "dkim-signature" && /\bd=example\.com;/.test(v.replace(/\s+/g, " ")));
  return sig === undefined ? "no DKIM-Signature with d=example.com was added" : undefined;
}

function addedHeaders(message: BenchMessage, headers: ReadonlyArray<readonly [string, string]>): string {
  const before = new Set(message.headers.map(([n, v]) => `${n}:${v}`));
  return headers
    .filter(([n, v]) => !before.has(`${n}:${v}`))
    .map(([n, v]) => `${n}:${v.replace(/\r\n/g, "\n")}`)
    .join("\n");
}

async function measureCell(ctx: Context, target: TargetName, path: BenchPath, size: string, concurrency: number): Promise<CellResult> {
  const { opts, dns } = ctx;
  const message = makeMessage(path, SIZES[size]!, ctx.keys);
  const cellName = `${path}-${size}-c${concurrency}`;
  const daemons = await startTarget(ctx, target, cellName);
  try {
    const specs: MilterSpec[] = daemons.map((d) => ({ name: d.name, target: { host: "127.0.0.1", port: d.port } }));
    const roots = daemons.map((d) => d.pid);
    await new Promise((r) => setTimeout(r, 300));
    const idleTree = roots.flatMap((r) => processTree(r));
    const idleKb = treeMemory(idleTree).rssKb;
    const idlePssKb = treePss(idleTree);
    const sampler = new RssSampler(roots);

    // One message, looked at: are we measuring the real work?
    let invalid: string | undefined;
    let sample: string | undefined;
    try {
      const [first] = await runSession(specs, message, { collectHeaders: true, writeMode: opts.writeMode });
      sample = addedHeaders(message, first!.headers!);
      invalid = check(path, first!.headers!);
    } catch (err) {
      invalid = `the check message failed: ${(err as Error).message}`;
    }

    await runLoad(specs, message, Math.min(concurrency, 8), opts.warmupMs, opts.maxMessages, opts.messagesPerSession, opts.writeMode);

    dns.reset();
    const metricsBefore = await scrape(daemons[0]!.metricsUrl);
    const cpuBefore = treeCpuSeconds(roots.flatMap((r) => processTree(r)));
    const load = await runLoad(specs, message, concurrency, opts.durationMs, opts.maxMessages, opts.messagesPerSession, opts.writeMode);
    const cpuAfter = treeCpuSeconds(roots.flatMap((r) => processTree(r)));
    const metricsAfter = await scrape(daemons[0]!.metricsUrl);
    const counts = await dns.counts();
    const peak = sampler.stop();
    const hwmKb = treeMemory(roots.flatMap((r) => processTree(r))).hwmKb;

    let dnsCacheHitRatio: number | undefined;
    if (metricsBefore !== undefined && metricsAfter !== undefined) {
      const hits = metricValue(metricsAfter, "authmilter_dns_cache_hits_total") - metricValue(metricsBefore, "authmilter_dns_cache_hits_total");
      const misses = metricValue(metricsAfter, "authmilter_dns_cache_misses_total") - metricValue(metricsBefore, "authmilter_dns_cache_misses_total");
      if (hits + misses > 0) dnsCacheHitRatio = hits / (hits + misses);
    }
    const sorted = load.latencies.slice().sort((a, b) => a - b);
    const queries = Object.values(counts).reduce((a, b) => a + b, 0);
    return {
      target,
      path,
      size,
      messageBytes: message.size,
      concurrency,
      messages: load.completed,
      errors: load.errors,
      ...(load.firstError !== undefined ? { firstError: load.firstError } : {}),
      seconds: load.elapsedMs / 1000,
      msgsPerSec: load.completed / (load.elapsedMs / 1000),
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      maxMs: sorted.at(-1) ?? Number.NaN,
      maxOptnegMs: load.maxOptnegMs,
      idleRssMb: idleKb / 1024,
      peakRssMb: peak.totalKb / 1024,
      peakRssPerDaemonMb: peak.perRootKb.map((k) => k / 1024),
      hwmSumMb: hwmKb / 1024,
      idlePssMb: idlePssKb / 1024,
      peakPssMb: peak.pssKb / 1024,
      cpuMsPerMsg: load.completed > 0 ? ((cpuAfter - cpuBefore) * 1000) / load.completed : Number.NaN,
      dnsQueriesPerMsg: load.completed > 0 ? queries / load.completed : Number.NaN,
      ...(dnsCacheHitRatio !== undefined ? { dnsCacheHitRatio } : {}),
      generatorCpu: load.generatorCpu,
      ...(invalid !== undefined ? { invalid } : {}),
      ...(sample !== undefined ? { sample } : {}),
    };
  } finally {
    for (const d of daemons.slice().reverse()) await d.stop();
  }
}

// ---- report ----------------------------------------------------------------------------------

function latencyCell(r: CellResult | undefined): string {
  return r === undefined ? "–" : `${fmt(r.p50Ms)} / ${fmt(r.p99Ms)} / ${fmt(r.maxMs)}`;
}

function rssCell(r: CellResult | undefined): string {
  if (r === undefined) return "–";
  const per = r.peakRssPerDaemonMb.length > 1 ? ` (${r.peakRssPerDaemonMb.map((m) => fmt(m, 1)).join("+")})` : "";
  return `${fmt(r.idleRssMb, 1)} → ${fmt(r.peakRssMb, 1)}${per}`;
}

/** PSS counts pages that cluster workers share once; shown for ours, where several processes share them. */
function pssCell(r: CellResult | undefined): string {
  return r === undefined ? "–" : `${fmt(r.idlePssMb, 1)} → ${fmt(r.peakPssMb, 1)}`;
}

function rateCell(r: CellResult | undefined): string {
  if (r === undefined) return "–";
  const flags = [r.invalid ? "INVALID" : "", r.errors > 0 ? `${r.errors} err` : ""].filter((f) => f !== "").join(", ");
  return `${fmt(r.msgsPerSec)}${flags ? ` (${flags})` : ""}`;
}

function ratio(a: CellResult | undefined, b: CellResult | undefined): string {
  if (a === undefined || b === undefined || !(b.msgsPerSec > 0)) return "–";
  return `${fmt(a.msgsPerSec / b.msgsPerSec)}×`;
}

function report(results: readonly CellResult[], opts: Options, header: string): string {
  const out: string[] = [header, ""];
  const key = (r: CellResult) => `${r.path}|${r.size}|${r.concurrency}`;
  const cells = new Map<string, Partial<Record<TargetName, CellResult>>>();
  for (const r of results) {
    const row = cells.get(key(r)) ?? {};
    row[r.target] = r;
    cells.set(key(r), row);
  }
  for (const path of opts.paths) {
    const rows = [...cells.entries()].filter(([k]) => k.startsWith(`${path}|`));
    if (rows.length === 0) continue;
    if (!rows.some(([, r]) => r.chain || r.opendkim)) {
      out.push(`### ${path} path: authmilter`, "");
      out.push(
        markdownTable(
          ["size", "c", "msgs/s", "p50/p99/max ms", "RSS idle → peak MB", "PSS idle → peak MB", "CPU ms/msg", "DNS q/msg"],
          rows.map(([k, r]) => {
            const [, size, c] = k.split("|");
            const ours = r.authmilter;
            return [size!, c!, rateCell(ours), latencyCell(ours), rssCell(ours), pssCell(ours), fmt(ours?.cpuMsPerMsg ?? Number.NaN), fmt(ours?.dnsQueriesPerMsg ?? Number.NaN)];
          }),
        ),
        "",
      );
      continue;
    }
    const theirsName: TargetName = rows.some(([, r]) => r.chain) ? "chain" : "opendkim";
    const theirsLabel = theirsName === "chain" ? "opendkim→opendmarc" : "opendkim";
    out.push(`### ${path} path: authmilter vs ${theirsLabel}`, "");
    out.push(
      markdownTable(
        ["size", "c", "ours msgs/s", `${theirsLabel} msgs/s`, "ratio", "ours p50/p99/max ms", "theirs p50/p99/max ms", "ours RSS idle → peak MB", "ours PSS idle → peak MB", "theirs RSS idle → peak MB", "CPU ms/msg ours / theirs", "DNS q/msg ours / theirs"],
        rows.map(([k, r]) => {
          const [, size, c] = k.split("|");
          const ours = r.authmilter;
          const theirs = r[theirsName];
          return [
            size!,
            c!,
            rateCell(ours),
            rateCell(theirs),
            ratio(ours, theirs),
            latencyCell(ours),
            latencyCell(theirs),
            rssCell(ours),
            pssCell(ours),
            rssCell(theirs),
            `${fmt(ours?.cpuMsPerMsg ?? Number.NaN)} / ${fmt(theirs?.cpuMsPerMsg ?? Number.NaN)}`,
            `${fmt(ours?.dnsQueriesPerMsg ?? Number.NaN)} / ${fmt(theirs?.dnsQueriesPerMsg ?? Number.NaN)}`,
          ];
        }),
      ),
      "",
    );
    if (theirsName === "chain" && rows.some(([, r]) => r.opendkim)) {
      out.push(`### ${path} path: authmilter vs opendkim alone`, "");
      out.push(
        markdownTable(
          ["size", "c", "ours msgs/s", "opendkim msgs/s", "ratio", "opendkim p50/p99/max ms", "opendkim RSS idle → peak MB", "opendkim CPU ms/msg"],
          rows
            .filter(([, r]) => r.opendkim)
            .map(([k, r]) => {
              const [, size, c] = k.split("|");
              return [size!, c!, rateCell(r.authmilter), rateCell(r.opendkim), ratio(r.authmilter, r.opendkim), latencyCell(r.opendkim), rssCell(r.opendkim), fmt(r.opendkim!.cpuMsPerMsg)];
            }),
        ),
        "",
      );
    }
  }
  const hit = results.filter((r) => r.dnsCacheHitRatio !== undefined);
  if (hit.length > 0) {
    const lo = Math.min(...hit.map((r) => r.dnsCacheHitRatio!));
    out.push(`authmilter's DNS cache hit ratio in the measured phase (from its /metrics): ${fmt(lo * 100, 1)}% at the lowest cell.`, "");
  }
  const slow = results.filter((r) => r.maxOptnegMs > 1000);
  if (slow.length > 0) {
    out.push(
      `Slow connection setup (OPTNEG answered after more than 1 s, a sign of a starved event loop): ${slow.map((r) => `${r.target} ${r.path} ${r.size} c=${r.concurrency} ${fmt(r.maxOptnegMs / 1000, 1)} s`).join("; ")}.`,
      "",
    );
  }
  const gen = Math.max(...results.map((r) => r.generatorCpu));
  out.push(`Load generator CPU (one Node process, same machine): up to ${fmt(gen * 100, 0)}% of one core.`, "");
  const problems = results.filter((r) => r.invalid !== undefined || r.errors > 0);
  for (const r of problems) {
    out.push(`- ${r.target} ${r.path} ${r.size} c=${r.concurrency}: ${r.invalid ?? ""}${r.invalid && r.errors ? "; " : ""}${r.errors ? `${r.errors} failed sessions, first: ${r.firstError}` : ""}`);
  }
  return out.join("\n");
}

// ---- main --------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const peers = OPENDKIM !== undefined;
  const dmarcPeer = peers && OPENDMARC !== undefined;
  const targetsFor = (path: BenchPath): TargetName[] => {
    if (opts.targets !== undefined) return opts.targets;
    const t: TargetName[] = ["authmilter"];
    if (dmarcPeer) t.push("chain");
    if (peers && (path === "sign" || !dmarcPeer)) t.push("opendkim");
    return t;
  };
  const dir = mkdtempSync(join(tmpdir(), "authmilter-bench-"));
  const m = machine();
  console.log(`machine: ${describeMachine(m)}`);
  if (!peers) console.log("opendkim is not installed: measuring authmilter alone (apt-get install opendkim opendmarc)");
  else if (!dmarcPeer) console.log("opendmarc is not installed: comparing with opendkim alone (apt-get install opendmarc)");
  const keys = makeKeys(dir);
  const dns = await startBenchDns(keys.zone, { relay: dmarcPeer });
  if (dmarcPeer && dns.relay === undefined) throw new Error(`opendmarc needs a DNS server on port 53: ${dns.relayError}`);
  const ctx: Context = { dir, dns, keys, opts };
  const results: CellResult[] = [];
  const stop = () => {
    closeAllClients();
  };
  process.once("SIGINT", stop);
  const t0 = Date.now();
  try {
    for (const path of opts.paths) {
      for (const size of opts.sizes) {
        for (const c of opts.concurrency) {
          const runs = new Map<TargetName, CellResult[]>();
          // Repeats interleave the targets (ours, theirs, ours, theirs …) so that a noisy
          // moment on the machine hits both; the run with the median msgs/s is reported.
          for (let rep = 0; rep < opts.repeat; rep++) {
            for (const target of targetsFor(path)) {
              if ((target === "chain" && !dmarcPeer) || (target === "opendkim" && !peers)) continue;
              const r = await measureCell(ctx, target, path, size, c);
              runs.set(target, [...(runs.get(target) ?? []), r]);
              console.log(
                `${path.padEnd(6)} ${size.padStart(3)} c=${String(c).padEnd(3)} ${target.padEnd(10)} ${fmt(r.msgsPerSec).padStart(7)} msgs/s  p50 ${fmt(r.p50Ms)} p99 ${fmt(r.p99Ms)} max ${fmt(r.maxMs)} ms  OPTNEG max ${fmt(r.maxOptnegMs)} ms  RSS ${fmt(r.idleRssMb, 1)}→${fmt(r.peakRssMb, 1)} MB (PSS ${fmt(r.idlePssMb, 1)}→${fmt(r.peakPssMb, 1)})  CPU ${fmt(r.cpuMsPerMsg)} ms/msg  DNS ${fmt(r.dnsQueriesPerMsg)} q/msg${r.dnsCacheHitRatio !== undefined ? ` (cache hits ${fmt(r.dnsCacheHitRatio * 100, 1)}%)` : ""}  n=${r.messages}${r.errors ? ` errors=${r.errors} (${r.firstError})` : ""}${r.invalid ? `  INVALID: ${r.invalid}` : ""}`,
              );
              if (r.invalid && r.sample !== undefined) console.log(`  added headers:\n${r.sample.replace(/^/gm, "    ")}`);
            }
          }
          for (const list of runs.values()) {
            const sorted = list.slice().sort((a, b) => a.msgsPerSec - b.msgsPerSec);
            results.push({ ...sorted[Math.floor((sorted.length - 1) / 2)]!, runs: list.map((r) => r.msgsPerSec) });
          }
        }
      }
    }
  } finally {
    process.off("SIGINT", stop);
    await dns.close();
    if (opts.keep) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
  const header = [
    `## authmilter benchmark, ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC (${Math.round((Date.now() - t0) / 1000)} s)`,
    "",
    `Machine: ${describeMachine(m)}.`,
    `Command: \`npm run bench -- ${process.argv.slice(2).join(" ")}\`; ${opts.durationMs / 1000} s per cell after ${opts.warmupMs / 1000} s warm-up${opts.repeat > 1 ? `, median of ${opts.repeat} interleaved runs` : ""}, ${opts.messagesPerSession} message(s) per milter session, MTA writes: ${opts.writeMode}.`,
    `authmilter measured: ${opts.root ?? ROOT} (${opts.entry === "dist" ? "dist/cli/main.js" : "src/cli/main.ts"} serve, log level ${opts.logLevel}${opts.workers !== undefined ? `, milter.workers ${opts.workers}` : ""}); opendkim/opendmarc: Debian packages, configured by bench/lib/daemons.ts.`,
    `Latency: first milter connect → last milter's end-of-message decision. RSS: daemon and its children, summed, sampled every 20 ms (chain: opendkim+opendmarc); PSS: the same processes with shared pages counted once, every 500 ms.`,
  ].join("\n");
  const text = report(results, opts, header);
  console.log(`\n${text}`);
  const sample = results.find((r) => r.path === "verify" && r.target === "chain")?.sample;
  const ours = results.find((r) => r.path === "verify" && r.target === "authmilter")?.sample;
  if (ours !== undefined) console.log(`\nauthmilter's headers on the verify path:\n${ours}`);
  if (sample !== undefined) console.log(`\nopendkim → opendmarc headers on the verify path:\n${sample}`);
  if (opts.out !== undefined) writeFileSync(opts.out, `${text}\n`);
  if (opts.json !== undefined) writeFileSync(opts.json, `${JSON.stringify({ machine: m, options: opts, results }, null, 2)}\n`);
}

await main();
