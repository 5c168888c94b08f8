// `npm run bench:postfix`: the private Postfix of the end-to-end tests (test/support/postfix.ts),
// loaded by smtp-source (Postfix's own load generator) with 2 KB messages over 10 parallel
// SMTP sessions, one message per session, four ways in one run:
//   no milter · null milter · authmilter · opendkim → opendmarc (when installed)
// The null milter (bench/null-milter.ts) is our wire layer with a handler that does nothing:
// what Postfix and any milter asking for the same events cost, before any verifying or signing.
// Repeats are interleaved (none, ours, theirs, none, ours, theirs, …) and the median is reported.
//
// verify path: smtp-source sends a DKIM-signed message from example.org (-F file); the
//   loopback client counts as external (authmilter internalHosts: [], opendkim InternalHosts
//   and opendmarc IgnoreHosts: 192.0.2.99 only), so every milter verifies and adds its headers.
// sign path: smtp-source generates a message from alice@example.com (-l 2048); 127.0.0.1 is
//   internal, so authmilter and opendkim sign and opendmarc accepts at CONNECT.
//
//   npm run bench:postfix                 both paths, 500 messages × 3 repeats
//   npm run bench:postfix -- --quick      verify path, 200 messages × 1
//   npm run bench:postfix -- --path sign --messages 1000 --repeat 5 --sessions 10

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startPostfixes, type PostfixInstance } from "../test/support/postfix.ts";
import { findExecutable } from "../test/support/prereq.ts";
import { run } from "../test/support/run.ts";
import { headerValues } from "../test/support/mail.ts";
import { startBenchDns } from "./lib/dns.ts";
import { LOCAL_DOMAIN, makeKeys, makeMessage, messageFile, REMOTE_DOMAIN, type BenchPath } from "./lib/fixtures.ts";
import { machineBusySeconds, processTree, treeCpuSeconds } from "./lib/procs.ts";
import { OPENDKIM, OPENDMARC, parseEntry, ROOT, startAuthmilter, startNullMilter, startOpendkim, startOpendmarc, type Daemon } from "./lib/daemons.ts";
import { describeMachine, fmt, machine, markdownTable, median } from "./lib/stats.ts";

const HELP = `usage: npm run bench:postfix -- [options]
  --quick              verify path only, 200 messages, 1 repeat
  --path LIST          verify,sign (default both)
  --messages N         messages per measurement (default 500)
  --sessions N         parallel SMTP sessions (default 10)
  --repeat N           measurements per setup, interleaved; the median is reported (default 3)
  --warmup N           messages sent through each setup first, not measured (default 100;
                       Postfix starts its smtpd and cleanup processes on demand)
  --log-level LEVEL    authmilter's log.level (default info)
  --root DIR           run the authmilter checkout in DIR instead of this one
  --entry dist|src     run authmilter compiled (default; as systemd and Docker do) or through
                       Node's type stripping (as npm start does)
  --out FILE           also write the markdown report to FILE
  --keep               keep the temp dir`;

const SMTP_SOURCE = findExecutable("smtp-source");

interface Setup {
  readonly name: string;
  readonly postfix: PostfixInstance;
  readonly daemons: readonly Daemon[];
  delivered: number;
  readonly rates: number[];
  /** CPU ms per message, per run: the whole machine, and the milter daemons alone. */
  readonly cpu: Array<{ all: number; milters: number }>;
  readonly failures: string[];
}

