// The daemon as an admin runs it: a child process with a config file, driven over the milter
// protocol, watched through systemd readiness, syslog and /metrics, reloaded and stopped.

import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import dgram from "node:dgram";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aggregateReportsOfTheHour, CLI, startDaemon, type Daemon } from "../support/daemon-process.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";
import { MilterClient, sendMessage } from "../support/milter-client.ts";
import { receiveDatagrams } from "../support/unix-dgram.ts";

const run = promisify(execFile);
const NODE = new URL("../../node_modules/.bin/node", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "authmilter-serve-"));

function key(name: string): string {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const path = join(dir, name);
  writeFileSync(path, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  return path;
}
const keyA = key("a.private");
const keyB = key("b.private");

let dns: DnsTestServer;
let syslog: dgram.Socket;
const syslogLines: string[] = [];

beforeAll(async () => {
  dns = await startDnsServer({ zone: { "example.org": { TXT: "v=spf1 ip4:192.0.2.1 -all" }, "_dmarc.example.org": { TXT: "v=DMARC1; p=none; rua=mailto:dmarc@example.org" } } });
  syslog = dgram.createSocket("udp4");
  syslog.on("message", (m) => syslogLines.push(m.toString()));
  await new Promise<void>((r) => syslog.bind(0, "127.0.0.1", r));
});
afterAll(async () => {
  syslog.close();
  await dns.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One serving process by default here (logs and syslog name its PID); cluster tests ask for more. */
function config(selector = "s1", keyFile = keyA, workers = 1): Record<string, unknown> {
  return {
    authservId: "mx.example.net",
    internalHosts: ["127.0.0.1"],
    signing: { keys: [{ domain: "example.com", selector, keyFile }] },
    dns: { servers: dns.servers },
    milter: { socket: "inet:0@127.0.0.1", workers },
    metrics: { listen: "127.0.0.1:0" },
    log: { syslog: `udp://127.0.0.1:${syslog.address().port}` },
  };
}

const external = {
  client: { hostname: "mail.example.org", address: "192.0.2.1" },
  sender: "alice@example.org",
  recipients: ["bob@example.com"],
  headers: [["From", " alice@example.org"], ["Date", " Thu, 26 Nov 2026 06:00:00 +0000"], ["Subject", " hi"]] as Array<[string, string]>,
  body: "hello\r\n",
};
const internal = { ...external, client: { hostname: "localhost", address: "127.0.0.1" }, headers: [["From", " bob@example.com"], ["Date", " Thu, 26 Nov 2026 06:00:00 +0000"]] as Array<[string, string]> };

async function send(daemon: Daemon, message: typeof external, queueId: string) {
  const client = await MilterClient.connect({ host: "127.0.0.1", port: daemon.port });
  try {
    await client.negotiate();
    return await sendMessage(client, { ...message, queueId });
  } finally {
    client.close();
  }
}

const valueOf = (r: { value?: unknown }) => String(r.value);

describe("authmilter serve", () => {
  it("tells systemd it is ready, serves, reports metrics and syslog, reloads, and drains on SIGTERM", async () => {
    const notifyPath = join(dir, "notify.sock");
    const receiver = await receiveDatagrams(notifyPath, join(dir, "notify.txt"));
    const daemon = await startDaemon(config(), { NOTIFY_SOCKET: notifyPath });
    try {
      // Readiness, as systemd's Type=notify sees it.
      await expect.poll(() => receiver.datagrams().join("\n"), { timeout: 10_000 }).toContain("READY=1");
      expect(receiver.datagrams().join("\n")).toContain(`MAINPID=${daemon.process.pid}`);

      const verified = await send(daemon, external, "QIDEXT1");
      expect(verified.map((r) => r.kind)).toEqual(["insheader", "insheader", "continue"]);
      expect(valueOf(verified[1] as { value?: unknown })).toContain("spf=pass smtp.mailfrom=example.org");
      const signed = await send(daemon, internal, "QIDINT1");
      expect(signed.find((r) => r.kind === "insheader" && r.name === "DKIM-Signature")).toBeDefined();

      const metricsAt = String((await daemon.waitForLog(/^metrics on /))["metrics"]);
      const metrics = await (await fetch(`http://${metricsAt}/metrics`)).text();
      expect(metrics).toContain('authmilter_messages_total{class="external"} 1');
      expect(metrics).toContain('authmilter_messages_total{class="internal"} 1');
      expect(metrics).toContain('authmilter_results_total{method="spf-mailfrom",result="pass"} 1');
      expect(metrics).toContain('authmilter_signatures_total{algorithm="rsa-sha256"} 1');
      expect(metrics).toContain('authmilter_actions_total{action="continue"} 2');
      expect(metrics).toMatch(/authmilter_message_seconds_count 2/);
      expect(metrics).toMatch(/authmilter_dns_lookup_seconds_count\{type="TXT"\} [1-9]/);
      expect((await fetch(`http://${metricsAt}/healthz`)).status).toBe(200);

      await expect.poll(() => syslogLines.join("\n")).toContain(`authmilter[${daemon.process.pid}]: QIDEXT1: SPF(mailfrom): example.org pass`);
      expect(syslogLines.join("\n")).toContain(`authmilter[${daemon.process.pid}]: QIDINT1: DKIM-Signature field added (s=s1, d=example.com)`);

      // A broken configuration is refused and the old one keeps serving.
      daemon.writeConfig("signing:\n  keys:\n    - domain: example.com\n      selector: s2\n      keyFile: /nonexistent.private\n");
      daemon.signal("SIGHUP");
      await daemon.waitForLog(/SIGHUP: reload refused, still serving the previous configuration: .*nonexistent\.private/);
      const stillOld = await send(daemon, internal, "QIDINT2");
      expect(valueOf(stillOld.find((r) => r.kind === "insheader" && r.name === "DKIM-Signature") as { value?: unknown })).toContain("s=s1;");

      // A good one is taken for the next message.
      daemon.writeConfig(config("s2", keyB));
      daemon.signal("SIGHUP");
      await daemon.waitForLog(/SIGHUP: configuration, tables and keys reloaded/);
      const renewed = await send(daemon, internal, "QIDINT3");
      expect(valueOf(renewed.find((r) => r.kind === "insheader" && r.name === "DKIM-Signature") as { value?: unknown })).toContain("s=s2;");
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
    expect(daemon.logs.some((l) => l.msg === "drained; exiting")).toBe(true);
    await expect.poll(() => receiver.datagrams().join("\n")).toContain("STOPPING=1");
    receiver.stop();
  });
});

describe("reload under load", () => {
  it("takes SIGHUP five times while 200 messages flow, and not one of them fails", async () => {
    const daemon = await startDaemon(config());
    try {
      const results: string[] = [];
      let sent = 0;
      // Four connections from outside (verified) and four from inside (signed), as Postfix keeps them.
      const worker = async (w: number) => {
        const client = await MilterClient.connect({ host: "127.0.0.1", port: daemon.port });
        try {
          await client.negotiate();
          for (let first = true; sent < 200; first = false) {
            const n = sent++;
            const replies = await sendMessage(client, { ...(w % 2 ? internal : external), queueId: `QIDR${n}` }, { connect: first });
            results.push(replies.map((r) => r.kind).join(","));
            client.send({ kind: "abort" });
          }
        } finally {
          client.close();
        }
      };
      const flow = Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
      for (let i = 0; i < 5; i++) {
        await expect.poll(() => sent, { timeout: 20_000, interval: 5 }).toBeGreaterThanOrEqual(30 * (i + 1));
        daemon.writeConfig(config(i % 2 ? "s1" : "s2", i % 2 ? keyA : keyB));
        daemon.signal("SIGHUP");
        // Signals that arrive together merge into one: wait for each reload before the next.
        await expect.poll(() => daemon.logs.filter((l) => l.msg === "SIGHUP: configuration, tables and keys reloaded").length).toBe(i + 1);
      }
      await flow;
      expect(results).toHaveLength(200);
      expect(results.filter((kinds) => !kinds.endsWith(",continue"))).toEqual([]);
      expect(daemon.logs.filter((l) => l.msg === "SIGHUP: configuration, tables and keys reloaded").length).toBe(5);
      expect(daemon.logs.filter((l) => l.level >= 50)).toEqual([]);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });
});

describe("the DMARC history", () => {
  it("records each verified message, and report aggregate builds a report from it", async () => {
    const db = join(dir, "history.sqlite");
    const daemon = await startDaemon({ ...config(), reports: { history: db } });
    try {
      await send(daemon, external, "QIDH1");
      await send(daemon, { ...external, client: { hostname: "bad.example", address: "203.0.113.9" } }, "QIDH2");
    } finally {
      // SIGTERM flushes the queued rows before the process exits.
      expect(await daemon.stop()).toBe(0);
    }
    const reports = await aggregateReportsOfTheHour(db, join(dir, "reports"));
    expect(reports.size).toBe(1);
    const [name, xml] = [...reports][0]!;
    expect(name).toMatch(/^example\.net!example\.org!\d+!\d+(!.*)?\.xml\.gz$/);
    expect(xml).toContain("<source_ip>192.0.2.1</source_ip>");
    expect(xml).toContain("<source_ip>203.0.113.9</source_ip>");
    expect(xml).toMatch(/<spf>\s*<domain>example\.org<\/domain>\s*<scope>mfrom<\/scope>\s*<result>fail<\/result>/);
  });
});

describe("authmilter config check", () => {
  const check = (file: string) => run(NODE, [CLI, "config", "check", "--config", file]).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );

  it("passes a good file and counts its keys", async () => {
    const file = join(dir, "good.yaml");
    writeFileSync(file, `signing:\n  keys:\n    - domain: example.com\n      selector: s1\n      keyFile: ${keyA}\n`);
    expect(await check(file)).toMatchObject({ code: 0, out: `${file}: OK (1 signing key(s) loaded)\n` });
  });

  it("exits 78 with file, line and column for a bad option", async () => {
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "milter:\n  socket: inet:8891@127.0.0.1\n  maxConnections: lots\n");
    const r = await check(file);
    expect(r.code).toBe(78);
    expect(r.err).toBe(`authmilter: configuration error: ${file}:3:19: "milter.maxConnections": expected a whole number, got lots\n`);
  });

  it("exits 78 naming an unsafe key file and the fix", async () => {
    const loose = join(dir, "loose.private");
    writeFileSync(loose, readFileSync(keyA), { mode: 0o644 });
    const file = join(dir, "loose.yaml");
    writeFileSync(file, `signing:\n  keys:\n    - domain: example.com\n      selector: s1\n      keyFile: ${loose}\n`);
    const r = await check(file);
    expect(r.code).toBe(78);
    expect(r.err).toContain(loose);
    expect(r.err).toContain("chmod 600");
  });
});
