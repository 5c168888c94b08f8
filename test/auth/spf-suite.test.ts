// The RFC 7208 test suite (openspf/pyspf rfc7208-tests.yml) run through OUR SPF path: every case
// is a message driven through the handler with runMessage, the suite's zonedata served by the
// loopback test DNS server (zoneFromSpfSuite, pyspf driver semantics), and the result read back
// from the Authentication-Results the handler writes: the smtp.mailfrom entry when MAIL FROM is
// not empty, else the smtp.helo entry (for the null sender the HELO identity is the one checked,
// RFC 7208 §2.4). A list of expected results means any of them.
//
// The suite is read from the shared reference checkout next to the repository and never copied
// into it. Without it this file skips, and fails under CI=true.
//
// Not compared: the suite's `explanation` (exp= text). We do not put it into the A-R (RFC 8601
// has no place for it), so there is nothing of ours to compare it with.

import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { buildAuthHandler, buildResolver } from "../../src/auth/build.ts";
import { parseMessage, runMessage } from "../../src/auth/offline.ts";
import { defaultConfig, type Config } from "../../src/config/schema.ts";
import { startDnsServer, zoneFromSpfSuite, type DnsTestServer } from "../support/dns-server.ts";

const SUITE = fileURLToPath(new URL("../../../shared/reference/spf-test-suite/rfc7208-tests.yml", import.meta.url));
const CI = process.env["CI"] === "true";

interface SuiteCase {
  readonly description?: string;
  readonly spec?: string | string[];
  readonly helo: string;
  readonly host: string;
  readonly mailfrom: string;
  readonly result: string | string[];
  readonly explanation?: string;
}

interface SuiteDocument {
  readonly description: string;
  readonly tests: Record<string, SuiteCase>;
  readonly zonedata: Record<string, unknown>;
}

const documents: SuiteDocument[] = existsSync(SUITE)
  ? parseAllDocuments(readFileSync(SUITE, "utf8")).map((d) => d.toJS() as SuiteDocument)
  : [];

/**
 * Cases where our handler does not report what the suite expects, with the reason. Each is run
 * as `it.fails`, so it turns red the day we start to agree (and must leave this list).
 * Empty: every case of the suite agrees.
 */
const DISAGREEMENTS: ReadonlyMap<string, string> = new Map<string, string>([]);

/**
 * Cases whose expected result is read differently from the rest, with the reason.
 * helo-domain-literal: the null sender with HELO "[1.2.3.5]". An address literal is no SPF
 * identity (RFC 7208 §2.3), so nothing is checked and the suite's "none" means "no result";
 * our handler then writes no spf= entry at all (there is no domain to put in smtp.helo),
 * which is what is asserted for it.
 */
const NO_ENTRY_MEANS_NONE = new Set(["helo-domain-literal"]);

const MESSAGE = parseMessage(
  Buffer.from(
    "From: suite@authmilter.test\r\nTo: rcpt@authmilter.test\r\nSubject: RFC 7208 suite\r\n" +
      "Date: Thu, 26 Nov 2026 06:00:00 +0000\r\nMessage-ID: <spf-suite@authmilter.test>\r\n\r\nbody\r\n",
  ),
);

let dns: DnsTestServer;

beforeAll(async () => {
  dns = await startDnsServer();
});
afterAll(async () => {
  await dns?.close();
});

function config(): Config {
  const base = defaultConfig();
  return {
    ...base,
    mode: "verify",
    authservId: "mx.authmilter.test",
    // Every client of the suite is external (none is loopback, but say so rather than rely on it).
    internalHosts: [],
    verify: { ...base.verify, softwareHeader: false, spfSelfValidate: true, spfIgnoreResults: false, trustedAuthservIds: [] },
    // TIMEOUT names never answer; one short try makes them temperror quickly. No cache: every
    // case starts from the zone as served.
    dns: { ...base.dns, servers: dns.servers, timeoutMs: 300, tries: 1, cacheEntries: 0 },
  };
}

interface SpfEntry {
  readonly result: string;
  readonly identity: "mailfrom" | "helo";
}

/** Runs one case through the handler; returns the A-R (unfolded) and its spf= entries. */
async function runCase(t: SuiteCase): Promise<{ ar: string; spf: SpfEntry[] }> {
  const cfg = config();
  const resolver = buildResolver(cfg);
  try {
    const handler = await buildAuthHandler(cfg, resolver, pino({ level: "silent" }));
    const outcome = await runMessage(handler, { clientAddress: t.host, helo: t.helo, sender: t.mailfrom ?? "" }, MESSAGE);
    const ars = outcome.modifications.filter((m) => m.kind === "insheader" && m.name === "Authentication-Results");
    expect(ars, "one Authentication-Results header").toHaveLength(1);
    const ar = String((ars[0] as { value: string }).value).replace(/\n\t/g, " ");
    const spf = [...ar.matchAll(/(?:^|; )spf=([a-z]+) (?:[^;]*? )?smtp\.(mailfrom|helo)=/g)].map((m) => ({
      result: m[1]!,
      identity: m[2] as SpfEntry["identity"],
    }));
    return { ar, spf };
  } finally {
    resolver.close();
  }
}

async function checkCase(id: string, t: SuiteCase): Promise<void> {
  const expected = [t.result].flat();
  const { ar, spf } = await runCase(t);
  const mailfrom = spf.filter((e) => e.identity === "mailfrom");
  const helo = spf.filter((e) => e.identity === "helo");
  if (NO_ENTRY_MEANS_NONE.has(id)) {
    expect(expected).toContain("none");
    expect(spf, ar).toEqual([]);
    return;
  }
  if (t.mailfrom) {
    expect(mailfrom, ar).toHaveLength(1);
    expect(expected, `${id}: ${ar}`).toContain(mailfrom[0]!.result);
  } else {
    // The null sender: only the HELO identity, and only once.
    expect(mailfrom, ar).toEqual([]);
    expect(helo, ar).toHaveLength(1);
    expect(expected, `${id}: ${ar}`).toContain(helo[0]!.result);
  }
}

if (documents.length === 0) {
  describe(`RFC 7208 test suite ${CI ? "[CI: missing" : "[skipped: missing"} ${SUITE}]`, () => {
    it.skipIf(!CI)("is present (it must be under CI=true)", () => {
      throw new Error(`the RFC 7208 test suite is missing under CI=true: ${SUITE}`);
    });
  });
} else {
  describe("RFC 7208 test suite through the handler", () => {
    it("has all its documents and cases", () => {
      // A truncated or reshaped file must not pass by running fewer cases.
      expect(documents.length).toBeGreaterThanOrEqual(16);
      expect(documents.reduce((n, d) => n + Object.keys(d.tests).length, 0)).toBeGreaterThanOrEqual(200);
      for (const id of [...DISAGREEMENTS.keys(), ...NO_ENTRY_MEANS_NONE]) {
        expect(documents.some((d) => id in d.tests), `${id} is a case of the suite`).toBe(true);
      }
    });

    for (const doc of documents) {
      describe(doc.description, () => {
        beforeAll(() => {
          dns.setZone(zoneFromSpfSuite(doc.zonedata));
        });

        for (const [id, t] of Object.entries(doc.tests)) {
          const name = `${id}: ${t.mailfrom || "<>"} from ${t.host} (helo ${t.helo}) is ${[t.result].flat().join(" or ")}`;
          const why = DISAGREEMENTS.get(id);
          if (why !== undefined) it.fails(`${name} [we disagree: ${why}]`, () => checkCase(id, t));
          else it(name, () => checkCase(id, t));
        }
      });
    }
  });
}
