// Faults with a real Postfix: the daemon killed or stopped under load, DNS gone mid-run.
// A relay Postfix queues the mail and retries what the milter Postfix tempfails, as the
// Internet would; the sink counts what arrives.

import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type Daemon } from "../support/daemon-process.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";
import { headerValues } from "../support/mail.ts";
import { freePort } from "../support/ports.ts";
import { startPostfix, type PostfixInstance } from "../support/postfix.ts";
import { e2eGate } from "../support/prereq.ts";
import { run } from "../support/run.ts";

const gate = e2eGate({ tools: ["postfix", "postconf", "sendmail", "swaks", "smtp-source"], root: true });
const dir = mkdtempSync(join(tmpdir(), "authmilter-faults-"));
const keyFile = join(dir, "k.private");
writeFileSync(keyFile, generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });

/** Every delivered message's Message-ID, and how often each arrived. */
function arrivals(pf: PostfixInstance): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of pf.delivered()) {
    const id = headerValues(m.raw, "Message-ID")[0] ?? "(none)";
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

describe.skipIf(gate.skip)(`faults under load${gate.label}`, () => {
  let relay: PostfixInstance;
  let mx: PostfixInstance;
  let port: number;
  let daemon: Daemon | undefined;
  const config = () => ({
    internalHosts: ["127.0.0.1"],
    signing: { keys: [{ domain: "example.com", selector: "s1", keyFile }] },
    milter: { socket: `inet:${port}@127.0.0.1` },
  });

  beforeAll(async () => {
    gate.assertReady();
    port = await freePort();
    daemon = await startDaemon(config());
    mx = await startPostfix({ milter: `inet:127.0.0.1:${port}` });
    relay = await startPostfix({ mainCf: { myhostname: "relay.authmilter.test", relayhost: `[127.0.0.1]:${mx.smtpPort}` } });
  });

  afterAll(async () => {
    await relay?.stop();
    await mx?.stop();
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function inject(count: number): Promise<void> {
    // smtp-source: 10 sessions, `count` messages of 2 KB to the relay, which queues them all.
    const r = await run("smtp-source", ["-s", "10", "-m", String(count), "-l", "2048", "-f", "load@example.com", "-t", "rcpt@example.net", `127.0.0.1:${relay.smtpPort}`], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
  }

  it("kill -9 under load: after a restart every message arrives exactly once", async () => {
    const sending = inject(500);
    await expect.poll(() => mx.delivered().length, { timeout: 60_000, interval: 20 }).toBeGreaterThanOrEqual(50);
    const killed = daemon!.process;
    const gone = new Promise((resolve) => killed.once("exit", resolve));
    killed.kill("SIGKILL");
    // The primary only: its workers see it go and drain what they hold (they keep the stdout
    // pipe open meanwhile, so this waits for the process, not for the pipe).
    await gone;
    await sending;
    // While it is down the milter Postfix tempfails and the relay keeps the mail queued.
    await mx.waitForLog(/connect to Milter service inet:127\.0\.0\.1:\d+: Connection refused/, 30_000);
    daemon = await startDaemon(config());
    await mx.waitForDelivered(500, 120_000);
    const counts = arrivals(mx);
    expect(counts.size).toBe(500);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    // Each was signed by the daemon, before or after the kill.
    expect(mx.delivered().every((m) => headerValues(m.raw, "DKIM-Signature").length === 1)).toBe(true);
  }, 240_000);

  it("SIGTERM under load: messages in flight finish, new connections are refused, nothing is lost", async () => {
    const before = mx.delivered().length;
    const logBefore = mx.log().length;
    const sending = inject(200);
    await expect.poll(() => mx.delivered().length - before, { timeout: 60_000, interval: 20 }).toBeGreaterThanOrEqual(20);
    daemon!.signal("SIGTERM");
    expect(await daemon!.exited).toBe(0);
    expect(daemon!.logs.some((l) => l.msg === "drained; exiting")).toBe(true);
    await sending;
    await mx.waitForLog(/connect to Milter service inet:127\.0\.0\.1:\d+: Connection refused/, 30_000);
    // A message cut off mid-reply would show as a read error after OPTNEG: a drain never leaves
    // one. (A connection refused while the workers close may fail at OPTNEG: that is a refusal,
    // which Postfix answers with milter_default_action, and the relay retries.)
    expect(mx.log().slice(logBefore)).not.toMatch(/can't read SMFIC_(?!OPTNEG)\w+ reply packet header/);
    daemon = await startDaemon(config());
    await mx.waitForDelivered(before + 200, 120_000);
    const counts = arrivals(mx);
    expect(counts.size).toBe(700);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
  }, 240_000);
});

describe.skipIf(gate.skip)(`DNS gone mid-run${gate.label}`, () => {
  let dns: DnsTestServer;
  let dnsPort: number;
  let daemon: Daemon;
  let mx: PostfixInstance;
  const zone = { "example.org": { TXT: "v=spf1 ip4:192.0.2.0/24 -all" }, "_dmarc.example.org": { TXT: "v=DMARC1; p=none" } };

  beforeAll(async () => {
    gate.assertReady();
    dns = await startDnsServer({ zone });
    dnsPort = dns.port;
    // No cache, short timeouts: every message asks, and a dead server is noticed at once.
    daemon = await startDaemon({ dns: { servers: dns.servers, cacheEntries: 0, timeout: "300ms", tries: 1 }, milter: { socket: "inet:0@127.0.0.1" } });
    mx = await startPostfix({ milter: `inet:127.0.0.1:${daemon.port}` });
  });

  afterAll(async () => {
    await mx?.stop();
    await daemon?.stop();
    await dns?.close();
  });

  const send = (n: number) =>
    mx.swaks(["--xclient", "ADDR=192.0.2.1 NAME=mail.example.org", "--from", "alice@example.org", "--to", "bob@example.net", "--header", `Message-Id: <dns-${n}@example.org>`, "--header", "From: alice@example.org", "--body", "x\n"]);

  it("tempfails while DNS is down and verifies normally once it is back", async () => {
    const first = await send(1);
    expect(first.code, first.stdout).toBe(0);
    await dns.close();
    const during = await send(2);
    expect(during.stdout).toMatch(/<\*\* 451 4\.7\.1 authmilter: a DNS lookup failed; try again later/);
    dns = await startDnsServer({ zone, port: dnsPort });
    const after = await send(3);
    expect(after.code, after.stdout).toBe(0);
    const delivered = await mx.waitForDelivered(2, 20_000);
    const ar = (id: string) => headerValues(delivered.find((m) => headerValues(m.raw, "Message-ID").includes(id))!.raw, "Authentication-Results")[0];
    expect(ar("<dns-1@example.org>")).toMatch(/spf=pass smtp\.mailfrom=example\.org/);
    expect(ar("<dns-3@example.org>")).toMatch(/spf=pass smtp\.mailfrom=example\.org/);
    expect(delivered.some((m) => headerValues(m.raw, "Message-ID").includes("<dns-2@example.org>"))).toBe(false);
    await daemon.waitForLog(/: a DNS lookup failed: tempfail$/);
  });
});
