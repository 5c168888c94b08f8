// A small seeded property harness: a deterministic PRNG, generators, and `forAll`, which runs a
// fixed number of cases and, on failure, names the seed, the case number and the input so that
// the failure can be replayed. FUZZ_SEED and FUZZ_ITERATIONS override the defaults:
//
//   FUZZ_SEED=1234 FUZZ_ITERATIONS=20000 npx vitest run test/fuzz

/** sfc32 (Chris Doty-Humphrey's Small Fast Counter): 128 bits of state, good enough for fuzzing. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.u32();
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** 0 ≤ n < max. */
  int(max: number): number {
    return max <= 0 ? 0 : Math.floor((this.u32() / 2 ** 32) * max);
  }

  /** min ≤ n ≤ max. */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  bool(p = 0.5): boolean {
    return this.u32() / 2 ** 32 < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from nothing");
    return items[this.int(items.length)]!;
  }

  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(table: ReadonlyArray<readonly [number, T]>): T {
    const total = table.reduce((s, [w]) => s + w, 0);
    let r = this.int(total);
    for (const [w, v] of table) {
      if (r < w) return v;
      r -= w;
    }
    return table[table.length - 1]![1];
  }

  /** Mostly short, sometimes long: lengths of hostile inputs cluster at the edges. */
  length(max: number): number {
    return this.weighted([
      [6, this.int(Math.min(max, 16) + 1)],
      [3, this.int(Math.min(max, 256) + 1)],
      [1, this.int(max + 1)],
    ]);
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  /** A string of `n` pieces drawn from `alphabet` (pieces may be longer than one character). */
  string(alphabet: readonly string[], n: number): string {
    let s = "";
    for (let i = 0; i < n; i++) s += this.pick(alphabet);
    return s;
  }

  /** A fresh generator derived from this one (for a sub-case that must not shift the rest). */
  fork(): Rng {
    return new Rng(this.u32());
  }
}

function envInt(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}=${raw} is not a non-negative integer`);
  return n;
}

/** The run's seed: FUZZ_SEED, or the fixed default so that every run tests the same cases. */
export const FUZZ_SEED = envInt("FUZZ_SEED") ?? 0x5eed_2026;

export function iterations(defaultCount: number): number {
  return envInt("FUZZ_ITERATIONS") ?? defaultCount;
}

/** Renders an input for a failure message: Buffers as hex, long things cut. */
export function show(value: unknown, max = 2_000): string {
  const text = JSON.stringify(value, (_, v: unknown) => {
    if (v && typeof v === "object" && (v as { type?: unknown }).type === "Buffer" && Array.isArray((v as { data?: unknown }).data)) {
      return `<hex ${Buffer.from((v as { data: number[] }).data).toString("hex")}>`;
    }
    if (v instanceof Map) return { map: [...v] };
    return v;
  });
  return text === undefined ? String(value) : text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text;
}

/**
 * Runs `check` on `count` generated inputs. Case i uses its own generator seeded from (seed, i),
 * so a failure replays with FUZZ_SEED alone and names the case.
 */
export async function forAll<T>(
  label: string,
  count: number,
  generate: (rng: Rng, i: number) => T,
  check: (input: T, i: number) => void | Promise<void>,
): Promise<void> {
  const n = iterations(count);
  console.log(`[fuzz] ${label}: seed=${FUZZ_SEED} iterations=${n} (override with FUZZ_SEED / FUZZ_ITERATIONS)`);
  const root = new Rng(FUZZ_SEED ^ hash(label));
  for (let i = 0; i < n; i++) {
    const rng = new Rng(root.u32());
    const input = generate(rng, i);
    try {
      await check(input, i);
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      e.message = `${label}: case ${i} of seed ${FUZZ_SEED} failed: ${e.message}\ninput: ${show(input)}`;
      throw e;
    }
  }
}

/** FNV-1a, so that each property draws its own sequence from one seed. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
