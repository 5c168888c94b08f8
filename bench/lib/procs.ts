// Memory and CPU of a daemon and all its descendants, read from /proc.

import { readdirSync, readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";

let clockTicks: number | undefined;

function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number.parseInt(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim(), 10) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

function parseStat(pid: number): { ppid: number; cpuTicks: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which may itself hold spaces and parentheses.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // f[0] = state (field 3); ppid = field 4; utime = 14, stime = 15; cutime 16, cstime 17.
    return { ppid: Number(f[1]), cpuTicks: Number(f[11]) + Number(f[12]) };
  } catch {
    return undefined;
  }
}

/** `root` and every process below it. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const st = parseStat(pid);
    if (st === undefined) continue;
    const list = children.get(st.ppid);
    if (list) list.push(pid);
    else children.set(st.ppid, [pid]);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

function statusKb(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
    if (!rss || !hwm) return undefined;
    return { rss: Number(rss[1]), hwm: Number(hwm[1]) };
  } catch {
    return undefined;
  }
}

/** Proportional set size (shared pages split between the processes sharing them), kB. */
function pssKb(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * Summed PSS of the processes: unlike summed RSS it counts the pages cluster workers share
 * (the node binary, the code they all loaded) once. Reading smaps_rollup costs about 1 ms a
 * process, so it is sampled less often than RSS.
 */
export function treePss(pids: readonly number[]): number {
  let kb = 0;
  for (const pid of pids) kb += pssKb(pid);
  return kb;
}

export interface TreeMemory {
  /** Sum of VmRSS over the tree now, kB. */
  readonly rssKb: number;
  /** Sum of VmHWM (each process's own peak) over the tree, kB: an upper bound of the joint peak. */
  readonly hwmKb: number;
}

export function treeMemory(pids: readonly number[]): TreeMemory {
  let rssKb = 0;
  let hwmKb = 0;
  for (const pid of pids) {
    const s = statusKb(pid);
    if (s === undefined) continue;
    rssKb += s.rss;
    hwmKb += s.hwm;
  }
  return { rssKb, hwmKb };
}

/** CPU seconds (user + system) used so far by the tree's live processes. */
export function treeCpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) ticks += parseStat(pid)?.cpuTicks ?? 0;
  return ticks / ticksPerSecond();
}

/** CPU seconds the whole machine has spent busy (all cores; /proc/stat: all but idle and iowait). */
export function machineBusySeconds(): number {
  const fields = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return (user + nice + system + irq + softirq + steal) / ticksPerSecond();
}

/**
 * Samples a set of process trees every `intervalMs` (re-reading the tree every 500 ms, so
 * workers that come and go are counted) and keeps the peak of the summed VmRSS per tree, and
 * of the summed PSS of all of them (every 25 samples).
 */
export class RssSampler {
  readonly #roots: readonly number[];
  readonly #pids: number[][];
  readonly #peakKb: number[];
  #peakTotalKb = 0;
  #peakPssKb = 0;
  #timer: NodeJS.Timeout | undefined;
  #ticks = 0;

  constructor(roots: readonly number[], intervalMs = 20) {
    this.#roots = roots;
    this.#pids = roots.map((r) => processTree(r));
    this.#peakKb = roots.map(() => 0);
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
    this.#timer.unref();
  }

  #sample(): void {
    if (++this.#ticks % 25 === 0) {
      for (let i = 0; i < this.#roots.length; i++) this.#pids[i] = processTree(this.#roots[i]!);
      const pss = treePss(this.#pids.flat());
      if (pss > this.#peakPssKb) this.#peakPssKb = pss;
    }
    let total = 0;
    for (let i = 0; i < this.#roots.length; i++) {
      const { rssKb } = treeMemory(this.#pids[i]!);
      total += rssKb;
      if (rssKb > this.#peakKb[i]!) this.#peakKb[i] = rssKb;
    }
    if (total > this.#peakTotalKb) this.#peakTotalKb = total;
  }

  /** Stops sampling: the peak of the summed RSS of all trees together, and per tree (kB). */
  stop(): { totalKb: number; perRootKb: number[]; pssKb: number } {
    this.#sample();
    clearInterval(this.#timer);
    return { totalKb: this.#peakTotalKb, perRootKb: this.#peakKb.slice(), pssKb: Math.max(this.#peakPssKb, treePss(this.#pids.flat())) };
  }
}
