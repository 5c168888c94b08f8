// Failure reports leave the daemon as mail: a DMARC failure with ruf= and fo=1 produces an
// RFC 6591 report, sent through a real Postfix, that arrives at the sink.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type Daemon } from "../support/daemon-process.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";
import { headerValues } from "../support/mail.ts";
import { MilterClient, sendMessage } from "../support/milter-client.ts";
import { startPostfix, type PostfixInstance } from "../support/postfix.ts";
import { e2eGate } from "../support/prereq.ts";

const gate = e2eGate({ tools: ["postfix", "postconf", "sendmail"], root: true });

describe.skipIf(gate.skip)(`failure reports through Postfix${gate.label}`, () => {
  let dns: DnsTestServer;
  let pf: PostfixInstance;
  let daemon: Daemon;

  beforeAll(async () => {
    gate.assertReady();
    dns = await startDnsServer({
      zone: {
        "fail.example": { TXT: "v=spf1 ip4:192.0.2.0/24 -all" },
        "_dmarc.fail.example": { TXT: "v=DMARC1; p=reject; ruf=mailto:dmarc-ruf@fail.example; fo=1" },
      },
    });
    pf = await startPostfix();
    daemon = await startDaemon({
      authservId: "mx.example.net",
      hostname: "mx.example.net",
      dns: { servers: dns.servers },
      milter: { socket: "inet:0@127.0.0.1" },
      reports: { from: "dmarc-reports@example.net", smtp: `127.0.0.1:${pf.smtpPort}`, failure: { dmarc: true } },
    });
  });

  afterAll(async () => {
    expect(await daemon?.stop()).toBe(0);
    await pf?.stop();
    await dns?.close();
  });

  it("mails a DMARC failure report (AFRF, headers only) to the domain's ruf address", async () => {
    const client = await MilterClient.connect({ host: "127.0.0.1", port: daemon.port });
    try {
      await client.negotiate();
      const replies = await sendMessage(client, {
        client: { hostname: "forger.example.net", address: "203.0.113.9" },
        sender: "ceo@fail.example",
        recipients: ["bob@example.net"],
        headers: [["From", " ceo@fail.example"], ["Date", " Thu, 26 Nov 2026 06:00:00 +0000"], ["Subject", " wire the money"]],
        body: "SECRET BODY TEXT\r\n",
        queueId: "QIDRUF1",
      });
      expect(replies.at(-1)!.kind).toBe("continue");
    } finally {
      client.close();
    }
    const [report] = await pf.waitForDelivered(1, 30_000);
    expect(report!.rcptTo).toEqual(["dmarc-ruf@fail.example"]);
    expect(report!.mailFrom).toBe("dmarc-reports@example.net");
    expect(headerValues(report!.raw, "Content-Type")[0]).toMatch(/^multipart\/report;\s*report-type="?feedback-report"?/);
    expect(report!.text).toMatch(/Feedback-Type: auth-failure/);
    expect(report!.text).toMatch(/Auth-Failure: dmarc/);
    expect(report!.text).toMatch(/Source-IP: 203\.0\.113\.9/);
    expect(report!.text).toMatch(/Reported-Domain: fail\.example/);
    expect(report!.text).toContain("Subject: wire the money");
    // RFC 6591 allows the whole message; we send the header only.
    expect(report!.text).not.toContain("SECRET BODY TEXT");
  });
});
