// The daemon as a cluster: one primary, two workers sharing the milter socket — both serve,
// metrics add up, reload reaches both, a dead worker is replaced, SIGTERM drains all.

import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aggregateReportsOfTheHour, CLI, startDaemon } from "../support/daemon-process.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";
import { MilterClient, sendMessage, type TestMessage } from "../support/milter-client.ts";
import { receiveDatagrams } from "../support/unix-dgram.ts";

const dir = mkdtempSync(join(tmpdir(), "authmilter-cluster-"));
const keyFile = join(dir, "k.private");
writeFileSync(keyFile, generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });

let dns: DnsTestServer;
beforeAll(async () => {
  dns = await startDnsServer({ zone: { "example.org": { TXT: "v=spf1 ip4:192.0.2.0/24 -all" }, "_dmarc.example.org": { TXT: "v=DMARC1; p=none; rua=mailto:d@example.org" } } });
});
afterAll(async () => {
  await dns.close();
  rmSync(dir, { recursive: true, force: true });
});

const external: TestMessage = {
  client: { hostname: "mail.example.org", address: "192.0.2.1" },
  sender: "alice@example.org",
  recipients: ["bob@example.com"],
  headers: [["From", " alice@example.org"], ["Date", " Thu, 26 Nov 2026 06:00:00 +0000"]],
  body: "hello\r\n",
};

async function sendOne(port: number, queueId: string): Promise<string> {
  const client = await MilterClient.connect({ host: "127.0.0.1", port });
  try {
    await client.negotiate();
    return (await sendMessage(client, { ...external, queueId })).at(-1)!.kind;
  } finally {
    client.close();
  }
}

describe("authmilter serve with two workers", () => {
  it("serves on both, sums metrics, reloads both, replaces a dead worker and drains on SIGTERM", async () => {
    const notify = await receiveDatagrams(join(dir, "notify.sock"), join(dir, "notify.txt"));
    const db = join(dir, "history.sqlite");
    const config = {
      signing: { keys: [{ domain: "example.com", selector: "s1", keyFile }] },
      dns: { servers: dns.servers },
      milter: { socket: "inet:0@127.0.0.1", workers: 2 },
      metrics: { listen: "127.0.0.1:0" },
      reports: { history: db },
    };
    const daemon = await startDaemon(config, { NOTIFY_SOCKET: join(dir, "notify.sock") });
    try {
      await daemon.waitForLog(/^2 workers serving on /);
      await expect.poll(() => notify.datagrams().join("\n")).toContain("READY=1");
      expect(notify.datagrams().join("\n")).toContain(`MAINPID=${daemon.process.pid}`);

      const kinds = await Promise.all(Array.from({ length: 40 }, (_, i) => sendOne(daemon.port, `QIDC${i}`)));
      expect(kinds.every((k) => k === "continue")).toBe(true);
      // Log lines reach us through a pipe per worker: wait until all 40 are read.
      const served = () => daemon.logs.filter((l) => /^QIDC\d+: SPF\(mailfrom\)/.test(l.msg));
      await expect.poll(() => served().length).toBe(40);
      const servedBy = new Set(served().map((l) => l["pid"]));
      expect(servedBy.size).toBe(2);
      expect(servedBy.has(daemon.process.pid)).toBe(false);
      for (const pid of servedBy) {
        expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")).toContain("--max-semi-space-size=4");
      }

      const metricsAt = String((await daemon.waitForLog(/^metrics on /))["metrics"]);
      const metrics = await (await fetch(`http://${metricsAt}/metrics`)).text();
      expect(metrics).toContain('authmilter_messages_total{class="external"} 40');
      expect(metrics).toContain("authmilter_workers 2");

      daemon.signal("SIGHUP");
      await expect.poll(() => daemon.logs.filter((l) => l.msg === "SIGHUP: configuration, tables and keys reloaded").length).toBe(2);

      const victim = [...servedBy][0] as number;
      process.kill(victim, "SIGKILL");
      await daemon.waitForLog(/^a worker died; starting another$/);
      await expect.poll(async () => (await (await fetch(`http://${metricsAt}/metrics`)).text()).includes("authmilter_workers 2"), { timeout: 10_000 }).toBe(true);
      expect(await sendOne(daemon.port, "QIDAFTER")).toBe("continue");
    } finally {
      expect(await daemon.stop()).toBe(0);
      notify.stop();
    }
    expect(daemon.logs.some((l) => l.msg === "all workers drained; exiting")).toBe(true);
    // Both workers wrote to the one SQLite history (WAL): every verified message is a row.
    const reports = await aggregateReportsOfTheHour(db, join(dir, "reports"));
    expect(reports.size).toBe(1);
    const [xml] = reports.values();
    // 40 before the kill; the killed worker may have taken unflushed rows with it (the store
    // batches and never holds up a message), so the message after it is the floor.
    const count = Number(/<count>(\d+)<\/count>/.exec(xml!)?.[1]);
    expect(count).toBeGreaterThanOrEqual(1);
    expect(count).toBeLessThanOrEqual(41);
  });
});

describe("a cluster on a local socket", () => {
  it("creates the socket with the configured umask, replacing a stale one, and both workers serve it", async () => {
    const { execFileSync } = await import("node:child_process");
    const { statSync } = await import("node:fs");
    const path = join(dir, "milter.sock");
    execFileSync("python3", ["-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", path]);
    const daemon = await startDaemon({ dns: { servers: dns.servers }, milter: { socket: `local:${path}`, socketUmask: "0077", workers: 2 } });
    try {
      await daemon.waitForLog(/^2 workers serving on local:/);
      expect(statSync(path).mode & 0o777).toBe(0o700);
      for (let i = 0; i < 4; i++) {
        const client = await MilterClient.connect({ path });
        try {
          await client.negotiate();
          expect((await sendMessage(client, { ...external, queueId: `QIDL${i}` })).at(-1)!.kind).toBe("continue");
        } finally {
          client.close();
        }
      }
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });
});
