// `authmilter check`, run as the real command line against a loopback DNS server: the JSON it
// prints, the table, and the exit status cron and monitoring rely on (0 fine, 1 problems,
// 2 usage or configuration error).

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey, type GeneratedKey } from "../../src/keys/genkey.ts";
import type { CheckReport } from "../../src/ops/check.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";
import { describeResult, run } from "../support/run.ts";

const NODE = fileURLToPath(new URL("../../node_modules/.bin/node", import.meta.url));
const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const cli = (args: readonly string[]) => run(NODE, [MAIN, ...args], { timeoutMs: 60_000 });

let dir: string;
let dns: DnsTestServer;
let key: GeneratedKey;
let other: GeneratedKey;
let configPath: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "authmilter-check-cli-"));
  dns = await startDnsServer();
  key = await generateKey({ domain: "example.com", selector: "s1", directory: dir, bits: 1024 });
  other = await generateKey({ domain: "example.com", selector: "other", directory: dir, bits: 1024 });
  configPath = join(dir, "authmilter.yaml");
  await writeFile(
    configPath,
    `dns:\n  servers: ["${dns.servers[0]}"]\n  timeout: 1s\n  tries: 1\nsigning:\n  keys:\n    - domain: example.com\n      selector: s1\n      keyFile: ${key.privateKeyPath}\n`,
  );
});
afterAll(async () => {
  await dns.close();
  await rm(dir, { recursive: true, force: true });
});

function publish(dkim: readonly string[]): void {
  dns.setZone({
    "s1._domainkey.example.com": { TXT: [[...dkim]] },
    "example.com": { TXT: "v=spf1 ip4:192.0.2.10 -all" },
    "_dmarc.example.com": { TXT: "v=DMARC1; p=reject" },
  });
}

describe("authmilter check (command line)", () => {
  it("exit 0 and a JSON report when everything is right", async () => {
    publish(key.record.strings);
    const r = await cli(["check", "--config", configPath, "--json", "--ip", "192.0.2.10"]);
    expect(r.code, describeResult("check", r)).toBe(0);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(report.ok).toBe(true);
    expect(report.rows.map((x) => [x.domain, x.check, x.status])).toEqual([
      ["example.com", "dkim", "ok"],
      ["example.com", "spf", "ok"],
      ["example.com", "dmarc", "ok"],
    ]);
    expect(report.outboundIps).toEqual(["192.0.2.10"]);
  });

  it("exit 1 when the published key is not ours, and the table says which check failed", async () => {
    publish(other.record.strings);
    const json = await cli(["check", "--config", configPath, "--json"]);
    expect(json.code, describeResult("check", json)).toBe(1);
    const report = JSON.parse(json.stdout) as CheckReport;
    expect(report.ok).toBe(false);
    expect(report.rows.find((x) => x.check === "dkim")).toMatchObject({ status: "mismatch", selector: "s1" });
    expect(report.notes).toEqual(["no outbound IPs configured; SPF only checked for presence"]);

    const table = await cli(["check", "--config", configPath]);
    expect(table.code).toBe(1);
    expect(table.stdout).toMatch(/^DOMAIN\s+CHECK\s+STATUS\s+DETAIL\n/);
    expect(table.stdout).toMatch(/\nexample\.com\s+dkim s1\s+mismatch\s+s1\._domainkey\.example\.com: public key mismatch/);
    expect(table.stdout).toContain("note: no outbound IPs configured; SPF only checked for presence");
    expect(table.stdout.trimEnd().split("\n").at(-1)).toBe("1 of 3 checks found problems");
  });

  it("exit 1 when SPF does not authorize an outbound IP given with --ip", async () => {
    publish(key.record.strings);
    const r = await cli(["check", "--config", configPath, "--json", "--ip", "192.0.2.10", "198.51.100.1"]);
    expect(r.code, describeResult("check", r)).toBe(1);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(report.rows.filter((x) => x.check === "spf").map((x) => `${x.ip} ${x.status}`)).toEqual(["192.0.2.10 ok", "198.51.100.1 fail"]);
  });

  it("exit 2 for a configuration that cannot be read, one that signs nothing, and bad arguments", async () => {
    const missing = await cli(["check", "--config", join(dir, "nope.yaml")]);
    expect(missing.code, describeResult("check", missing)).toBe(2);
    expect(missing.stderr).toMatch(/authmilter check: configuration error: .*nope\.yaml.*cannot read the file/);

    const broken = join(dir, "broken.yaml");
    await writeFile(broken, "signing:\n  kees: []\n");
    const bad = await cli(["check", "--config", broken, "--json"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/broken\.yaml:2:3: unknown option "signing\.kees"; did you mean "signing\.keys"\?/);
    expect(bad.stdout).toBe("");

    const empty = join(dir, "empty.yaml");
    await writeFile(empty, "mode: verify\n");
    const nothing = await cli(["check", "--config", empty]);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/no signing domain to check/);

    const badIp = await cli(["check", "--config", configPath, "--ip", "mail.example.com"]);
    expect(badIp.code).toBe(2);
    expect(badIp.stderr).toMatch(/--ip: "mail\.example\.com" is not an IP address/);

    const unknown = await cli(["check", "--bogus"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown option '--bogus'/);
  });
});
