// The report mail toolkit and the two ways out: our SMTP client (against the in-process SMTP
// server the Postfix harness delivers to, and against servers that refuse) and sendmail(1).

import { createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSmtpSink, type SmtpSink } from "../support/smtp-sink.ts";
import { freePort } from "../support/ports.ts";
import {
  aggregateReportMail,
  aggregateSubject,
  dataPayload,
  foldHeader,
  formatDate,
  isPlainAddress,
  MailerError,
  parseHostPort,
  parseSendmailCommand,
  quotedPrintable,
  sendmailMailer,
  smtpMailer,
} from "../../src/reports/mailer.ts";
import { gzipXml, type GeneratedReport } from "../../src/reports/aggregate.ts";
import { decodeQuotedPrintable, header, parseMime } from "./mime.ts";

describe("MIME toolkit", () => {
  it("formats RFC 5322 dates in UTC", () => {
    expect(formatDate(new Date("2024-05-01T09:08:07Z"))).toBe("Wed, 01 May 2024 09:08:07 +0000");
  });

  it("folds long header fields at spaces and keeps short ones on one line", () => {
    expect(foldHeader("Subject", "short")).toBe("Subject: short");
    const long = foldHeader("Subject", `Report Domain: ${"a".repeat(40)}.example Submitter: ${"b".repeat(30)}.example Report-ID: <x>`);
    const lines = long.split("\r\n");
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(78);
    for (const line of lines.slice(1)) expect(line).toMatch(/^ \S/);
    expect(long.replace(/\r\n/g, "")).toBe(`Subject: Report Domain: ${"a".repeat(40)}.example Submitter: ${"b".repeat(30)}.example Report-ID: <x>`);
  });

  it("quoted-printable round-trips 8-bit text and keeps every line within 76 characters", () => {
    const text = `Subject: Grüße aus Köln =?\nX: ${"ä".repeat(60)} trailing space \n`;
    const encoded = quotedPrintable(Buffer.from(text, "utf8"));
    expect(encoded).toMatch(/^[\x20-\x7e\r\n]*$/);
    for (const line of encoded.split("\r\n")) expect(line.length).toBeLessThanOrEqual(76);
    expect(decodeQuotedPrintable(encoded).toString("utf8")).toBe(text.replace(/\n/g, "\r\n"));
  });

  it("dot-stuffs the DATA payload and ends it with CRLF.CRLF", () => {
    const payload = dataPayload(Buffer.from(".first\r\nmiddle\n..two\r\n.\r\nlast", "latin1")).toString("latin1");
    expect(payload).toBe("..first\r\nmiddle\r\n...two\r\n..\r\nlast\r\n.\r\n");
  });

  it("accepts only plain addresses", () => {
    expect(isPlainAddress("dmarc+rua@reports.example.com")).toBe(true);
    for (const bad of ["a b@example.com", "a@example.com>", "a@example.com\r\nRCPT TO:<x@y>", "@example.com", "a@", '"q"@example.com', "a@-bad.example"]) {
      expect(isPlainAddress(bad), bad).toBe(false);
    }
  });

  it("parses relay and sendmail settings", () => {
    expect(parseHostPort("127.0.0.1:2525", 25)).toEqual({ host: "127.0.0.1", port: 2525 });
    expect(parseHostPort("relay.example", 25)).toEqual({ host: "relay.example", port: 25 });
    expect(parseHostPort("[::1]:26", 25)).toEqual({ host: "::1", port: 26 });
    expect(() => parseHostPort("a:b:c", 25)).toThrow(/host:port/);
    expect(parseSendmailCommand(" /usr/sbin/sendmail  -C /etc/x ")).toEqual({ command: "/usr/sbin/sendmail", args: ["-C", "/etc/x"] });
  });

  it("builds an aggregate report message per RFC 7489 §7.2.1.1", () => {
    const xml = "<feedback><version>1.0</version></feedback>";
    const generated = {
      report: { policyDomain: "example.com", reportId: "1714521600.1714607999.abc", begin: 1714521600, end: 1714607999, messages: 3, records: [{}] },
      xml,
      filename: "receiver.example!example.com!1714521600!1714607999.xml.gz",
      data: gzipXml(xml),
    } as unknown as GeneratedReport;
    const identity = { orgName: "Receiver Ünïcode", email: "dmarc@receiver.example", receiver: "receiver.example" };
    expect(aggregateSubject(generated, identity)).toBe("Report Domain: example.com Submitter: receiver.example Report-ID: <1714521600.1714607999.abc>");
    const mail = aggregateReportMail(generated, identity, { from: "dmarc@receiver.example", to: "rua@example.com", date: new Date("2024-05-02T00:30:00Z") });
    const m = parseMime(mail);
    expect(header(m, "From")).toBe("dmarc@receiver.example");
    expect(header(m, "To")).toBe("rua@example.com");
    expect(header(m, "Date")).toBe("Thu, 02 May 2024 00:30:00 +0000");
    expect(header(m, "MIME-Version")).toBe("1.0");
    expect(header(m, "Message-ID")).toMatch(/^<[^@<>\s]+@receiver\.example>$/);
    expect(m.type).toBe("multipart/mixed");
    expect(m.parts.map((p) => p.type)).toEqual(["text/plain", "application/gzip"]);
    expect(m.parts[0]!.content.toString("utf8")).toContain("Receiver Ünïcode");
    const attachment = m.parts[1]!;
    expect(attachment.params.get("name")).toBe(generated.filename);
    expect(header(attachment, "Content-Disposition")).toBe(`attachment; filename="${generated.filename}"`);
    expect(attachment.content.equals(generated.data)).toBe(true);
    // 7-bit clean: nothing for a relay to convert.
    expect(mail.every((b) => b < 0x80)).toBe(true);
  });
});

