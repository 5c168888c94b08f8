// authmilter behind a real Postfix: mail in over SMTP (XCLIENT poses as any client) and over
// sendmail(1), out to the test sink, with DNS answered by the loopback test server. What is
// asserted is what a mailbox would receive and what the Postfix log says.

import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { dkimSign } from "mailauth/lib/dkim/sign.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildAuthHandler, buildResolver } from "../../src/auth/build.ts";
import { parseMessage, runMessage } from "../../src/auth/offline.ts";
import { defaultConfig } from "../../src/config/schema.ts";
import { startDaemon, type Daemon } from "../support/daemon-process.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";
import { headerValues, uniqueMessageId } from "../support/mail.ts";
import { queueIdFromSwaks, startPostfix, type PostfixInstance } from "../support/postfix.ts";
import { e2eGate } from "../support/prereq.ts";

const gate = e2eGate({ tools: ["postfix", "postconf", "sendmail", "swaks"], root: true });
const dir = mkdtempSync(join(tmpdir(), "authmilter-e2e-"));

// Our own domain (signed when it leaves) and a sender's domain (verified when it arrives).
const ours = generateKeyPairSync("rsa", { modulusLength: 2048 });
const theirs = generateKeyPairSync("rsa", { modulusLength: 2048 });
const ourKeyFile = join(dir, "ours.private");
writeFileSync(ourKeyFile, ours.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
const record = (k: typeof ours) => `v=DKIM1; k=rsa; p=${k.publicKey.export({ type: "spki", format: "der" }).toString("base64")}`;

let dns: DnsTestServer;
let daemon: Daemon;
let pf: PostfixInstance;
const postfix = () => pf ?? expect.fail("Postfix did not start");

describe.skipIf(gate.skip)(`authmilter behind a real Postfix${gate.label}`, () => {
  beforeAll(async () => {
    gate.assertReady();
    dns = await startDnsServer({
      zone: {
        "2026a._domainkey.example.com": { TXT: record(ours) },
        "sel._domainkey.example.org": { TXT: record(theirs) },
        "example.org": { TXT: "v=spf1 ip4:192.0.2.0/24 -all" },
        "_dmarc.example.org": { TXT: "v=DMARC1; p=reject" },
        "mail.example.org": { A: "192.0.2.1" },
        "example.com": { TXT: "v=spf1 -all" },
        "_dmarc.example.com": { TXT: "v=DMARC1; p=reject" },
      },
    });
    daemon = await startDaemon({
      authservId: "mx.example.com",
      internalHosts: ["127.0.0.1"],
      signing: { keys: [{ domain: "example.com", selector: "2026a", keyFile: ourKeyFile }] },
      dns: { servers: dns.servers },
      milter: { socket: "inet:0@127.0.0.1" },
    });
    pf = await startPostfix({ milter: `inet:127.0.0.1:${daemon.port}` });
  });

  afterAll(async () => {
    await pf?.stop();
    expect(await daemon?.stop()).toBe(0);
    await dns?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs a delivered message through our verifier as mail from outside would be. */
  async function verifyDelivered(raw: Buffer): Promise<string> {
    const base = defaultConfig();
    const cfg = { ...base, authservId: "check.example.net", internalHosts: [], dns: { ...base.dns, servers: dns.servers } };
    const resolver = buildResolver(cfg);
    try {
      const handler = await buildAuthHandler(cfg, resolver, pino({ level: "silent" }));
      const outcome = await runMessage(handler, { clientAddress: "198.51.100.1", helo: "relay.example.net", sender: "" }, parseMessage(raw));
      return String((outcome.modifications.find((m) => m.kind === "insheader" && m.name === "Authentication-Results") as { value: string }).value);
    } finally {
      resolver.close();
    }
  }

  const byId = (id: string) => (m: { raw: Buffer }) => headerValues(m.raw, "Message-ID").includes(id);

  it("verifies a signed message from an external client, adds our results and removes a forged one", async () => {
    const id = uniqueMessageId("e2e-verify");
    const message = [
      "Authentication-Results: MX.example.com; dkim=pass header.d=example.org; dmarc=pass",
      "From: Alice <alice@example.org>",
      "To: bob@example.com",
      "Subject: signed by the sender",
      "Date: Thu, 26 Nov 2026 06:00:00 +0000",
      `Message-ID: ${id}`,
      "",
      "Hello Bob.",
      "",
    ].join("\r\n");
    const signed = await dkimSign(message, { signatureData: [{ signingDomain: "example.org", selector: "sel", privateKey: theirs.privateKey.export({ type: "pkcs8", format: "pem" }) }] } as never);
    const file = join(dir, "signed.eml");
    writeFileSync(file, signed.signatures + message);
    const sent = await postfix().swaks(["--xclient", "ADDR=192.0.2.1 NAME=mail.example.org HELO=mail.example.org", "--helo", "mail.example.org", "--from", "alice@example.org", "--to", "bob@example.com", "--data", `@${file}`]);
    expect(sent.code, sent.stdout + sent.stderr).toBe(0);
    const qid = queueIdFromSwaks(sent.stdout)!;
    const delivered = await postfix().waitForMessage(byId(id));

    const results = headerValues(delivered.raw, "Authentication-Results");
    expect(results).toHaveLength(1);
    expect(results[0]).toMatch(/^mx\.example\.com;\s+dkim=pass \(2048-bit key\) header\.d=example\.org header\.i=@example\.org header\.a=rsa-sha256 header\.s=sel header\.b=\S+;\s+spf=pass smtp\.mailfrom=example\.org;\s+spf=none smtp\.helo=mail\.example\.org;\s+dmarc=pass \(p=REJECT dis=none\) header\.from=example\.org;\s+arc=none$/);
    expect(headerValues(delivered.raw, "Authmilter-Filter")).toEqual([expect.stringMatching(new RegExp(`^authmilter \\S+ \\S+ ${qid}$`))]);
    expect(headerValues(delivered.raw, "DKIM-Signature")).toHaveLength(1); // external mail is not signed by us
    await daemon.waitForLog(new RegExp(`^${qid}: DKIM verification successful \\(d=example\\.org s=sel\\)$`));
    await daemon.waitForLog(new RegExp(`^${qid}: SPF\\(mailfrom\\): example\\.org pass$`));
    await daemon.waitForLog(new RegExp(`^${qid}: removed an Authentication-Results header that claims our authserv-id$`));
  });

  it("signs mail from an internal client, and the signature verifies as delivered", async () => {
    const id = uniqueMessageId("e2e-internal");
    const sent = await postfix().swaks(["--from", "carol@example.com", "--to", "dave@example.net", "--header", `Message-Id: ${id}`, "--header", "From: Carol <carol@example.com>", "--header", "Subject: from inside", "--body", "Signed on the way out.\n"]);
    expect(sent.code, sent.stdout + sent.stderr).toBe(0);
    const qid = queueIdFromSwaks(sent.stdout)!;
    const delivered = await postfix().waitForMessage(byId(id));
    const sigs = headerValues(delivered.raw, "DKIM-Signature");
    expect(sigs).toHaveLength(1);
    expect(sigs[0]).toMatch(/d=example\.com;/);
    expect(headerValues(delivered.raw, "Authentication-Results")).toEqual([]);
    expect(await verifyDelivered(delivered.raw)).toMatch(/dkim=pass \(2048-bit key\) header\.d=example\.com/);
    await daemon.waitForLog(new RegExp(`^${qid}: DKIM-Signature field added \\(s=2026a, d=example\\.com\\)$`));
  });

  it("signs mail from a SASL-authenticated client (XCLIENT LOGIN=)", async () => {
    const id = uniqueMessageId("e2e-sasl");
    const sent = await postfix().swaks(["--xclient", "ADDR=203.0.113.50 NAME=roaming.example.net LOGIN=carol", "--from", "carol@example.com", "--to", "dave@example.net", "--header", `Message-Id: ${id}`, "--header", "From: carol@example.com", "--body", "From the road.\n"]);
    expect(sent.code, sent.stdout + sent.stderr).toBe(0);
    const delivered = await postfix().waitForMessage(byId(id));
    expect(headerValues(delivered.raw, "DKIM-Signature")).toHaveLength(1);
    expect(await verifyDelivered(delivered.raw)).toMatch(/dkim=pass \(2048-bit key\) header\.d=example\.com/);
  });

  it("does not sign for an external client claiming our domain, and says so in the log", async () => {
    const id = uniqueMessageId("e2e-claim");
    const sent = await postfix().swaks(["--xclient", "ADDR=203.0.113.66 NAME=forger.example.net HELO=forger.example.net", "--helo", "forger.example.net", "--from", "ceo@example.com", "--to", "bob@example.com", "--header", `Message-Id: ${id}`, "--header", "From: ceo@example.com", "--body", "Wire the money.\n"]);
    expect(sent.code, sent.stdout + sent.stderr).toBe(0);
    const qid = queueIdFromSwaks(sent.stdout)!;
    const delivered = await postfix().waitForMessage(byId(id));
    expect(headerValues(delivered.raw, "DKIM-Signature")).toEqual([]);
    expect(headerValues(delivered.raw, "Authentication-Results")[0]).toMatch(/dmarc=fail \(p=REJECT dis=none\) header\.from=example\.com/);
    await daemon.waitForLog(new RegExp(`^${qid}: external host forger\\.example\\.net \\[203\\.0\\.113\\.66\\] tried to send mail as example\\.com$`));
  });

  it("signs mail submitted with sendmail (the non-SMTP path)", async () => {
    const id = uniqueMessageId("e2e-sendmail");
    const sent = await postfix().sendmail(`From: Erin <erin@example.com>\nTo: frank@example.net\nSubject: local\nMessage-ID: ${id}\n\nVia sendmail.\n`, ["-f", "erin@example.com", "frank@example.net"]);
    expect(sent.code, sent.stderr).toBe(0);
    const delivered = await postfix().waitForMessage(byId(id));
    // cleanup logs the queue id pickup assigned; the milter must have seen the same one.
    const qid = await postfix().queueIdOf(id);
    expect(headerValues(delivered.raw, "Authmilter-Filter")).toEqual([expect.stringMatching(new RegExp(`^authmilter \\S+ \\S+ ${qid}$`))]);
    expect(headerValues(delivered.raw, "DKIM-Signature")).toHaveLength(1);
    expect(await verifyDelivered(delivered.raw)).toMatch(/dkim=pass \(2048-bit key\) header\.d=example\.com/);
    await daemon.waitForLog(/: submitted locally \(non-SMTP\)$/);
  });

  it("leaves no milter complaint in the Postfix log", () => {
    expect(postfix().log()).not.toMatch(/warning: .*milter/i);
  });
});
