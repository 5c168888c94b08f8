// Summarises V8 CPU profiles (node --cpu-prof) of the daemon: where the time went, by
// category (our code, mailauth, pino, node internals, GC, idle) and by function (self and
// inclusive time).
//
//   npm run bench -- --target authmilter --path verify --size 20k --concurrency 1,32 \
//     --duration 10 --cpu-prof /tmp/prof
//   node bench/profile-report.ts /tmp/prof/verify-20k-c32      (a directory or .cpuprofile files)
//   node bench/profile-report.ts --top 40 /tmp/prof/verify-20k-c1

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { fmt, markdownTable } from "./lib/stats.ts";

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

function category(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (functionName === "(idle)") return "idle";
  if (functionName === "(garbage collector)") return "GC";
  if (functionName === "(program)" || functionName === "(root)") return "V8/native (program)";
  if (url.includes("/node_modules/mailauth/")) return "mailauth";
  if (url.includes("/node_modules/pino") || url.includes("/node_modules/sonic-boom") || url.includes("/node_modules/thread-stream")) return "pino (logging)";
  if (url.includes("/node_modules/")) return "other npm packages";
  if (url.includes("/src/milter/")) return "ours: src/milter";
  if (url.includes("/src/dns/")) return "ours: src/dns";
  if (url.includes("/src/auth/")) return "ours: src/auth";
  if (url.includes("/src/")) return "ours: other src";
  if (url.startsWith("node:")) return "node internals";
  if (url === "") return "native builtins (no url)";
  return "other";
}

function label(frame: CallFrame): string {
  const where = frame.url.replace(/^file:\/\//, "").replace(/^.*\/(src|node_modules)\//, "$1/");
  return `${frame.functionName || "(anonymous)"} ${where ? `${where}:${frame.lineNumber + 1}` : ""}`.trim();
}

function files(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    if (statSync(p).isDirectory()) {
      for (const f of readdirSync(p)) if (f.endsWith(".cpuprofile")) out.push(join(p, f));
    } else out.push(p);
  }
  return out;
}

export function summarise(paths: readonly string[], top = 25): string {
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const byCategory = new Map<string, number>();
  let total = 0;
  const perFile: string[][] = [];
  for (const file of files(paths)) {
    const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
    const fileTotal = total;
    const fileIdle = byCategory.get("idle") ?? 0;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    for (let i = 0; i < profile.samples.length; i++) {
      const dt = (profile.timeDeltas[i] ?? 0) / 1000; // µs → ms
      const node = byId.get(profile.samples[i]!);
      if (node === undefined) continue;
      total += dt;
      const key = label(node.callFrame);
      self.set(key, (self.get(key) ?? 0) + dt);
      const cat = category(node.callFrame);
      byCategory.set(cat, (byCategory.get(cat) ?? 0) + dt);
      // Inclusive: every distinct function on the stack once.
      const seen = new Set<string>();
      for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
        const k = label(byId.get(id)!.callFrame);
        if (seen.has(k)) continue;
        seen.add(k);
        inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
      }
    }
    const sampled = total - fileTotal;
    const idle = (byCategory.get("idle") ?? 0) - fileIdle;
    perFile.push([file.slice(file.lastIndexOf("/") + 1), fmt(sampled / 1000, 1), fmt((sampled - idle) / 1000, 2)]);
  }
  const busy = total - (byCategory.get("idle") ?? 0);
  const pct = (ms: number, of: number) => `${fmt((ms / of) * 100, 1)}%`;
  const sorted = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]);
  const out: string[] = [];
  out.push(`Profile: ${fmt(total / 1000, 1)} s sampled, ${fmt(busy / 1000, 1)} s busy (not idle).`, "");
  // One file per process: with node:cluster the primary and each worker write their own.
  if (perFile.length > 1) out.push(markdownTable(["profile (one per process; the pid is in the name)", "s sampled", "s busy"], perFile), "");
  out.push(markdownTable(["category", "ms", "% of busy"], sorted(byCategory).filter(([c]) => c !== "idle").map(([c, ms]) => [c, fmt(ms, 0), pct(ms, busy)])), "");
  out.push(
    markdownTable(
      ["self time: function", "ms", "% of busy"],
      sorted(self)
        .filter(([k]) => !k.startsWith("(idle)"))
        .slice(0, top)
        .map(([k, ms]) => [`\`${k}\``, fmt(ms, 0), pct(ms, busy)]),
    ),
    "",
  );
  out.push(
    markdownTable(
      ["inclusive time: function", "ms", "% of busy"],
      sorted(inclusive)
        .filter(([k]) => !/^\((root|idle|program|garbage collector)\)/.test(k))
        .slice(0, top)
        .map(([k, ms]) => [`\`${k}\``, fmt(ms, 0), pct(ms, busy)]),
    ),
  );
  return out.join("\n");
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "25" } } });
  if (positionals.length === 0) {
    console.error("usage: node bench/profile-report.ts [--top N] DIR|FILE.cpuprofile ...");
    process.exit(2);
  }
  console.log(summarise(positionals, Number(values.top)));
}
