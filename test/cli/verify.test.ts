// `authmilter verify`: the header the daemon would add, computed offline by the same handler.

import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI } from "../support/daemon-process.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";

const run = promisify(execFile);
const NODE = new URL("../../node_modules/.bin/node", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "authmilter-verify-"));
let dns: DnsTestServer;

beforeAll(async () => {
  dns = await startDnsServer({ zone: { "example.org": { TXT: "v=spf1 ip4:192.0.2.0/24 -all" }, "_dmarc.example.org": { TXT: "v=DMARC1; p=reject" } } });
});
afterAll(async () => {
  await dns.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("authmilter verify", () => {
  it("prints the Authentication-Results header for a message file, and what it would remove", async () => {
    const file = join(dir, "m.eml");
    writeFileSync(file, "Authentication-Results: mx.example.net; spf=pass\nFrom: alice@example.org\nDate: Thu, 26 Nov 2026 06:00:00 +0000\n\nhi\n");
    const config = join(dir, "c.yaml");
    writeFileSync(config, "authservId: mx.example.net\n");
    const r = await run(NODE, [CLI, "verify", file, "--ip", "192.0.2.1", "--helo", "mail.example.org", "--mail-from", "alice@example.org", "--config", config, "--dns", dns.servers[0]!]);
    expect(r.stdout).toBe(
      [
        "(would remove Authentication-Results #1: it claims our authserv-id)",
        "Authentication-Results: mx.example.net;",
        "\tdkim=none;",
        "\tspf=pass smtp.mailfrom=example.org;",
        "\tspf=none smtp.helo=mail.example.org;",
        "\tdmarc=pass (p=REJECT dis=none) header.from=example.org;",
        "\tarc=none",
        "",
      ].join("\n"),
    );
  });

  it("says a failing sender fails", async () => {
    const file = join(dir, "f.eml");
    writeFileSync(file, "From: ceo@example.org\nDate: Thu, 26 Nov 2026 06:00:00 +0000\n\nwire money\n");
    const r = await run(NODE, [CLI, "verify", file, "--ip", "203.0.113.9", "--mail-from", "ceo@example.org", "--dns", dns.servers[0]!]);
    expect(r.stdout).toMatch(/spf=fail smtp\.mailfrom=example\.org;\n\tdmarc=fail \(p=REJECT dis=none\) header\.from=example\.org/);
  });
});
