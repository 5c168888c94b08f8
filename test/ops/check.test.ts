// The daily DNS check against a loopback DNS server with generated keys: each kind of problem an
// admin can have (wrong key published, key missing or revoked, SPF missing or not covering our
// IPs, DMARC missing or broken) must show up as its own status.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildResolver } from "../../src/auth/build.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { generateKey, type GeneratedKey } from "../../src/keys/genkey.ts";
import { configuredOutboundIps, formatReport, NO_OUTBOUND_IPS, runChecks, signingTargets, validateDmarcRecord, type CheckReport } from "../../src/ops/check.ts";
import { startDnsServer, type DnsTestServer, type Zone } from "../support/dns-server.ts";

let dir: string;
let dns: DnsTestServer;
let rsa: GeneratedKey;
let ed: GeneratedKey;
let other: GeneratedKey;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "authmilter-check-"));
  dns = await startDnsServer();
  rsa = await generateKey({ domain: "example.com", selector: "s1", directory: dir, bits: 1024 });
  ed = await generateKey({ domain: "example.net", selector: "ed1", type: "ed25519", directory: dir });
  other = await generateKey({ domain: "example.com", selector: "other", directory: dir, bits: 1024 });
});
afterAll(async () => {
  await dns.close();
  await rm(dir, { recursive: true, force: true });
});
afterEach(() => {
  dns.setZone({});
});

const GOOD: Zone = {
  "example.com": { TXT: ["google-site-verification=abc", "v=spf1 ip4:192.0.2.10 ip6:2001:db8::25 -all"] },
  "_dmarc.example.com": { TXT: "v=DMARC1; p=reject; rua=mailto:dmarc@example.com" },
};

/** The good zone for example.com (key s1 published), with names replaced; {} leaves a name without records. */
function zone(overrides: Zone = {}): Zone {
  return { ...GOOD, "s1._domainkey.example.com": { TXT: [[...rsa.record.strings]] }, ...overrides };
}

function config(signing: string, extra = ""): Config {
  return parseConfig(
    `hostname: mx.example.com\ndns:\n  servers: ["${dns.servers[0]}"]\n  timeout: 1s\n  tries: 1\n  cacheEntries: 0\nsigning:\n${signing}${extra}`,
    "check.yaml",
  );
}

const ONE_KEY = () => `  keys:\n    - domain: example.com\n      selector: s1\n      keyFile: ${rsa.privateKeyPath}\n`;

async function check(cfg: Config, outboundIps?: string[]): Promise<CheckReport> {
  const resolver = buildResolver(cfg);
  try {
    return await runChecks(cfg, { resolver, ...(outboundIps !== undefined && { outboundIps }) });
  } finally {
    resolver.close();
  }
}

const statuses = (r: CheckReport) => r.rows.map((row) => `${row.domain} ${row.check}${row.ip ? ` ${row.ip}` : ""}: ${row.status}`);
const row = (r: CheckReport, check: string) => r.rows.find((x) => x.check === check)!;

