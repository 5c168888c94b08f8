// `authmilter testkey`, run as the real command line against a loopback DNS server: every way a
// published record can be wrong, and the exit status cron sees for each.

import { spawnSync } from "node:child_process";
import { chmod, copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey, type GeneratedKey } from "../../src/keys/genkey.ts";
import { parseZoneEntry } from "../../src/keys/record.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";
import { findExecutable } from "../support/prereq.ts";
import { describeResult, run } from "../support/run.ts";

const NODE = fileURLToPath(new URL("../../node_modules/.bin/node", import.meta.url));
const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const DOMAIN = "example.com";

let dir: string;
let dns: DnsTestServer;
let rsa: GeneratedKey;
let ed: GeneratedKey;
let other: GeneratedKey;

const txt = (g: GeneratedKey) => [[...g.record.strings]];
const name = (selector: string) => `${selector}._domainkey.${DOMAIN}`;

function testkey(selector: string, keyPath: string, ...extra: string[]) {
  return run(NODE, [MAIN, "testkey", "-d", DOMAIN, "-s", selector, "-k", keyPath, "--dns", `127.0.0.1:${dns.port}`, ...extra], { timeoutMs: 60_000 });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "authmilter-testkey-"));
  rsa = await generateKey({ directory: dir, selector: "rsa", domain: DOMAIN });
  ed = await generateKey({ directory: dir, selector: "ed", domain: DOMAIN, type: "ed25519" });
  other = await generateKey({ directory: dir, selector: "other", domain: DOMAIN });
  dns = await startDnsServer({
    zone: {
      [name("rsa")]: { TXT: txt(rsa) },
      [name("ed")]: { TXT: txt(ed) },
      [name("wrong")]: { TXT: txt(other) },
      [name("revoked")]: { TXT: "v=DKIM1; k=rsa; p=" },
      [name("testing")]: { TXT: [["v=DKIM1; k=rsa; t=y; ", ...rsa.record.strings.slice(1)]] },
      [name("edtype")]: { TXT: [["v=DKIM1; k=ed25519; ", ...rsa.record.strings.slice(1)]] },
      [name("sha1only")]: { TXT: [["v=DKIM1; h=sha1; k=rsa; ", ...rsa.record.strings.slice(1)]] },
      [name("twice")]: { TXT: [...txt(rsa), ...txt(other)] },
      [name("spf")]: { TXT: "v=spf1 -all" },
      [name("broken")]: { behaviour: "servfail" },
    },
  });
});

