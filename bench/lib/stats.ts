// Percentiles, the machine description and table formatting.

import { cpus, totalmem } from "node:os";
import { readFileSync } from "node:fs";

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  // Nearest rank: the smallest value with at least p% of the samples at or below it.
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGb: number;
  readonly node: string;
  readonly kernel: string;
  readonly os: string;
  readonly load: string;
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return fallback;
  }
}

export function machine(): Machine {
  const list = cpus();
  const osRelease = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readOr("/etc/os-release", ""))?.[1] ?? "unknown";
  return {
    cpu: list[0]?.model.trim() ?? "unknown",
    cores: list.length,
    memoryGb: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    kernel: readOr("/proc/sys/kernel/osrelease", "?").trim(),
    os: osRelease,
    load: readOr("/proc/loadavg", "?").split(" ").slice(0, 3).join(" "),
  };
}

export function describeMachine(m: Machine): string {
  return `${m.cpu}, ${m.cores} cores, ${m.memoryGb} GB RAM, ${m.os}, Linux ${m.kernel}, Node ${m.node}; load average at start ${m.load}`;
}

export function fmt(n: number, digits?: number): string {
  if (!Number.isFinite(n)) return "–";
  const d = digits ?? (Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2);
  return n.toFixed(d);
}

export function markdownTable(head: readonly string[], rows: ReadonlyArray<readonly string[]>, align?: readonly ("l" | "r")[]): string {
  const a = align ?? head.map((_, i) => (i === 0 ? "l" : "r"));
  const line = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(a.map((x) => (x === "r" ? "---:" : "---"))), ...rows.map(line)].join("\n");
}