describe("authmilter check: DKIM, SPF and DMARC of each signing domain", () => {
  it("all good: the key matches, SPF authorizes every outbound IP, DMARC is valid", async () => {
    dns.setZone({
      ...zone(),
      "ed1._domainkey.example.net": { TXT: [[...ed.record.strings]] },
      "example.net": { TXT: "v=spf1 include:_spf.example.com -all" },
      "_spf.example.com": { TXT: "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all" },
      "_dmarc.example.net": { TXT: "v=DMARC1;p=quarantine;adkim=s;pct=100" },
    });
    const cfg = config(`${ONE_KEY()}    - domain: example.net\n      selector: ed1\n      keyFile: ${ed.privateKeyPath}\n`);
    const r = await check(cfg, ["192.0.2.10", "2001:db8::25"]);
    expect(statuses(r)).toEqual([
      "example.com dkim: ok",
      "example.com spf 192.0.2.10: ok",
      "example.com spf 2001:db8::25: ok",
      "example.com dmarc: ok",
      "example.net dkim: ok",
      "example.net spf 192.0.2.10: ok",
      "example.net spf 2001:db8::25: ok",
      "example.net dmarc: ok",
    ]);
    expect(r.ok).toBe(true);
    expect(r.domains).toEqual(["example.com", "example.net"]);
    expect(r.rows[0]).toMatchObject({ selector: "s1", key: rsa.privateKeyPath, detail: `s1._domainkey.example.com matches ${rsa.privateKeyPath} (1024-bit RSA)` });
    expect(r.rows[4]!.detail).toContain("(Ed25519)");
    expect(row(r, "dmarc").detail).toBe("_dmarc.example.com: p=reject rua=mailto:dmarc@example.com");
    expect(r.notes).toEqual([]);
    // Everything went through the configured resolver to our server.
    expect(dns.count({ name: "s1._domainkey.example.com", type: "TXT" })).toBeGreaterThan(0);
    expect(dns.count({ name: "_spf.example.com", type: "TXT" })).toBeGreaterThan(0);
  });

  it("a published key that is another key: mismatch", async () => {
    dns.setZone(zone({ "s1._domainkey.example.com": { TXT: [[...other.record.strings]] } }));
    const r = await check(config(ONE_KEY()), ["192.0.2.10"]);
    expect(row(r, "dkim")).toMatchObject({ status: "mismatch" });
    expect(row(r, "dkim").detail).toMatch(/^s1\._domainkey\.example\.com: public key mismatch/);
    expect(r.ok).toBe(false);
  });

  it("a record of the wrong key type is a mismatch too", async () => {
    dns.setZone(zone({ "s1._domainkey.example.com": { TXT: [[...ed.record.strings]] } }));
    const r = await check(config(ONE_KEY()), ["192.0.2.10"]);
    expect(row(r, "dkim")).toMatchObject({ status: "mismatch", detail: "s1._domainkey.example.com: record says k=ed25519 but the private key is rsa" });
  });

  it("no key record, or TXT records that are not DKIM keys: missing", async () => {
    dns.setZone(zone({ "s1._domainkey.example.com": {} }));
    let r = await check(config(ONE_KEY()), ["192.0.2.10"]);
    expect(row(r, "dkim")).toMatchObject({ status: "missing" });
    expect(row(r, "dkim").detail).toMatch(/^no TXT record at s1\._domainkey\.example\.com/);
    dns.setZone(zone({ "s1._domainkey.example.com": { TXT: "hello world" } }));
    r = await check(config(ONE_KEY()), ["192.0.2.10"]);
    expect(row(r, "dkim")).toMatchObject({ status: "missing", detail: "the TXT records at s1._domainkey.example.com are not DKIM key records" });
    expect(r.ok).toBe(false);
  });

  it("an empty p=: revoked", async () => {
    dns.setZone(zone({ "s1._domainkey.example.com": { TXT: "v=DKIM1; k=rsa; p=" } }));
    const r = await check(config(ONE_KEY()), ["192.0.2.10"]);
    expect(row(r, "dkim").status).toBe("revoked");
    expect(r.ok).toBe(false);
  });

  it("two key records: invalid; a DNS failure: error", async () => {
    dns.setZone(zone({ "s1._domainkey.example.com": { TXT: [[...rsa.record.strings], [...other.record.strings]] } }));
    expect(row(await check(config(ONE_KEY()), ["192.0.2.10"]), "dkim").status).toBe("invalid");
    dns.setZone(zone({ "s1._domainkey.example.com": { behaviour: "servfail" } }));
    const r = await check(config(ONE_KEY()), ["192.0.2.10"]);
    expect(row(r, "dkim")).toMatchObject({ status: "error", detail: "DNS lookup of s1._domainkey.example.com failed (ESERVFAIL)" });
  });

  it("a key file that cannot be read: error, and the other checks still run", async () => {
    dns.setZone(zone());
    const cfg = config(`  keys:\n    - domain: example.com\n      selector: s1\n      keyFile: ${join(dir, "nope.private")}\n`);
    const r = await check(cfg, ["192.0.2.10"]);
    expect(statuses(r)).toEqual(["example.com dkim: error", "example.com spf 192.0.2.10: ok", "example.com dmarc: ok"]);
    expect(row(r, "dkim").detail).toMatch(/nope\.private/);
  });

  it("no SPF record: missing (also when the domain has other TXT records)", async () => {
    dns.setZone(zone({ "example.com": { TXT: "google-site-verification=abc" } }));
    let r = await check(config(ONE_KEY()), ["192.0.2.10"]);
    expect(statuses(r)).toEqual(["example.com dkim: ok", "example.com spf: missing", "example.com dmarc: ok"]);
    expect(row(r, "spf").detail).toBe("no SPF record (v=spf1) among the TXT records at example.com");
    dns.setZone(zone({ "example.com": {} }));
    r = await check(config(ONE_KEY()), ["192.0.2.10"]);
    expect(row(r, "spf")).toMatchObject({ status: "missing" });
    expect(r.ok).toBe(false);
  });

  it("SPF that does not authorize an outbound IP: fail for that IP only", async () => {
    dns.setZone(zone({ "example.com": { TXT: "v=spf1 ip4:192.0.2.10 ~all" } }));
    const r = await check(config(ONE_KEY()), ["192.0.2.10", "198.51.100.7"]);
    expect(statuses(r)).toEqual(["example.com dkim: ok", "example.com spf 192.0.2.10: ok", "example.com spf 198.51.100.7: fail", "example.com dmarc: ok"]);
    expect(r.rows[2]!.detail).toMatch(/^198\.51\.100\.7 not authorized: softfail/);
    expect(r.ok).toBe(false);
  });

  it("two SPF records, or one that is broken: invalid", async () => {
    dns.setZone(zone({ "example.com": { TXT: ["v=spf1 -all", "v=spf1 ip4:192.0.2.10 -all"] } }));
    expect(row(await check(config(ONE_KEY()), ["192.0.2.10"]), "spf").status).toBe("invalid");
    dns.setZone(zone({ "example.com": { TXT: "v=spf1 ip4:192.0.2.10 frobnicate:x -all" } }));
    const r = await check(config(ONE_KEY()), ["192.0.2.10"]);
    expect(row(r, "spf")).toMatchObject({ status: "invalid", ip: "192.0.2.10" });
    expect(row(r, "spf").detail).toMatch(/permerror/);
  });

  it("without outbound IPs, SPF is checked for presence and a note says so", async () => {
    dns.setZone(zone());
    const r = await check(config(ONE_KEY()));
    expect(row(r, "spf")).toMatchObject({ status: "ok" });
    expect(row(r, "spf").detail).toContain(NO_OUTBOUND_IPS);
    expect(r.notes).toContain(NO_OUTBOUND_IPS);
    expect(r.outboundIps).toEqual([]);
    expect(r.ok).toBe(true);
  });

  it("reads check.outboundIps from the configuration when it is there", async () => {
    dns.setZone(zone({ "example.com": { TXT: "v=spf1 ip4:192.0.2.10 -all" } }));
    const cfg: Config = { ...config(ONE_KEY()), check: { outboundIps: ["192.0.2.10", "203.0.113.5"] } };
    expect(configuredOutboundIps(cfg)).toEqual({ ips: ["192.0.2.10", "203.0.113.5"] });
    const r = await check(cfg);
    expect(statuses(r)).toEqual(["example.com dkim: ok", "example.com spf 192.0.2.10: ok", "example.com spf 203.0.113.5: fail", "example.com dmarc: ok"]);
    expect(configuredOutboundIps(config(ONE_KEY()))).toEqual({ ips: undefined });
  });

  it("no DMARC record: missing; a broken one: invalid", async () => {
    dns.setZone(zone({ "_dmarc.example.com": {} }));
    let r = await check(config(ONE_KEY()), ["192.0.2.10"]);
    expect(row(r, "dmarc")).toMatchObject({ status: "missing", detail: "no DMARC record at _dmarc.example.com" });
    for (const [txt, why] of [
      ["v=DMARC1; p=bogus", /p=bogus is not none, quarantine or reject/],
      ["v=DMARC1; rua=mailto:d@example.com", /no p= tag/],
      ["v=DMARC1; p=none; pct=150", /pct=150/],
      ["v=DMARC1; p=none; p=reject", /appears twice/],
    ] as const) {
      dns.setZone(zone({ "_dmarc.example.com": { TXT: txt } }));
      r = await check(config(ONE_KEY()), ["192.0.2.10"]);
      expect(row(r, "dmarc").status, txt).toBe("invalid");
      expect(row(r, "dmarc").detail, txt).toMatch(why);
      expect(r.ok).toBe(false);
    }
    dns.setZone(zone({ "_dmarc.example.com": { TXT: ["v=DMARC1; p=none", "v=DMARC1; p=reject"] } }));
    expect(row(await check(config(ONE_KEY()), ["192.0.2.10"]), "dmarc").detail).toMatch(/2 DMARC records at _dmarc\.example\.com; receivers ignore them all/);
  });

  it("a subdomain without its own DMARC record is covered by its parent's", async () => {
    const key = await generateKey({ domain: "news.example.com", selector: "n1", directory: dir, bits: 1024 });
    dns.setZone({
      "n1._domainkey.news.example.com": { TXT: [[...key.record.strings]] },
      "news.example.com": { TXT: "v=spf1 ip4:192.0.2.10 -all" },
      "_dmarc.example.com": { TXT: "v=DMARC1; p=reject; sp=quarantine" },
    });
    const r = await check(config(`  keys:\n    - domain: news.example.com\n      selector: n1\n      keyFile: ${key.privateKeyPath}\n`), ["192.0.2.10"]);
    expect(row(r, "dmarc")).toMatchObject({ status: "ok", detail: "no record at _dmarc.news.example.com; _dmarc.example.com applies: p=reject sp=quarantine" });
    expect(r.ok).toBe(true);
  });

  it("KeyTable entries with a fixed domain are checked; \"%\" entries are noted; \"*\" native entries too", async () => {
    const table = join(dir, "key.table");
    await writeFile(table, `k1 example.com:s1:${rsa.privateKeyPath}\nany %:default:/etc/keys/%.private\n`);
    await writeFile(join(dir, "signing.table"), "*@example.com k1\n");
    dns.setZone(zone());
    const cfg = config(`  keyTable: ${table}\n  signingTable: refile:${join(dir, "signing.table")}\n  keys:\n    - domain: "*"\n      selector: x\n      keyFile: ${rsa.privateKeyPath}\n`);
    const { targets, notes } = await signingTargets(cfg);
    expect(targets.map((t) => `${t.selector}._domainkey.${t.domain} ${t.source}`)).toEqual([`s1._domainkey.example.com ${table}:1 (k1)`]);
    expect(notes).toEqual([
      'signing.keys[1] (*): signs with d= the author\'s domain, so there is no fixed domain to check',
      `${table}:2 (any): d= is "%" (the author's domain), so there is no fixed domain to check`,
    ]);
    const r = await check(cfg, ["192.0.2.10"]);
    expect(statuses(r)).toEqual(["example.com dkim: ok", "example.com spf 192.0.2.10: ok", "example.com dmarc: ok"]);
  });

  it("formats a table with one row per check and a summary line", async () => {
    dns.setZone(zone({ "_dmarc.example.com": {} }));
    const text = formatReport(await check(config(ONE_KEY()), ["192.0.2.10"]));
    const lines = text.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^DOMAIN\s+CHECK\s+STATUS\s+DETAIL$/);
    expect(lines[1]).toMatch(/^example\.com\s+dkim s1\s+ok\s+s1\._domainkey\.example\.com matches/);
    expect(lines[3]).toMatch(/^example\.com\s+dmarc\s+missing\s+no DMARC record at _dmarc\.example\.com$/);
    expect(lines.at(-1)).toBe("1 of 3 checks found problems");
  });
});

describe("validateDmarcRecord", () => {
  it.each([
    ["v=DMARC1; p=none", true],
    ["v=DMARC1;p=reject;sp=none;np=quarantine;adkim=s;aspf=r;pct=0;fo=1:d;t=y;ri=86400;rua=mailto:a@example.com,mailto:b@example.net!10m;", true],
    ["v=DMARC1; P=none", false],
    ["p=none; v=DMARC1", false],
    ["v=DMARC2; p=none", false],
    ["v=DMARC1; p=none; adkim=x", false],
    ["v=DMARC1; p=none; fo=2", false],
    ["v=DMARC1; p=none; rua=dmarc@example.com", false],
    ["v=DMARC1; p=none;; rua=mailto:x@example.com", false],
    ["v=DMARC1; p=none; junk", false],
  ])("%s → %s", (record, ok) => {
    expect(validateDmarcRecord(record).ok).toBe(ok);
  });
});