describe("SMTP client", () => {
  let sink: SmtpSink;
  beforeAll(async () => {
    sink = await startSmtpSink();
  });
  afterAll(async () => {
    await sink.close();
  });

  it("delivers the message byte for byte, dot-stuffing undone by the server", async () => {
    const data = Buffer.from("From: a@example.org\r\nTo: b@example.com\r\nSubject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n", "latin1");
    const before = sink.messages().length;
    await smtpMailer({ host: "127.0.0.1", port: sink.port, helo: "reporter.example" }).send({ from: "a@example.org", to: ["b@example.com", "c@example.net"], data });
    const got = (await sink.waitForCount(before + 1, 5000)).at(-1)!;
    expect(got.mailFrom).toBe("a@example.org");
    expect(got.rcptTo).toEqual(["b@example.com", "c@example.net"]);
    expect(got.raw.equals(data)).toBe(true);
  });

  it("refuses to put anything but plain addresses into the envelope", async () => {
    const mailer = smtpMailer({ host: "127.0.0.1", port: sink.port });
    const data = Buffer.from("Subject: x\r\n\r\nx\r\n");
    await expect(mailer.send({ from: "a@example.org", to: ["b@example.com>\r\nRCPT TO:<evil@example.net"], data })).rejects.toMatchObject({ permanent: true });
    await expect(mailer.send({ from: "a@example.org", to: [], data })).rejects.toThrow(/no recipients/);
  });

  it("reports a closed port as a transient failure", async () => {
    const port = await freePort();
    const err = await smtpMailer({ host: "127.0.0.1", port }).send({ from: "a@example.org", to: ["b@example.com"], data: Buffer.from("x\r\n") }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MailerError);
    expect(err).toMatchObject({ permanent: false });
    expect((err as Error).message).toMatch(/cannot connect to 127\.0\.0\.1:\d+/);
  });

  describe("a server that refuses", () => {
    let server: Server;
    let port: number;
    const transcript: string[] = [];
    beforeAll(async () => {
      // Answers like Postfix would, refusing one recipient; records every command it is sent.
      server = createServer((socket: Socket) => {
        socket.write("220 refuser.example ESMTP\r\n");
        let buffered = "";
        socket.on("data", (chunk: Buffer) => {
          buffered += chunk.toString("latin1");
          let end: number;
          while ((end = buffered.indexOf("\r\n")) >= 0) {
            const line = buffered.slice(0, end);
            buffered = buffered.slice(end + 2);
            transcript.push(line);
            if (line.startsWith("EHLO")) socket.write("250-refuser.example\r\n250-SIZE 1000\r\n250 8BITMIME\r\n");
            else if (line.startsWith("MAIL")) socket.write("250 2.1.0 Ok\r\n");
            else if (line.startsWith("RCPT") && line.includes("unknown")) socket.write("550 5.1.1 <unknown@example.com>: Recipient address rejected\r\n");
            else if (line.startsWith("RCPT")) socket.write("250 2.1.5 Ok\r\n");
            else if (line === "QUIT") socket.end("221 2.0.0 Bye\r\n");
            else socket.write("502 5.5.2 Error\r\n");
          }
        });
        socket.on("error", () => socket.destroy());
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      port = (server.address() as { port: number }).port;
    });
    afterAll(async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    it("gives up on a refused recipient before DATA, with the server's reply, as permanent", async () => {
      transcript.length = 0;
      const err = await smtpMailer({ host: "127.0.0.1", port })
        .send({ from: "a@example.org", to: ["ok@example.com", "unknown@example.com"], data: Buffer.from("Subject: x\r\n\r\nx\r\n") })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ permanent: true });
      expect((err as Error).message).toContain("550 5.1.1 <unknown@example.com>: Recipient address rejected");
      expect(transcript).toContain("MAIL FROM:<a@example.org> SIZE=17");
      expect(transcript).not.toContain("DATA");
    });

    it("does not send a message over the advertised SIZE limit", async () => {
      transcript.length = 0;
      const err = await smtpMailer({ host: "127.0.0.1", port })
        .send({ from: "a@example.org", to: ["ok@example.com"], data: Buffer.alloc(2000, "a") })
        .catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/exceeds the server's SIZE limit of 1000/);
      expect(transcript.some((l) => l.startsWith("MAIL"))).toBe(false);
    });
  });
});

describe("sendmail", () => {
  it("hands the message to the program with -i -f FROM -- RCPT, LF line ends", async () => {
    // /bin/sh stands in for sendmail here: it echoes its arguments and input back via stderr,
    // and fails, so the mailer reports what it saw. The real sendmail runs in mail-aggregate.test.ts.
    const mailer = sendmailMailer({ command: "/bin/sh", args: ["-c", 'printf "%s|" "$@" >&2; od -c >&2; exit 75', "sh"] });
    const err = await mailer.send({ from: "a@example.org", to: ["b@example.com"], data: Buffer.from("Subject: x\r\n\r\nbody\r\n") }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MailerError);
    expect(err).toMatchObject({ permanent: false });
    const message = (err as Error).message;
    expect(message).toContain("-i|-f|a@example.org|--|b@example.com|");
    expect(message).not.toContain("\\r");
    expect(message).toContain("exited with 75");
  });

  it("reports a missing program", async () => {
    const err = await sendmailMailer({ command: "/nonexistent/sendmail" })
      .send({ from: "a@example.org", to: ["b@example.com"], data: Buffer.from("x\r\n") })
      .catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/cannot run \/nonexistent\/sendmail/);
  });
});
