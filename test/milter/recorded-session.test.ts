// A session Postfix really sent (test/fixtures/milter/README.md), cut at every byte.

import { readFileSync } from "node:fs";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeCommand } from "../../src/milter/codec.ts";
import { FrameDecoder } from "../../src/milter/frame.ts";
import type { Command } from "../../src/milter/types.ts";
import { RecordingHandler } from "../support/recording-handler.ts";
import { startServer, type Running } from "../support/in-process-server.ts";

const session = readFileSync(new URL("../fixtures/milter/postfix-smtpd-session.bin", import.meta.url));

function decodeAll(pieces: Buffer[]): Command[] {
  const decoder = new FrameDecoder();
  return pieces.flatMap((p) => decoder.push(p)).map(decodeCommand);
}

describe("a recorded Postfix session", () => {
  const whole = decodeAll([session]);

  it("decodes into the events Postfix sends for one message", () => {
    const kinds = whole.filter((c) => c.kind !== "macro").map((c) => c.kind);
    expect(kinds).toEqual(["optneg", "connect", "helo", "mail", "rcpt", ...Array(7).fill("header"), "eoh", "body", "eob", "abort", "abort", "quit"]);
    expect(whole.find((c) => c.kind === "connect")).toMatchObject({ hostname: "mail.example.org", family: "inet", address: "192.0.2.1" });
    const folded = whole.find((c) => c.kind === "header" && c.name === "X-Folded");
    expect(folded && "value" in folded ? folded.value.toString() : "").toBe(" first\n\tsecond");
  });

  it("decodes to the same events whichever byte a read ends on", () => {
    for (let split = 1; split < session.length; split++) {
      expect(decodeAll([session.subarray(0, split), session.subarray(split)])).toEqual(whole);
    }
  });

  describe("served by the daemon's server", () => {
    let running: Running;
    const handler = new RecordingHandler();
    beforeAll(async () => {
      running = await startServer(handler);
    });
    afterAll(() => running.stop());

    async function replay(pieces: Buffer[]): Promise<Buffer> {
      const socket = net.connect(running.port, "127.0.0.1");
      const received: Buffer[] = [];
      socket.on("data", (d: Buffer) => received.push(d));
      await new Promise((r) => socket.once("connect", r));
      for (const piece of pieces) socket.write(piece);
      await new Promise((r) => socket.once("close", r));
      return Buffer.concat(received);
    }

    it("answers identically at every split point and hands over the same message", async () => {
      const reference = await replay([session]);
      expect(reference.length).toBeGreaterThan(0);
      for (let split = 1; split < session.length; split++) {
        expect(await replay([session.subarray(0, split), session.subarray(split)])).toEqual(reference);
      }
      const bodies = new Set(handler.connections.map((c) => c.messages[0]!.body.toString("latin1")));
      expect(bodies.size).toBe(1);
      expect([...bodies][0]).toContain("caf\xc3\xa9\r\n\r\n.leading dot");
    });
  });
});
