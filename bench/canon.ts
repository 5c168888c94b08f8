// Micro-benchmark of DKIM body canonicalisation + SHA-256 (src/auth/sign-canon.ts BodyHasher),
// in-process, one core. Bodies are fed in 65,535-byte chunks, the way Postfix hands a milter
// BODY packets. Prints MB/s (10^6 bytes of input per second), the median of several runs, for
// relaxed and simple on:
//
//   text     20 MB of typical text lines (words, some trailing blanks, blank lines, indents)
//   wsp      20 MB of long lines (1–8 KB) full of SP/HTAB runs
//   line16m  one 16 MiB line of mixed whitespace (the case that is quadratic in mailauth)
//
// plus plain SHA-256 over the same bytes as the ceiling, and the bh= values (so that two
// versions of the code can be compared for identical output).
//
//   node bench/canon.ts [--reps 9] [--chunk 65535] [--body text,wsp,line16m] [--impl a.ts,b.ts]
//
// --impl loads BodyHasher from other copies of sign-canon.ts (e.g. the previous version saved
// with `git show HEAD:src/auth/sign-canon.ts > /tmp/old.ts`; "src" is this tree's) and runs
// them interleaved, repetition by repetition, so that both see the same machine load. Two
// implementations in one process can disturb each other's JIT, though (the old per-byte loop
// measured ~100 instead of ~150 MB/s on wsp next to the new one), so for numbers to report,
// alternate separate runs: --impl /tmp/old.ts, then without --impl, a few times.

import { createHash } from "node:crypto";
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import type { BodyHasher as BodyHasherType, Canonicalization } from "../src/auth/sign-canon.ts";

const { values: opts } = parseArgs({
  options: {
    reps: { type: "string", default: "9" },
    chunk: { type: "string", default: "65535" },
    body: { type: "string", default: "text,wsp,line16m" },
    impl: { type: "string" },
  },
});
const implPaths = (opts.impl ?? "src").split(",");
const impls = await Promise.all(
  implPaths.map(async (p) => {
    const url = p === "src" ? new URL("../src/auth/sign-canon.ts", import.meta.url) : pathToFileURL(p);
    const mod = (await import(url.href)) as { BodyHasher: typeof BodyHasherType };
    return { name: p, BodyHasher: mod.BodyHasher };
  }),
);
const REPS = Math.max(1, Number(opts.reps));
const CHUNK = Math.max(1, Number(opts.chunk));

/** Deterministic pseudo-random numbers (an LCG), so every run hashes the same bodies. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0;
  return (n) => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return (x >>> 8) % n;
  };
}

const LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:-'()";

function word(r: (n: number) => number): string {
  let w = "";
  const n = 1 + r(10);
  for (let i = 0; i < n; i++) w += LETTERS[r(LETTERS.length)];
  return w;
}

/** Lines of 40–78 characters, single spaces between words; 10% end in a space (format=flowed),
 * 5% are empty, 3% are indented with a tab, 1% carry a double space. */
function textBody(size: number): Buffer {
  const r = rng(1);
  const parts: string[] = [];
  let total = 0;
  while (total < size) {
    let line = "";
    const roll = r(100);
    if (roll < 5) {
      // empty line
    } else {
      const target = 40 + r(39);
      if (roll < 8) line = "\t";
      while (line.length < target) line += (line === "" || line === "\t" ? "" : r(100) === 0 ? "  " : " ") + word(r);
      if (roll >= 90) line += " ";
    }
    line += "\r\n";
    parts.push(line);
    total += line.length;
  }
  return Buffer.from(parts.join(""), "latin1");
}

/** Long lines (1–8 KB) of short words separated by runs of 1–4 SP/HTAB, trailing blanks on half. */
function wspBody(size: number): Buffer {
  const r = rng(2);
  const WSP = [" ", " ", " ", "\t", "  ", " \t", "\t\t", " \t  "];
  const parts: string[] = [];
  let total = 0;
  while (total < size) {
    let line = "";
    const target = 1024 + r(7 * 1024);
    while (line.length < target) line += word(r) + WSP[r(WSP.length)];
    if (r(2) === 0) line = line.replace(/[ \t]+$/, "");
    line += "\r\n";
    parts.push(line);
    total += line.length;
  }
  return Buffer.from(parts.join(""), "latin1");
}

