// One set of cases, run against both history stores: the embedded SQLite one and PostgreSQL
// (a private cluster on loopback, see pg-cluster.ts). Reports must not depend on where the
// history was kept, so query(), policyDomains() and prune() must answer the same for the same
// rows: first each store against the expected values, then the two against each other on a
// corpus of awkward rows.
//
// The PostgreSQL half needs Debian's postgresql package: without it, it skips; under CI=true
// it fails.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { HistoryRecord, HistoryStore, HistoryStoreOptions, StoredHistoryRecord } from "../../src/reports/history.ts";
import { openPgHistoryStore } from "../../src/reports/history-pg.ts";
import { openHistoryStore } from "../../src/reports/history-sqlite.ts";
import { at, captureLogger, FULL, message, T0, T1 } from "./helpers.ts";
import { PG_LABEL, PG_SKIP, startCluster, type Cluster } from "./pg-cluster.ts";

// ---------------------------------------------------------------------------------------------
// The two stores, opened fresh for every case.

type Options = Partial<Omit<HistoryStoreOptions, "logger">>;

interface Subject {
  readonly name: string;
  readonly skip: boolean;
  /** Once per file, whichever suite asks first; tearDown() after the last. */
  setUp(): Promise<void>;
  tearDown(): Promise<void>;
  open(options?: Options): Promise<HistoryStore>;
}

function sqliteSubject(): Subject {
  let dir: string | undefined;
  let ready: Promise<void> | undefined;
  let n = 0;
  return {
    name: "SQLite",
    skip: false,
    setUp() {
      ready ??= mkdtemp(join(tmpdir(), "authmilter-conformance-")).then((d) => void (dir = d));
      return ready;
    },
    async tearDown() {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    },
    async open(options = {}) {
      if (dir === undefined) throw new Error("not set up");
      return openHistoryStore(join(dir, `h${++n}.sqlite`), { logger: captureLogger().logger, flushIntervalMs: 60_000, ...options });
    },
  };
}

function pgSubject(): Subject {
  let cluster: Cluster | undefined;
  let ready: Promise<void> | undefined;
  return {
    name: `PostgreSQL${PG_LABEL}`,
    skip: PG_SKIP,
    setUp() {
      ready ??= startCluster().then((c) => void (cluster = c));
      return ready;
    },
    async tearDown() {
      await cluster?.destroy();
    },
    async open(options = {}) {
      if (cluster === undefined) throw new Error("not set up");
      return openPgHistoryStore(await cluster.createDatabase(), { logger: captureLogger().logger, flushIntervalMs: 60_000, ...options });
    },
  };
}

const SQLITE = sqliteSubject();
const PG = pgSubject();

const ALL_DAY = { since: T0, until: T1 };
const EVER = { since: new Date(-8.64e15), until: new Date(8.64e15) };

/** Records the rows, writes them, and returns the store (closed after the test). */
async function filled(subject: Subject, rows: readonly HistoryRecord[], options?: Options): Promise<HistoryStore> {
  const s = await subject.open(options);
  opened.push(s);
  for (const r of rows) s.record(r);
  await s.flush();
  expect(s.counters).toMatchObject({ written: rows.length, dropped: 0, pending: 0 });
  return s;
}

const opened: HistoryStore[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
});
afterAll(async () => {
  await Promise.all([SQLITE.tearDown(), PG.tearDown()]);
});

