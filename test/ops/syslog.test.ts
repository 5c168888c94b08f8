// Syslog lines reach a /dev/log-style unix datagram socket (through logger(1)) and a UDP
// syslog server, formatted as opendkim admins' greps and fail2ban filters expect.

import dgram from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { syslogStream } from "../../src/ops/syslog.ts";
import { receiveDatagrams } from "../support/unix-dgram.ts";

const dir = mkdtempSync(join(tmpdir(), "authmilter-syslog-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 25));
  if (!check()) throw new Error(`timed out waiting for ${what}`);
}

describe("syslog output", () => {
  it("sends <PRI> tag[pid]: message lines to a unix datagram socket like /dev/log", async () => {
    const socketPath = join(dir, "log.sock");
    const receiver = await receiveDatagrams(socketPath, join(dir, "received.txt"));
    try {
      const stream = syslogStream({ target: socketPath, facility: "mail" });
      const logger = pino({ level: "info" }, stream);
      logger.info("4ABC123: DKIM verification successful (d=pm.me s=protonmail3)");
      logger.error("4ABC124: something\nforged: line");
      await until(() => receiver.datagrams().length >= 2, "two syslog lines");
      const lines = receiver.datagrams().map((d) => d.trimEnd());
      // mail.info = 2*8+6 = 22, mail.err = 2*8+3 = 19
      expect(lines[0]).toMatch(new RegExp(`^<22>.* authmilter\\[${process.pid}\\]: 4ABC123: DKIM verification successful \\(d=pm\\.me s=protonmail3\\)$`));
      expect(lines[1]).toMatch(new RegExp(`^<19>.* authmilter\\[${process.pid}\\]: 4ABC124: something forged: line$`));
      stream.close();
    } finally {
      receiver.stop();
    }
  });

  it("sends RFC 3164 lines to a UDP syslog server", async () => {
    const server = dgram.createSocket("udp4");
    const received: string[] = [];
    server.on("message", (m) => received.push(m.toString()));
    await new Promise<void>((r) => server.bind(0, "127.0.0.1", r));
    try {
      const stream = syslogStream({ target: `udp://127.0.0.1:${server.address().port}`, facility: "local3" });
      pino({ level: "info" }, stream).warn("4ABC125: external host mx.bad.example [203.0.113.9] tried to send mail as example.com");
      await until(() => received.length === 1, "one datagram");
      // local3.warning = 19*8+4 = 156
      expect(received[0]).toMatch(new RegExp(`^<156>[A-Z][a-z]{2} [ 0-9]\\d \\d\\d:\\d\\d:\\d\\d \\S+ authmilter\\[${process.pid}\\]: 4ABC125: external host`));
      stream.close();
    } finally {
      server.close();
    }
  });
});
