// Debian's miltertest (OpenDKIM's libmilter-based test client) as a second, independent
// milter client against the real daemon, running test/e2e/milter-session.lua.

import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type Daemon } from "../support/daemon-process.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";
import { e2eGate, findExecutable } from "../support/prereq.ts";
import { run } from "../support/run.ts";

const gate = e2eGate({ tools: ["miltertest"] });
const script = new URL("./milter-session.lua", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "authmilter-miltertest-"));

describe.skipIf(gate.skip)(`miltertest against the daemon${gate.label}`, () => {
  let dns: DnsTestServer;
  let daemon: Daemon;

  beforeAll(async () => {
    gate.assertReady();
    const keyFile = join(dir, "mt1.private");
    writeFileSync(keyFile, generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    dns = await startDnsServer({ zone: { "example.org": { TXT: "v=spf1 ip4:192.0.2.0/24 -all" }, "_dmarc.example.org": { TXT: "v=DMARC1; p=none" } } });
    daemon = await startDaemon({
      authservId: "mx.example.com",
      internalHosts: ["127.0.0.1"],
      signing: { keys: [{ domain: "example.com", selector: "mt1", keyFile }] },
      dns: { servers: dns.servers },
      milter: { socket: "inet:0@127.0.0.1" },
    });
  });

  afterAll(async () => {
    expect(await daemon?.stop()).toBe(0);
    await dns?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("passes every check of the Lua session script", async () => {
    const r = await run(findExecutable("miltertest") ?? "miltertest", ["-D", `socket=inet:${daemon.port}@127.0.0.1`, "-s", script], { timeoutMs: 60_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("all checks passed");
    await daemon.waitForLog(/^MTQID3: DKIM-Signature field added \(s=mt1, d=example\.com\)$/);
  });
});