/** Bytewise (UTF-8) order, which SQLite's BINARY collation uses. */
function bytewise(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

const policy = (domain: string, over: Partial<NonNullable<HistoryRecord["policy"]>> = {}) => ({ domain, p: "none" as const, rua: [], ruf: [], ...over });

// Text as mail and DNS can bring it. SQLite keeps all of it (code units that are no UTF-16, a
// lone surrogate, become U+FFFD on the way to UTF-8 in both stores); text over 1000 code units
// is cut, also in the middle of a surrogate pair.
const AWKWARD = {
  nul: "before\u0000after",
  soh: "x\u0001y\u0001\u0002z",
  control: "tab\there\r\nnewline\u001b[0m",
  quotes: `it's "quoted" \\ {braces} [1,2] $1 %s`,
  unicode: "bücher.example — 日本語 😀",
  lone: "x\ud800y",
  long: "a".repeat(999) + "😀" + "tail",
  json: '{"type":"other"}',
};

// ---------------------------------------------------------------------------------------------

for (const subject of [SQLITE, PG]) {
  describe.skipIf(subject.skip)(`history store conformance: ${subject.name}`, () => {
    beforeAll(() => subject.setUp());

    it("stores every field and reads the same record back", async () => {
      const s = await filled(subject, [FULL]);
      expect([...s.query(ALL_DAY)]).toEqual([{ ...FULL, id: 1 }]);
    });

    it("normalises on the way in: domain case and root dot, address spellings, result spellings", async () => {
      const s = await filled(subject, [
        message({
          sourceIp: "::ffff:192.0.2.7",
          headerFrom: "Example.COM.",
          envelopeFrom: "",
          dkim: [{ domain: "EXAMPLE.com", selector: "S1", result: "TEMPFAIL" as never }],
          spf: [{ domain: "example.com", scope: "EHLO" as never, result: "hardfail" as never }],
          overrides: [{ type: "whitelisted" as never }, { type: "Forwarded" as never, comment: "list" }],
          dmarc: "bogus" as never,
          dkimAligned: "PASS" as never,
          spfAligned: "maybe" as never,
          disposition: "discard" as never,
        }),
        message({ sourceIp: "[2001:DB8:0:0:0:0:0:1]", dkim: [{ domain: "x.example", result: "bogus" as never }] }),
      ]);
      const [a, b] = [...s.query(ALL_DAY)];
      expect(a).toMatchObject({
        sourceIp: "192.0.2.7",
        headerFrom: "example.com",
        envelopeFrom: "",
        dkim: [{ domain: "example.com", selector: "S1", result: "temperror" }],
        spf: [{ scope: "helo", result: "fail" }],
        overrides: [{ type: "other", comment: "whitelisted" }, { type: "forwarded", comment: "list" }],
        dmarc: "permerror",
        dkimAligned: "pass",
        spfAligned: "fail",
        disposition: "none",
      });
      expect(b).toMatchObject({ sourceIp: "2001:db8::1", dkim: [{ result: "permerror" }] });
    });

    it("keeps text as it came: NUL and other control characters, quotes, non-ASCII; cuts it at 1000", async () => {
      const rows = Object.entries(AWKWARD).map(([name, t]) =>
        message({
          queueId: `${name}:${t}`,
          headerFrom: t,
          dkim: [{ domain: t, selector: t, result: "fail", humanResult: t }],
          spf: [{ domain: t, scope: "mfrom", result: "pass" }],
          policy: policy(t, { fo: t, rua: [t], ruf: [t] }),
          overrides: [{ type: "other", comment: t }],
        }),
      );
      const s = await filled(subject, rows);
      const got = [...s.query(ALL_DAY)];
      expect(got).toHaveLength(rows.length);
      const cut = (t: string): string => (t.length > 1000 ? t.slice(0, 1000) : t);
      // A column holds UTF-8 (a lone surrogate becomes U+FFFD); JSON (rua, ruf, overrides) escapes it.
      const column = (t: string): string => cut(t).toWellFormed();
      Object.values(AWKWARD).forEach((t, i) => {
        const r = got[i]!;
        const lower = column(t.trim().toLowerCase());
        expect(r.headerFrom).toBe(lower);
        expect(r.dkim).toEqual([{ domain: lower, selector: column(t), result: "fail", humanResult: column(t) }]);
        expect(r.spf[0]?.domain).toBe(lower);
        expect(r.policy).toMatchObject({ domain: lower, fo: column(t), rua: [t], ruf: [t] });
        expect(r.overrides).toEqual([{ type: "other", comment: cut(t) }]);
      });
      expect(got[0]?.queueId).toBe("nul:before\u0000after");
      expect(got.find((r) => r.queueId?.startsWith("long:"))?.dkim[0]?.selector).toBe("a".repeat(999) + "\ufffd");
    });

    it("treats hostile text as data: parameters, not SQL", async () => {
      const evil = "x'); drop table messages; --";
      const s = await filled(subject, [message({ headerFrom: evil, dkim: [{ domain: evil, selector: "'", result: "pass" }] })]);
      const [got, ...rest] = [...s.query(ALL_DAY)];
      expect(rest).toEqual([]);
      expect(got?.headerFrom).toBe(evil);
      expect(got?.dkim[0]).toEqual({ domain: evil, selector: "'", result: "pass" });
    });

    it("queries [since, until) and lists the policy domains of that interval only", async () => {
      const s = await filled(subject, [
        message({ time: at("2024-04-30T23:59:59.999Z"), policy: policy("before.example") }),
        message({ time: T0, queueId: "first" }),
        message({ time: at("2024-05-01T23:59:59.999Z"), queueId: "last", policy: policy("b.example") }),
        message({ time: T1, policy: policy("after.example") }),
        message({ policy: undefined, dmarc: "none" }),
      ]);
      expect([...s.query(ALL_DAY)].map((r) => r.queueId)).toEqual(["first", "4Vabc123", "last"]);
      expect(s.policyDomains(T0, T1)).toEqual(["b.example", "example.com"]);
      expect([...s.query({ ...ALL_DAY, policyDomain: "b.example" })].map((r) => r.queueId)).toEqual(["last"]);
      expect([...s.query(ALL_DAY)].find((r) => r.dmarc === "none")?.policy).toBeUndefined();
      // An empty or reversed interval, and a domain spelt otherwise than stored, match nothing.
      expect([...s.query({ since: T0, until: T0 })]).toEqual([]);
      expect([...s.query({ since: T1, until: T0 })]).toEqual([]);
      expect(s.policyDomains(T1, T0)).toEqual([]);
      expect([...s.query({ ...ALL_DAY, policyDomain: "B.example" })]).toEqual([]);
    });

    it("sorts policy domains bytewise, whatever the database's locale", async () => {
      const domains = ["b.example", "a-b.example", "ab.example", "a.example", "é.example", "z.example", "ä.example", "a_b.example", "1.example"];
      const s = await filled(
        subject,
        domains.map((d) => message({ policy: policy(d) })),
      );
      expect(s.policyDomains(T0, T1)).toEqual([...domains].sort(bytewise));
    });

    it("keeps the parts of a policy that were published and only those", async () => {
      const s = await filled(subject, [
        message({ queueId: "bare", policy: policy("a.example") }),
        message({ queueId: "t=y", policy: policy("a.example", { testing: true, pct: 0, sp: "quarantine" }) }),
        message({ queueId: "t=n", policy: policy("a.example", { testing: false, pct: 100 }) }),
        message({ queueId: "bad pct", policy: policy("a.example", { pct: 150 }) }),
        message({ queueId: "fraction", policy: policy("a.example", { pct: 12.5, adkim: "x" as never }) }),
        message({ queueId: "bad p", policy: { ...policy("b.example"), p: "bogus" as never } }),
        message({ queueId: "none", policy: undefined, dkim: [], spf: [], overrides: [] }),
      ]);
      const byId = new Map([...s.query(ALL_DAY)].map((r) => [r.queueId, r]));
      expect(byId.get("bare")?.policy).toEqual({ domain: "a.example", p: "none", rua: [], ruf: [] });
      expect(byId.get("t=y")?.policy).toEqual({ domain: "a.example", p: "none", sp: "quarantine", pct: 0, testing: true, rua: [], ruf: [] });
      expect(byId.get("t=n")?.policy).toEqual({ domain: "a.example", p: "none", pct: 100, testing: false, rua: [], ruf: [] });
      expect(byId.get("bad pct")?.policy).toEqual({ domain: "a.example", p: "none", rua: [], ruf: [] });
      expect(byId.get("fraction")?.policy).toEqual({ domain: "a.example", p: "none", rua: [], ruf: [] });
      expect(byId.get("bad p")?.policy).toBeUndefined();
      expect(byId.get("none")).toMatchObject({ dkim: [], spf: [], overrides: [] });
      expect(byId.get("none")?.policy).toBeUndefined();
      expect(s.policyDomains(T0, T1)).toEqual(["a.example"]);
    });

    it("returns messages of the same millisecond in the order they were recorded, across batches", async () => {
      const rows = Array.from({ length: 7 }, (_, i) => message({ queueId: `q${i}`, time: at("2024-05-01T08:00:00Z") }));
      const s = await filled(subject, [message({ queueId: "later", time: at("2024-05-01T09:00:00Z") }), ...rows], { batchSize: 3 });
      const got = [...s.query(ALL_DAY)];
      expect(got.map((r) => r.queueId)).toEqual([...rows.map((r) => r.queueId), "later"]);
      expect(got.map((r) => r.id)).toEqual([2, 3, 4, 5, 6, 7, 8, 1]);
    });

    it("prunes messages older than the date and returns how many", async () => {
      const s = await filled(subject, [
        message({ time: at("2024-03-01T00:00:00Z"), queueId: "old" }),
        message({ time: at("2024-04-30T23:59:59.999Z"), queueId: "older" }),
        message({ time: T0, queueId: "kept" }),
      ]);
      expect(s.prune(T0)).toBe(2);
      expect(s.prune(T0)).toBe(0);
      expect([...s.query(EVER)].map((r) => r.queueId)).toEqual(["kept"]);
      expect([...s.query(EVER)][0]?.dkim).toHaveLength(1);
    });

    it("prunes the same without blocking (pruneAsync, the daemon's daily prune)", async () => {
      const s = await filled(subject, [message({ time: at("2024-03-01T00:00:00Z"), queueId: "old" }), message({ time: T0, queueId: "kept" })]);
      expect(await s.pruneAsync(T0)).toBe(1);
      expect(await s.pruneAsync(T0)).toBe(0);
      expect([...s.query(EVER)].map((r) => r.queueId)).toEqual(["kept"]);
    });

    it("an invalid date matches nothing, in queries and in prune", async () => {
      const s = await filled(subject, [message()]);
      const invalid = new Date(Number.NaN);
      expect([...s.query({ since: invalid, until: T1 })]).toEqual([]);
      expect([...s.query({ since: T0, until: invalid })]).toEqual([]);
      expect(s.policyDomains(invalid, T1)).toEqual([]);
      expect(s.prune(invalid)).toBe(0);
      expect([...s.query(ALL_DAY)]).toHaveLength(1);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The two stores against each other: every answer, record for record, on rows that differ in
// every way the tests above take one at a time.

function corpus(): HistoryRecord[] {
  const texts = Object.values(AWKWARD);
  const domains = ["example.com", "b.example", "B.Example.", "a-b.example", "é.example", AWKWARD.nul, AWKWARD.soh, ""];
  const rows: HistoryRecord[] = [FULL];
  for (let i = 0; i < 240; i++) {
    const pick = <T>(xs: readonly T[], k: number): T => xs[(i * k + (i >> 2)) % xs.length]!;
    const d = pick(domains, 3);
    rows.push({
      // Several messages per millisecond, some on the interval's edges.
      time: new Date(T0.getTime() - 2 + Math.floor(i / 3) * 431_000 + (i % 7 === 0 ? 86_400_000 : 0)),
      ...(i % 5 === 0 ? {} : { queueId: `q${i}${pick(texts, 7)}` }),
      sourceIp: pick(["192.0.2.1", "::ffff:198.51.100.7", "2001:DB8::1", "[192.0.2.9]", "not an address", ""], 5),
      headerFrom: pick(domains, 5),
      ...(i % 4 === 0 ? {} : { envelopeFrom: pick(domains, 11) }),
      dkim: Array.from({ length: i % 4 }, (_, k) => ({
        domain: pick(domains, k + 2),
        ...(k % 2 === 0 ? { selector: pick(texts, k + 3) } : {}),
        result: pick(["pass", "fail", "neutral", "policy", "tempfail", "bogus", "permerror", "none"] as never[], k + 1),
        ...(k === 1 ? { humanResult: pick(texts, 13) } : {}),
      })),
      spf: Array.from({ length: i % 3 }, (_, k) => ({
        domain: pick(domains, k + 5),
        scope: pick(["mfrom", "helo", "EHLO", "x"] as never[], k + 1),
        result: pick(["pass", "softfail", "soft-fail", "hardfail", "none", "bogus"] as never[], k + 2),
      })),
      dmarc: pick(["pass", "fail", "none", "temperror", "permerror", "weird"] as never[], 1),
      dkimAligned: pick(["pass", "fail", "PASS"] as never[], 1),
      spfAligned: pick(["pass", "fail", "x"] as never[], 2),
      ...(i % 6 === 5
        ? {}
        : {
            policy: {
              domain: d,
              p: pick(["none", "quarantine", "reject", "REJECT", "bogus"] as never[], 1),
              ...(i % 2 === 0 ? { sp: pick(["none", "reject", "x"] as never[], 1) } : {}),
              ...(i % 3 === 0 ? { pct: pick([0, 50, 100, 101, -1, 2.5], 1) } : {}),
              ...(i % 4 === 1 ? { testing: i % 8 === 1 } : {}),
              ...(i % 5 === 2 ? { adkim: pick(["r", "s", "R", "q"] as never[], 1), aspf: pick(["s", "r"] as never[], 1) } : {}),
              ...(i % 7 === 3 ? { fo: pick(texts, 1) } : {}),
              rua: Array.from({ length: i % 3 }, (_, k) => `mailto:${pick(texts, k + 1)}@x`),
              ruf: i % 9 === 0 ? [pick(texts, 2)] : [],
            },
          }),
      disposition: pick(["none", "quarantine", "reject", "discard"] as never[], 1),
      ...(i % 3 === 0
        ? {}
        : {
            overrides: Array.from({ length: i % 4 }, (_, k) => ({
              type: pick(["forwarded", "sampled_out", "local_policy", "whitelisted", "Mailing_List"] as never[], k + 1),
              ...(k % 2 === 0 ? { comment: pick(texts, k + 4) } : {}),
            })),
          }),
    });
  }
  return rows;
}

describe.skipIf(PG_SKIP)(`history store conformance: SQLite and PostgreSQL answer alike${PG_LABEL}`, () => {
  beforeAll(async () => {
    await Promise.all([SQLITE.setUp(), PG.setUp()]);
  });

  it("the same rows give the same records, policy domains and prune counts", async () => {
    const rows = corpus();
    const [sqlite, pg] = await Promise.all([filled(SQLITE, rows, { batchSize: 17 }), filled(PG, rows, { batchSize: 17 })]);
    const intervals = [ALL_DAY, EVER, { since: new Date(T0.getTime() - 1), until: new Date(T1.getTime() + 1) }, { since: T1, until: T0 }];
    const answers = (s: HistoryStore) => {
      const out: unknown[] = [];
      for (const iv of intervals) {
        const domains = s.policyDomains(iv.since, iv.until);
        out.push(domains, [...s.query(iv)]);
        for (const d of [...domains, "B.example", "missing.example"]) out.push([...s.query({ ...iv, policyDomain: d })]);
      }
      return out;
    };
    const fromSqlite = answers(sqlite);
    const fromPg = answers(pg);
    // Not vacuous: the corpus spans the edges it is meant to.
    const all = fromSqlite[1] as StoredHistoryRecord[];
    expect(all.length).toBeGreaterThan(100);
    expect(all.some((r) => r.queueId?.includes("\u0000"))).toBe(true);
    expect((fromSqlite[0] as string[]).length).toBeGreaterThan(4);
    expect(fromPg).toEqual(fromSqlite);

    for (const cut of [new Date(T0.getTime() + 3_600_000), T1, new Date(8.64e15)]) {
      expect(pg.prune(cut)).toBe(sqlite.prune(cut));
      expect(answers(pg)).toEqual(answers(sqlite));
    }
  });
});
