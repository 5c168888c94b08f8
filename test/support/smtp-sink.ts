// The delivery end of the private Postfix: a minimal SMTP server in the test process that keeps
// every message whole, byte for byte, as Postfix's smtp client handed it over. Being in-process
// means "delivered" is exact (the moment we answer 250 to the final dot) and nothing needs to be
// killed afterwards; Postfix's own smtp-sink -d would leave us guessing when a dump file is complete.

import { createServer, type Server, type Socket } from "node:net";
import { pollUntil } from "./ports.ts";

export interface SinkMessage {
  /** MAIL FROM address without the angle brackets ("" for the null sender). */
  readonly mailFrom: string;
  readonly rcptTo: readonly string[];
  /** Header and body with CRLF line ends, dot-stuffing removed. */
  readonly raw: Buffer;
  /** `raw` as UTF-8 text, for regular expressions. */
  readonly text: string;
}

export interface SmtpSink {
  readonly port: number;
  /** Every message received so far, in arrival order. */
  messages(): readonly SinkMessage[];
  /** Resolves with all messages once at least `count` have arrived. */
  waitForCount(count: number, timeoutMs: number, diagnose?: () => string): Promise<readonly SinkMessage[]>;
  close(): Promise<void>;
}

// Not this instance's myhostname: Postfix's smtp client bounces mail to a server that greets with
// its own name ("mail for [127.0.0.1] loops back to myself").
const SINK_NAME = "sink.authmilter.test";

// 8BITMIME and SMTPUTF8 keep Postfix from rewriting 8-bit bodies to quoted-printable, which would
// break every DKIM signature the tests check. No CHUNKING, so the client always uses DATA.
const EHLO_REPLY = [`250-${SINK_NAME}`, "250-PIPELINING", "250-8BITMIME", "250-SMTPUTF8", "250 ENHANCEDSTATUSCODES"];

function angleAddress(argument: string): string {
  const match = /<([^>]*)>/.exec(argument);
  return match?.[1] ?? argument.trim();
}

function serveSession(socket: Socket, deliver: (message: SinkMessage) => void): void {
  let pending: Buffer = Buffer.alloc(0);
  let inData = false;
  let dataLines: Buffer[] = [];
  let mailFrom: string | undefined;
  let rcptTo: string[] = [];

  const reply = (...lines: string[]) => {
    if (!socket.destroyed) socket.write(lines.map((line) => `${line}\r\n`).join(""));
  };

  const command = (line: string) => {
    const verb = line.slice(0, 4).toUpperCase();
    switch (verb) {
      case "EHLO":
        reply(...EHLO_REPLY);
        return;
      case "HELO":
        reply(`250 ${SINK_NAME}`);
        return;
      case "MAIL":
        mailFrom = angleAddress(line.slice(line.indexOf(":") + 1));
        rcptTo = [];
        reply("250 2.1.0 Ok");
        return;
      case "RCPT":
        if (mailFrom === undefined) return reply("503 5.5.1 Error: need MAIL command");
        rcptTo.push(angleAddress(line.slice(line.indexOf(":") + 1)));
        reply("250 2.1.5 Ok");
        return;
      case "DATA":
        if (mailFrom === undefined || rcptTo.length === 0) return reply("503 5.5.1 Error: need RCPT command");
        inData = true;
        dataLines = [];
        reply("354 End data with <CR><LF>.<CR><LF>");
        return;
      case "RSET":
        mailFrom = undefined;
        rcptTo = [];
        reply("250 2.0.0 Ok");
        return;
      case "NOOP":
        reply("250 2.0.0 Ok");
        return;
      case "QUIT":
        reply("221 2.0.0 Bye");
        socket.end();
        return;
      default:
        reply("502 5.5.2 Error: command not recognized");
    }
  };

  const endOfData = () => {
    const raw = Buffer.concat(dataLines);
    deliver({ mailFrom: mailFrom ?? "", rcptTo, raw, text: raw.toString("utf8") });
    inData = false;
    dataLines = [];
    mailFrom = undefined;
    rcptTo = [];
    reply("250 2.0.0 Ok: delivered to the test sink");
  };

  socket.on("data", (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    // Line by line: in DATA only CRLF ends a line (a bare LF is content); commands are plain ASCII.
    for (;;) {
      const end = pending.indexOf("\r\n");
      if (end < 0) break;
      const line = pending.subarray(0, end + 2);
      pending = pending.subarray(end + 2);
      if (!inData) {
        command(line.subarray(0, end).toString("latin1"));
      } else if (end === 1 && line[0] === 0x2e) {
        endOfData();
      } else {
        dataLines.push(line[0] === 0x2e ? line.subarray(1) : line);
      }
    }
  });
  socket.on("error", () => socket.destroy());
  reply(`220 ${SINK_NAME} ESMTP test sink`);
}

export function startSmtpSink(): Promise<SmtpSink> {
  const received: SinkMessage[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    serveSession(socket, (message) => received.push(message));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        reject(new Error("sink has no TCP address"));
        return;
      }
      resolve({
        port: address.port,
        messages: () => received.slice(),
        waitForCount: (count, timeoutMs, diagnose) =>
          pollUntil(
            () => (received.length >= count ? received.slice() : undefined),
            timeoutMs,
            () => `${received.length} of ${count} message(s) delivered to the sink${diagnose ? `\n${diagnose()}` : ""}`,
          ),
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
