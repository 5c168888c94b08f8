import { describe, expect, it } from "vitest";
import { TtlLruCache } from "../../src/dns/cache.ts";

function cache(maxEntries = 100, maxWeight = 1e9) {
  const clock = { now: 0 };
  return { clock, c: new TtlLruCache<string>({ maxEntries, maxWeight, now: () => clock.now }) };
}

describe("TtlLruCache", () => {
  it("returns an entry until its TTL has passed, and not after", () => {
    const { clock, c } = cache();
    c.set("k", "v", 1000);
    clock.now = 999;
    expect(c.get("k")).toBe("v");
    clock.now = 1000;
    expect(c.get("k")).toBeUndefined();
    expect(c.size).toBe(0);
    expect(c.expirations).toBe(1);
  });

  it("does not store a zero TTL", () => {
    const { c } = cache();
    c.set("k", "v", 0);
    expect(c.get("k")).toBeUndefined();
  });

  it("evicts the least recently used entry, where a hit counts as use", () => {
    const { c } = cache(2);
    c.set("a", "1", 1000);
    c.set("b", "2", 1000);
    expect(c.get("a")).toBe("1");
    c.set("c", "3", 1000);
    expect(c.get("b")).toBeUndefined();
    expect(c.get("a")).toBe("1");
    expect(c.get("c")).toBe("3");
    expect(c.evictions).toBe(1);
  });

  it("keeps the total weight under its cap and refuses single entries above it", () => {
    const { c } = cache(100, 100);
    c.set("a", "1", 1000, 60);
    c.set("b", "2", 1000, 60);
    expect(c.get("a")).toBeUndefined();
    expect(c.weight).toBe(60);
    c.set("huge", "x", 1000, 101);
    expect(c.get("huge")).toBeUndefined();
    expect(c.get("b")).toBe("2");
  });

  it("replaces an entry without counting its old weight twice", () => {
    const { c } = cache(100, 100);
    c.set("a", "1", 1000, 50);
    c.set("a", "2", 1000, 50);
    expect(c.weight).toBe(50);
    expect(c.get("a")).toBe("2");
  });
});
