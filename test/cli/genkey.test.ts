// `authmilter genkey`, run as the real command line: the files it writes, what it prints, how it
// refuses bad arguments, and that opendkim-testkey accepts the key it made.

import { readFile, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { freshDirEachTest } from "../support/temp-dir.ts";
import { loadKeyFile } from "../../src/keys/load.ts";
import { checkKeyAgainstRecord, parseDkimKeyRecord, parseZoneEntry } from "../../src/keys/record.ts";
import { startDnsServer } from "../support/dns-server.ts";
import { findExecutable } from "../support/prereq.ts";
import { describeResult, run } from "../support/run.ts";

const NODE = fileURLToPath(new URL("../../node_modules/.bin/node", import.meta.url));
const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const cli = (args: readonly string[], cwd?: string) => run(NODE, [MAIN, ...args], { timeoutMs: 60_000, ...(cwd !== undefined && { cwd }) });
const mode = async (path: string) => (await stat(path)).mode & 0o777;

let dir: string;
freshDirEachTest((d) => (dir = d));

describe("authmilter genkey", () => {
  it("writes a 2048-bit RSA key (0600) and its record (0644), and prints both paths and the record", async () => {
    const r = await cli(["genkey", "-d", "example.com", "-s", "2026a", "-D", dir]);
    expect(r.code, describeResult("genkey", r)).toBe(0);
    const privatePath = join(dir, "2026a.private");
    const txtPath = join(dir, "2026a.txt");
    expect(await mode(privatePath)).toBe(0o600);
    expect(await mode(txtPath)).toBe(0o644);
    const zone = await readFile(txtPath, "utf8");
    expect(r.stdout).toContain(`wrote ${privatePath}: RSA 2048-bit private key, mode 0600`);
    expect(r.stdout).toContain(`wrote ${txtPath}: the TXT record to publish at 2026a._domainkey.example.com`);
    expect(r.stdout.endsWith(zone)).toBe(true);
    const entry = parseZoneEntry(zone);
    expect(entry.name).toBe("2026a._domainkey");
    expect(parseDkimKeyRecord(entry.strings)).toMatchObject({ keyType: "rsa", hashAlgorithms: ["sha256"] });
    const key = await loadKeyFile(privatePath);
    expect(key).toMatchObject({ type: "rsa", bits: 2048 });
    expect(checkKeyAgainstRecord(key, entry.strings)).toMatchObject({ ok: true });
  });

  it("-t ed25519 writes an Ed25519 key with k=ed25519", async () => {
    const r = await cli(["genkey", "-d", "example.com", "-s", "ed1", "-t", "ed25519", "-D", dir]);
    expect(r.code, describeResult("genkey", r)).toBe(0);
    expect(r.stdout).toContain("Ed25519 private key");
    const entry = parseZoneEntry(await readFile(join(dir, "ed1.txt"), "utf8"));
    expect(parseDkimKeyRecord(entry.strings).keyType).toBe("ed25519");
    const key = await loadKeyFile(join(dir, "ed1.private"));
    expect(key.type).toBe("ed25519");
    expect(checkKeyAgainstRecord(key, entry.strings).ok).toBe(true);
  });

  it("-b sets the RSA size; the record options map to opendkim-genkey's tags", async () => {
    const r = await cli(["genkey", "-d", "example.com", "-s", "small", "-b", "1024", "-D", dir, "--testing", "-S", "-r", "-n", "rotated 2026", "--hash-algorithms", "", "-a"]);
    expect(r.code, describeResult("genkey", r)).toBe(0);
    expect((await loadKeyFile(join(dir, "small.private"))).bits).toBe(1024);
    const entry = parseZoneEntry(await readFile(join(dir, "small.txt"), "utf8"));
    expect(entry.name).toBe("small._domainkey.example.com.");
    const record = parseDkimKeyRecord(entry.strings);
    expect(record).toMatchObject({ flags: ["y", "s"], services: ["email"], hashAlgorithms: undefined });
    expect(record.tags.get("n")).toBe('"rotated 2026"');
  });

  it("writes to the current directory with selector \"default\" unless told otherwise", async () => {
    const r = await cli(["genkey", "-d", "example.org"], dir);
    expect(r.code, describeResult("genkey", r)).toBe(0);
    expect((await readdir(dir)).sort()).toEqual(["default.private", "default.txt"]);
    expect(await readFile(join(dir, "default.txt"), "utf8")).toContain("DKIM key default for example.org");
  });

  it("refuses to replace existing files (exit 1, files untouched) unless --force", async () => {
    expect((await cli(["genkey", "-d", "example.com", "-s", "k", "-D", dir])).code).toBe(0);
    const before = await readFile(join(dir, "k.private"), "utf8");
    const again = await cli(["genkey", "-d", "example.com", "-s", "k", "-D", dir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/k\.private already exists .*--force/);
    expect(await readFile(join(dir, "k.private"), "utf8")).toBe(before);
    const forced = await cli(["genkey", "-d", "example.com", "-s", "k", "-D", dir, "--force"]);
    expect(forced.code, describeResult("genkey --force", forced)).toBe(0);
    expect(await readFile(join(dir, "k.private"), "utf8")).not.toBe(before);
  });

  for (const [what, args, message] of [
    ["no domain", ["-s", "x"], /required option '-d, --domain/],
    ["a key size below 1024", ["-d", "example.com", "-b", "512"], /-b must be a number of bits from 1024 to 4096, not "512"/],
    ["a key size above 4096", ["-d", "example.com", "-b", "8192"], /from 1024 to 4096/],
    ["a key size that is not a number", ["-d", "example.com", "-b", "2k"], /not "2k"/],
    ["-b with Ed25519", ["-d", "example.com", "-t", "ed25519", "-b", "2048"], /RSA keys only/],
    ["an unknown key type", ["-d", "example.com", "-t", "dsa"], /-t must be rsa or ed25519/],
    ["a selector that would leave the directory", ["-d", "example.com", "-s", "../x"], /not a valid selector/],
    ["a domain with a space", ["-d", "exa mple.com"], /not a domain name/],
    ["a missing directory", ["-d", "example.com", "-D", "/nonexistent/keys"], /no such directory/],
    ["an unknown option", ["-d", "example.com", "--bogus"], /unknown option '--bogus'/],
  ] as const) {
    it(`usage error, exit 2, nothing written: ${what}`, async () => {
      const args2: readonly string[] = (args as readonly string[]).includes("-D") ? args : [...args, "-D", dir];
      const r = await cli(["genkey", ...args2]);
      expect(r.code, describeResult("genkey", r)).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(await readdir(dir)).toEqual([]);
    });
  }

  it("--help explains the options and the exit status", async () => {
    const r = await cli(["genkey", "--help"]);
    expect(r.code).toBe(0);
    for (const flag of ["-d, --domain", "-s, --selector", "-b, --bits", "-t, --type", "-D, --directory", "--force", "Exit status"]) {
      expect(r.stdout).toContain(flag);
    }
  });

  const opendkimTestkey = findExecutable("opendkim-testkey");
  const required = process.env["CI"] === "true";
  // RSA only: opendkim-testkey 2.11 cannot check Ed25519 keys ("EVP_PKEY_get1_RSA() failed"),
  // one reason authmilter has its own testkey.
  it.skipIf(opendkimTestkey === undefined && !required)("opendkim-testkey accepts the RSA key and the published record", async () => {
    if (opendkimTestkey === undefined) throw new Error("opendkim-testkey is not installed (apt-get install opendkim-tools)");
    expect((await cli(["genkey", "-d", "example.com", "-s", "2026a", "-D", dir])).code).toBe(0);
    const entry = parseZoneEntry(await readFile(join(dir, "2026a.txt"), "utf8"));
    const dns = await startDnsServer({ zone: { "2026a._domainkey.example.com": { TXT: [[...entry.strings]] } } });
    try {
      // opendkim-testkey resolves with libunbound: forward everything to the loopback server.
      await writeFile(join(dir, "unbound.conf"), `server:\n  do-not-query-localhost: no\nforward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@${dns.port}\n`);
      await writeFile(join(dir, "testkey.conf"), `ResolverConfiguration ${join(dir, "unbound.conf")}\n`);
      const args = ["-x", join(dir, "testkey.conf"), "-d", "example.com", "-s", "2026a", "-k", join(dir, "2026a.private"), "-vvv"];
      const r = await run(opendkimTestkey, args, { timeoutMs: 60_000 });
      expect(r.code, describeResult("opendkim-testkey", r)).toBe(0);
      expect(r.stdout + r.stderr).toMatch(/key OK/);
      expect(dns.count({ name: "2026a._domainkey.example.com", type: "TXT" })).toBeGreaterThan(0);
    } finally {
      await dns.close();
    }
  });
});