afterAll(async () => {
  await dns?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("authmilter testkey", () => {
  it("RSA: the record matches the key: exit 0, says so", async () => {
    const r = await testkey("rsa", rsa.privateKeyPath);
    expect(r.code, describeResult("testkey", r)).toBe(0);
    expect(r.stdout).toBe(`${name("rsa")}: key OK (2048-bit RSA, matches ${rsa.privateKeyPath})\n`);
    expect(r.stderr).toBe("");
    expect(dns.count({ name: name("rsa"), type: "TXT" })).toBeGreaterThan(0);
  });

  it("Ed25519: the record matches the key (opendkim-testkey 2.11 cannot check these)", async () => {
    const r = await testkey("ed", ed.privateKeyPath);
    expect(r.code, describeResult("testkey", r)).toBe(0);
    expect(r.stdout).toContain("key OK (Ed25519");
  });

  it("-q prints nothing when the key is OK (for cron)", async () => {
    const r = await testkey("rsa", rsa.privateKeyPath, "-q");
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).toBe("");
  });

  for (const [what, selector, message] of [
    ["the record holds another key", "wrong", /public key mismatch/],
    ["the key is revoked (empty p=)", "revoked", /key revoked/],
    ["the record is k=ed25519 but the key is RSA", "edtype", /record says k=ed25519 but the private key is rsa/],
    ["the record allows only sha1", "sha1only", /h=sha1 only/],
    ["there is no record", "missing", /no key record: there is no TXT record at missing\._domainkey\.example\.com/],
    ["the TXT record is not a key record", "spf", /not DKIM key records/],
    ["two key records", "twice", /2 key records .* publish exactly one/],
    ["the DNS server fails", "broken", /DNS lookup failed \(ESERVFAIL\)/],
  ] as const) {
    it(`exit 1 when ${what}`, async () => {
      const r = await testkey(selector, rsa.privateKeyPath);
      expect(r.code, describeResult("testkey", r)).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.startsWith(`${name(selector)}: `)).toBe(true);
      expect(r.stdout).toBe("");
    });
  }

  it("t=y still matches, with a warning", async () => {
    const r = await testkey("testing", rsa.privateKeyPath);
    expect(r.code, describeResult("testkey", r)).toBe(0);
    expect(r.stderr).toMatch(/warning: t=y/);
  });

  it("a key file others can read is checked, with chmod advice", async () => {
    const copy = join(dir, "loose.private");
    await copyFile(rsa.privateKeyPath, copy);
    await chmod(copy, 0o644);
    const r = await testkey("rsa", copy);
    expect(r.code, describeResult("testkey", r)).toBe(0);
    expect(r.stderr).toMatch(/warning: .*readable by group.*chmod 600/);
  });

  it("exit 1 when the key file does not exist or is not a key", async () => {
    const missing = await testkey("rsa", join(dir, "nope.private"));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/does not exist/);
    const notKey = await testkey("rsa", rsa.txtPath);
    expect(notKey.code).toBe(1);
    expect(notKey.stderr).toMatch(/neither a PEM private key nor DER/);
  });

  for (const [what, args, message] of [
    ["no key file", ["testkey", "-d", DOMAIN, "-s", "rsa"], /required option '-k, --key/],
    ["no selector", ["testkey", "-d", DOMAIN, "-k", "/x"], /required option '-s, --selector/],
    ["a bad --dns", ["testkey", "-d", DOMAIN, "-s", "rsa", "-k", "/x", "--dns", "dns.example:53"], /--dns: DNS server must be an IP address/],
    ["a bad domain", ["testkey", "-d", "exa mple.com", "-s", "rsa", "-k", "/x"], /not a domain name/],
    ["an unknown option", ["testkey", "-d", DOMAIN, "-s", "rsa", "-k", "/x", "--verbose"], /unknown option '--verbose'/],
  ] as const) {
    it(`exit 2 for a usage error: ${what}`, async () => {
      const r = await run(NODE, [MAIN, ...args], { timeoutMs: 60_000 });
      expect(r.code, describeResult("testkey", r)).toBe(2);
      expect(r.stderr).toMatch(message);
    });
  }

  it("--help explains the options and the exit status", async () => {
    const r = await run(NODE, [MAIN, "testkey", "--help"], { timeoutMs: 60_000 });
    expect(r.code).toBe(0);
    for (const text of ["-d, --domain", "-s, --selector", "-k, --key", "--dns", "-q, --quiet", "Exit status"]) expect(r.stdout).toContain(text);
  });

  const opendkimGenkey = findExecutable("opendkim-genkey");
  const required = process.env["CI"] === "true";
  it.skipIf(opendkimGenkey === undefined && !required)("accepts a key and record made by opendkim-genkey", async () => {
    if (opendkimGenkey === undefined) throw new Error("opendkim-genkey is not installed (apt-get install opendkim-tools)");
    const made = spawnSync(opendkimGenkey, ["-D", dir, "-d", DOMAIN, "-s", "legacy", "-b", "2048"], { encoding: "utf8" });
    expect(made.status, made.stderr).toBe(0);
    dns.set(name("legacy"), { TXT: [[...parseZoneEntry(await readFile(join(dir, "legacy.txt"), "utf8")).strings]] });
    const r = await testkey("legacy", join(dir, "legacy.private"));
    expect(r.code, describeResult("testkey", r)).toBe(0);
    expect(r.stdout).toContain("key OK (2048-bit RSA");
    const mismatch = await testkey("legacy", rsa.privateKeyPath);
    expect(mismatch.code).toBe(1);
  });
});