/** One 16 MiB line of "ab \t  c\t\t d " repeated, then CRLF (as in test/auth/sign-canon.test.ts). */
function line16mBody(): Buffer {
  const unit = Buffer.from("ab \t  c\t\t d ", "latin1");
  const line = Buffer.alloc(16 * 1024 * 1024);
  for (let o = 0; o < line.length; o += unit.length) unit.copy(line, o);
  return Buffer.concat([line, Buffer.from("\r\n", "latin1")]);
}

function chunks(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < body.length; o += CHUNK) out.push(body.subarray(o, o + CHUNK));
  return out;
}

function runCanon(Hasher: typeof BodyHasherType, parts: readonly Buffer[], c: Canonicalization): string {
  const h = new Hasher(c);
  for (const p of parts) h.update(p);
  return h.digest();
}

function runSha(parts: readonly Buffer[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest("base64");
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Rate {
  /** Median MB/s by wall-clock time (performance.now()). */
  readonly mbps: number;
  readonly min: number;
  readonly max: number;
  /** Median MB/s by this process's CPU time: less disturbed by other load on the machine. */
  readonly cpuMbps: number;
  readonly result: string;
}

/** MB/s of each function over REPS timed runs, interleaved, after one warm-up each. */
function measure(bytes: number, fns: readonly (() => string)[]): Rate[] {
  const results = fns.map((fn) => fn());
  const rates: number[][] = fns.map(() => []);
  const cpuRates: number[][] = fns.map(() => []);
  for (let i = 0; i < REPS; i++) {
    fns.forEach((fn, f) => {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      results[f] = fn();
      const ms = performance.now() - t0;
      const cpu = process.cpuUsage(c0);
      rates[f]!.push(bytes / 1e6 / (ms / 1e3));
      cpuRates[f]!.push(bytes / 1e6 / ((cpu.user + cpu.system) / 1e6));
    });
  }
  return fns.map((_, f) => ({
    mbps: median(rates[f]!),
    min: Math.min(...rates[f]!),
    max: Math.max(...rates[f]!),
    cpuMbps: median(cpuRates[f]!),
    result: results[f]!,
  }));
}

const BODIES: Record<string, () => Buffer> = {
  text: () => textBody(20_000_000),
  wsp: () => wspBody(20_000_000),
  line16m: line16mBody,
};

const la = loadavg().map((x) => x.toFixed(2)).join(" ");
console.log(`node ${process.version}, load average ${la}, chunk ${CHUNK} B, ${REPS} runs`);
console.log("MB/s: wall-clock median (min–max) [median by process CPU time]");
const pad = (s: string, n: number) => s.padEnd(n);
const implWidth = Math.max(6, ...implPaths.map((p) => p.length + 2));
console.log(
  `${pad("body", 9)}${pad("size", 10)}${pad("impl", implWidth)}${pad("relaxed", 26)}${pad("simple", 26)}${pad("sha256 alone", 26)}bh= relaxed / simple`,
);
for (const name of opts.body.split(",")) {
  const make = BODIES[name];
  if (make === undefined) throw new Error(`unknown body ${name} (text, wsp, line16m)`);
  const body = make();
  const parts = chunks(body);
  const rel = measure(body.length, impls.map((m) => () => runCanon(m.BodyHasher, parts, "relaxed")));
  const sim = measure(body.length, impls.map((m) => () => runCanon(m.BodyHasher, parts, "simple")));
  const [sha] = measure(body.length, [() => runSha(parts)]);
  const cell = (m: Rate) => `${m.mbps.toFixed(0)} (${m.min.toFixed(0)}–${m.max.toFixed(0)}) [${m.cpuMbps.toFixed(0)}]`;
  impls.forEach((m, f) => {
    console.log(
      `${pad(f === 0 ? name : "", 9)}${pad(f === 0 ? `${(body.length / 1e6).toFixed(1)} MB` : "", 10)}${pad(m.name, implWidth)}` +
        `${pad(cell(rel[f]!), 26)}${pad(cell(sim[f]!), 26)}${pad(f === 0 ? cell(sha!) : "", 26)}${rel[f]!.result.slice(0, 12)} / ${sim[f]!.result.slice(0, 12)}`,
    );
  });
}
console.log(`load average after: ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
