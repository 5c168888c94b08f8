// The harness itself, with no milter of ours involved: if these fail, the authmilter end-to-end
// tests cannot be trusted either way.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bodyOf, headerValues, uniqueMessageId } from "../support/mail.ts";
import { freePort } from "../support/ports.ts";
import { startPostfix, startPostfixes, queueIdFromSwaks, type PostfixInstance } from "../support/postfix.ts";
import { e2eGate } from "../support/prereq.ts";

const gate = e2eGate({ tools: ["postfix", "postconf", "sendmail", "swaks"], root: true });

function hasMessageId(id: string) {
  return (m: { raw: Buffer }) => headerValues(m.raw, "Message-ID").includes(id);
}

function escapeRe(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

describe.skipIf(gate.skip)(`private Postfix without a milter${gate.label}`, () => {
  let pf: PostfixInstance | undefined;
  const postfix = () => pf ?? expect.fail("Postfix did not start");

  beforeAll(async () => {
    gate.assertReady();
    pf = await startPostfix();
  });
  afterAll(async () => {
    await pf?.stop();
  });

  it("delivers mail from a client posing via XCLIENT as 192.0.2.1 and records that client", async () => {
    const id = uniqueMessageId("harness-smtp");
    const sent = await postfix().swaks([
      "--xclient", "ADDR=192.0.2.1 NAME=mail.example.org HELO=mail.example.org",
      "--helo", "mail.example.org",
      "--from", "alice@example.org",
      "--to", "bob@example.com",
      "--header", `Message-ID: ${id}`,
      "--header", "Subject: harness over SMTP",
      "--body", "hello from the harness",
    ]);
    expect(sent.code, sent.stdout + sent.stderr).toBe(0);
    const qid = queueIdFromSwaks(sent.stdout);
    expect(qid, sent.stdout).toBeDefined();

    const message = await postfix().waitForMessage(hasMessageId(id));
    expect(message.mailFrom).toBe("alice@example.org");
    expect(message.rcptTo).toEqual(["bob@example.com"]);
    // The topmost Received: is Postfix's own, naming the XCLIENT identity and the queue id.
    const received = headerValues(message.raw, "Received")[0] ?? "";
    expect(received).toMatch(/^from mail\.example\.org \(mail\.example\.org \[192\.0\.2\.1\]\)/);
    expect(received).toContain(`by mx.authmilter.test (Postfix) with ESMTP id ${qid}`);
    expect(bodyOf(message.raw)).toContain("hello from the harness");

    await postfix().waitForLog(new RegExp(`smtpd\\[\\d+\\]: ${qid}: client=mail\\.example\\.org\\[192\\.0\\.2\\.1\\]`));
    await postfix().waitForLog(
      new RegExp(`smtp\\[\\d+\\]: ${qid}: to=<bob@example\\.com>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${postfix().sinkPort},.* status=sent`),
    );
  });

  it("reports an XCLIENT LOGIN as an authenticated (ESMTPA) session", async () => {
    const id = uniqueMessageId("harness-login");
    const sent = await postfix().swaks([
      "--xclient", "ADDR=192.0.2.1 NAME=mail.example.org LOGIN=alice",
      "--helo", "mail.example.org",
      "--from", "alice@example.org",
      "--to", "bob@example.com",
      "--header", `Message-ID: ${id}`,
    ]);
    expect(sent.code, sent.stdout + sent.stderr).toBe(0);
    const qid = queueIdFromSwaks(sent.stdout) ?? expect.fail(sent.stdout);
    const message = await postfix().waitForMessage(hasMessageId(id));
    expect(headerValues(message.raw, "Received")[0]).toContain(`with ESMTPA id ${qid}`);
    await postfix().waitForLog(new RegExp(`${qid}: client=mail\\.example\\.org\\[192\\.0\\.2\\.1\\], sasl_method=XCLIENT, sasl_username=alice`));
  });

  it("delivers mail submitted with sendmail -C (the non-SMTP path) with its 8-bit body intact", async () => {
    const id = uniqueMessageId("harness-sendmail");
    const body = "Grüße aus dem Testlauf — 8-bit, not quoted-printable\n";
    const message = [
      "From: Carol <carol@example.org>",
      "To: dave@example.net",
      "Subject: harness via sendmail",
      `Message-ID: ${id}`,
      "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=utf-8",
      "Content-Transfer-Encoding: 8bit",
      "",
      body,
    ].join("\n");
    const sent = await postfix().sendmail(message, ["-i", "-B", "8BITMIME", "-f", "carol@example.org", "--", "dave@example.net"]);
    expect(sent.code, sent.stderr).toBe(0);

    const delivered = await postfix().waitForMessage(hasMessageId(id));
    const qid = await postfix().queueIdOf(id);
    expect(delivered.mailFrom).toBe("carol@example.org");
    expect(delivered.rcptTo).toEqual(["dave@example.net"]);
    expect(headerValues(delivered.raw, "Received")[0]).toMatch(
      new RegExp(`^by mx\\.authmilter\\.test \\(Postfix, from userid 0\\)\\s+id ${qid};`),
    );
    expect(bodyOf(delivered.raw)).toBe(body.replace(/\n/g, "\r\n"));
    await postfix().waitForLog(new RegExp(`pickup\\[\\d+\\]: ${qid}: uid=0 from=<carol@example\\.org>`));
  });
});

describe.skipIf(gate.skip)(`private Postfix with an unreachable milter${gate.label}`, () => {
  let tempfail: PostfixInstance | undefined;
  let accept: PostfixInstance | undefined;
  let milter = "";

  beforeAll(async () => {
    gate.assertReady();
    // A port just found free: nothing listens there, so every milter connect is refused.
    milter = `inet:127.0.0.1:${await freePort()}`;
    [tempfail, accept] = await startPostfixes([
      { milter, milterDefaultAction: "tempfail" },
      { milter, milterDefaultAction: "accept" },
    ]);
  });
  afterAll(async () => {
    await Promise.all([tempfail?.stop(), accept?.stop()]);
  });

  it("with milter_default_action=tempfail refuses SMTP mail with a 4xx", async () => {
    const pf = tempfail ?? expect.fail("Postfix did not start");
    const sent = await pf.swaks([
      "--xclient", "ADDR=192.0.2.1 NAME=mail.example.org",
      "--helo", "mail.example.org",
      "--from", "alice@example.org",
      "--to", "bob@example.com",
    ]);
    // Postfix 3.7 answers the unreachable milter's tempfail at MAIL FROM (swaks exit 23), before DATA.
    expect(sent.code, sent.stdout).not.toBe(0);
    expect(sent.stdout).toMatch(/^<\*\* +451 4\.7\.1 /m);
    expect(queueIdFromSwaks(sent.stdout)).toBeUndefined();
    await pf.waitForLog(new RegExp(`warning: connect to Milter service ${escapeRe(milter)}: Connection refused`));
    await pf.waitForLog(/NOQUEUE: milter-reject: MAIL from mail\.example\.org\[192\.0\.2\.1\]: 451 4\.7\.1/);
  });

  it("with milter_default_action=tempfail holds back sendmail mail (non_smtpd_milters is live)", async () => {
    const pf = tempfail ?? expect.fail("Postfix did not start");
    const id = uniqueMessageId("harness-tempfail-sendmail");
    const sent = await pf.sendmail(`From: carol@example.org\nTo: dave@example.net\nMessage-ID: ${id}\n\nheld\n`);
    expect(sent.code, sent.stderr).toBe(0);
    await pf.waitForLog(/cleanup\[\d+\]: [0-9A-F]+: milter-reject: CONNECT from localhost\[127\.0\.0\.1\]: 4\.7\.1/);
    expect(pf.delivered()).toEqual([]);
  });

  it("with milter_default_action=accept delivers as if the milter did not exist", async () => {
    const pf = accept ?? expect.fail("Postfix did not start");
    const id = uniqueMessageId("harness-accept");
    const sent = await pf.swaks([
      "--xclient", "ADDR=192.0.2.1 NAME=mail.example.org",
      "--helo", "mail.example.org",
      "--from", "alice@example.org",
      "--to", "bob@example.com",
      "--header", `Message-ID: ${id}`,
    ]);
    expect(sent.code, sent.stdout).toBe(0);
    await pf.waitForMessage(hasMessageId(id));
    await pf.waitForLog(new RegExp(`warning: connect to Milter service ${escapeRe(milter)}: Connection refused`));
  });
});