function check(path: BenchPath, setup: string, raw: string): string | undefined {
  if (setup === "no milter" || setup.startsWith("null milter")) return undefined;
  if (path === "verify") {
    const ar = headerValues(raw, "Authentication-Results").join(" ");
    const missing = ["dkim=pass", "spf=pass", "dmarc=pass"].filter((r) => !ar.includes(r));
    return missing.length === 0 ? undefined : `delivered message's Authentication-Results lack ${missing.join(", ")}: ${ar}`;
  }
  const signed = headerValues(raw, "DKIM-Signature").some((v) => /\bd=example\.com;/.test(v));
  return signed ? undefined : "delivered message carries no DKIM-Signature with d=example.com";
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      path: { type: "string" },
      messages: { type: "string" },
      sessions: { type: "string", default: "10" },
      repeat: { type: "string" },
      warmup: { type: "string" },
      "log-level": { type: "string", default: "info" },
      out: { type: "string" },
      root: { type: "string" },
      entry: { type: "string", default: "dist" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const quick = values.quick === true;
  const paths = (values.path ?? (quick ? "verify" : "verify,sign")).split(",").map((p) => p.trim()) as BenchPath[];
  for (const p of paths) if (p !== "verify" && p !== "sign") throw new Error(`--path: unknown path ${p}`);
  const int = (v: string | undefined, fallback: number, name: string, max: number) => {
    const n = v === undefined ? fallback : Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`--${name}: ${v} is not a whole number in 1..${max}`);
    return n;
  };
  const messages = int(values.messages, quick ? 200 : 500, "messages", 100_000);
  const sessions = int(values.sessions, 10, "sessions", 100);
  const repeat = int(values.repeat, quick ? 1 : 3, "repeat", 20);
  const warmup = values.warmup === "0" ? 0 : int(values.warmup, quick ? 50 : 100, "warmup", 100_000);
  if (SMTP_SOURCE === undefined) throw new Error("smtp-source not found (apt-get install postfix)");
  if (process.getuid?.() !== 0) throw new Error("a private Postfix instance can only be started as root");
  const peers = OPENDKIM !== undefined && OPENDMARC !== undefined;

  const m = machine();
  console.log(`machine: ${describeMachine(m)}`);
  if (!peers) console.log("opendkim/opendmarc not installed: measuring no milter and authmilter only");
  const dir = mkdtempSync(join(tmpdir(), "authmilter-bench-postfix-"));
  const keys = makeKeys(dir);
  const dns = await startBenchDns(keys.zone, { relay: peers });
  if (peers && dns.relay === undefined) throw new Error(`opendmarc needs a DNS server on port 53: ${dns.relayError}`);
  const sections: string[] = [];
  const entry = parseEntry(values.entry);
  const t0 = Date.now();
  try {
    for (const path of paths) {
      // 192.0.2.99 stands for "some internal host": never this benchmark's client.
      const internal = path === "sign" ? ["127.0.0.1"] : ["192.0.2.99"];
      const daemons: Daemon[] = [];
      const postfixes: PostfixInstance[] = [];
      try {
        const ours = await startAuthmilter({
          dir,
          dnsServer: `${dns.host}:${dns.port}`,
          keyFile: keys.localPkcs8File,
          internalHosts: path === "sign" ? internal : [],
          logLevel: values["log-level"] ?? "info",
          entry,
          ...(values.root !== undefined ? { root: values.root } : {}),
        });
        daemons.push(ours);
        const floor = await startNullMilter(dir);
        daemons.push(floor);
        let theirs: Daemon[] = [];
        if (peers) {
          const dkim = await startOpendkim({ dir, dnsHost: dns.host, dnsPort: dns.port, dnsMode: "nameservers", keyFile: keys.localPkcs1File, internalHosts: internal });
          daemons.push(dkim);
          const dmarc = await startOpendmarc({ dir, relay: dns.relay!, ignoreHosts: internal });
          daemons.push(dmarc);
          theirs = [dkim, dmarc];
        }
        const milterOf = (ds: readonly Daemon[]) => ds.map((d) => `inet:127.0.0.1:${d.port}`).join(", ");
        const wanted: Array<{ name: string; daemons: readonly Daemon[] }> = [
          { name: "no milter", daemons: [] },
          { name: "null milter (wire layer only)", daemons: [floor] },
          { name: "authmilter", daemons: [ours] },
          ...(peers ? [{ name: "opendkim → opendmarc", daemons: theirs }] : []),
        ];
        postfixes.push(...(await startPostfixes(wanted.map((w) => (w.daemons.length > 0 ? { milter: milterOf(w.daemons) } : {})))));
        const setups: Setup[] = wanted.map((w, i) => ({ name: w.name, postfix: postfixes[i]!, daemons: w.daemons, delivered: 0, rates: [], cpu: [], failures: [] }));

        const source = ["-s", String(sessions), "-m", String(messages), "-M", "mail.example.org", "-t", "bob@example.net"];
        if (path === "verify") {
          const file = join(dir, "verify-2k.eml");
          writeFileSync(file, messageFile(makeMessage("verify", 2048, keys)));
          source.push("-f", `alice@${REMOTE_DOMAIN}`, "-F", file);
        } else {
          source.push("-f", `alice@${LOCAL_DOMAIN}`, "-l", "2048", "-S", "authmilter benchmark");
        }

        if (warmup > 0) {
          for (const s of setups) {
            const args = source.map((a, i) => (source[i - 1] === "-m" ? String(warmup) : a));
            const r = await run(SMTP_SOURCE, [...args, `127.0.0.1:${s.postfix.smtpPort}`], { timeoutMs: 600_000 });
            if (r.code !== 0) s.failures.push(`warm-up: smtp-source exited ${r.code ?? r.signal}: ${r.stderr.trim().split("\n")[0]}`);
            s.delivered += warmup;
            await s.postfix.waitForDelivered(s.delivered, 120_000).catch((err: unknown) => s.failures.push((err as Error).message.split("\n")[0]!));
          }
        }
        for (let rep = 0; rep < repeat; rep++) {
          for (const s of setups) {
            const milterPids = () => s.daemons.flatMap((d) => processTree(d.pid));
            const cpuBefore = { all: machineBusySeconds(), milters: treeCpuSeconds(milterPids()) };
            const started = performance.now();
            const r = await run(SMTP_SOURCE, [...source, `127.0.0.1:${s.postfix.smtpPort}`], { timeoutMs: 600_000 });
            const seconds = (performance.now() - started) / 1000;
            if (r.code !== 0 || r.stderr.trim() !== "") s.failures.push(`smtp-source exited ${r.code ?? r.signal}: ${r.stderr.trim().split("\n").slice(0, 3).join(" | ")}`);
            s.delivered += messages;
            // The queue drains before the next measurement, so one setup's deliveries do not load the next.
            const got = await s.postfix.waitForDelivered(s.delivered, 120_000).catch((err: unknown) => {
              s.failures.push((err as Error).message.split("\n")[0]!);
              return s.postfix.delivered();
            });
            s.cpu.push({ all: ((machineBusySeconds() - cpuBefore.all) * 1000) / messages, milters: ((treeCpuSeconds(milterPids()) - cpuBefore.milters) * 1000) / messages });
            const problem = check(path, s.name, got.at(-1)?.text ?? "");
            if (problem !== undefined) s.failures.push(problem);
            s.rates.push(messages / seconds);
            console.log(`${path} ${s.name.padEnd(22)} run ${rep + 1}: ${fmt(messages / seconds)} msgs/s (${fmt(seconds, 2)} s for ${messages})${problem ? `  PROBLEM: ${problem}` : ""}`);
          }
        }
        const base = median(setups[0]!.rates);
        const rows = setups.map((s) => {
          const med = median(s.rates);
          const cpu = `${fmt(median(s.cpu.map((c) => c.all)))} / ${s.daemons.length > 0 ? fmt(median(s.cpu.map((c) => c.milters))) : "–"}`;
          return [s.name, fmt(med), s.rates.map((x) => fmt(x)).join(", "), s.name === "no milter" ? "1.00" : fmt(med / base), cpu, s.failures.length > 0 ? `${s.failures.length} problem(s): ${s.failures[0]}` : "ok"];
        });
        const ourMed = median(setups.find((s) => s.name === "authmilter")!.rates);
        const chain = setups.find((s) => s.daemons.length === 2);
        const theirMed = chain ? median(chain.rates) : Number.NaN;
        sections.push(
          `### through Postfix, ${path} path: smtp-source, 2 KB, ${sessions} sessions, one message per session, ${messages} messages × ${repeat} after ${warmup} not measured`,
          "",
          markdownTable(["setup", "msgs/s (median)", "runs", "share of no-milter", "CPU ms/msg: machine / milters", "check"], rows, ["l", "r", "r", "r", "r", "l"]),
          "",
          "CPU per message counts from smtp-source's start until the queue is empty (delivery included): the whole machine (/proc/stat) and the milter processes alone.",
          "",
          peers ? `authmilter / (opendkim → opendmarc): ${fmt(ourMed / theirMed)}×` : "",
          "",
        );
      } finally {
        for (const p of postfixes) await p.stop();
        for (const d of daemons.slice().reverse()) await d.stop();
      }
    }
  } finally {
    await dns.close();
    if (values.keep) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
  const text = [
    `## authmilter through Postfix, ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC (${Math.round((Date.now() - t0) / 1000)} s)`,
    "",
    `Machine: ${describeMachine(m)}. Postfix: the end-to-end harness (test/support/postfix.ts), delivering to its in-process sink.`,
    `Command: \`npm run bench:postfix -- ${process.argv.slice(2).join(" ")}\`; authmilter measured: ${values.root ?? ROOT} (${entry === "dist" ? "compiled, dist/cli/main.js" : "src/cli/main.ts"}).`,
    "",
    ...sections,
  ].join("\n");
  console.log(`\n${text}`);
  if (values.out !== undefined) writeFileSync(values.out, `${text}\n`);
}

await main();
