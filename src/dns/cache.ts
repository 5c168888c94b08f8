/**
 * A TTL cache with least-recently-used eviction, bounded both by entry count and by an
 * approximate byte weight: names in mail come from untrusted senders, and a few thousand
 * 64 KB TXT answers would otherwise be enough to grow the daemon without limit.
 * Time comes from an injectable clock so tests can move it instead of sleeping.
 */
export interface TtlCacheOptions {
  maxEntries: number;
  maxWeight: number;
  /** Milliseconds, monotonic. */
  now: () => number;
}

interface Entry<V> {
  value: V;
  expiresAt: number;
  weight: number;
}

export class TtlLruCache<V> {
  // Map iteration order is insertion order: re-inserting on every hit makes the first key the LRU one.
  private readonly entries = new Map<string, Entry<V>>();
  private readonly opts: TtlCacheOptions;
  private totalWeight = 0;
  evictions = 0;
  expirations = 0;

  constructor(opts: TtlCacheOptions) {
    this.opts = opts;
  }

  get size(): number {
    return this.entries.size;
  }

  get weight(): number {
    return this.totalWeight;
  }

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    if (entry.expiresAt <= this.opts.now()) {
      this.totalWeight -= entry.weight;
      this.expirations++;
      return undefined;
    }
    this.entries.set(key, entry);
    return entry.value;
  }

  /** Stores for ttlMs milliseconds; a TTL of zero or less means "do not cache" (RFC 1035 3.2.1). */
  set(key: string, value: V, ttlMs: number, weight = 1): void {
    this.delete(key);
    if (ttlMs <= 0 || weight > this.opts.maxWeight) return;
    this.entries.set(key, { value, expiresAt: this.opts.now() + ttlMs, weight });
    this.totalWeight += weight;
    while (this.entries.size > this.opts.maxEntries || this.totalWeight > this.opts.maxWeight) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
      this.evictions++;
    }
  }

  delete(key: string): boolean {
    const entry = this.entries.get(key);
    if (!entry) return false;
    this.entries.delete(key);
    this.totalWeight -= entry.weight;
    return true;
  }

  clear(): void {
    this.entries.clear();
    this.totalWeight = 0;
  }
}
