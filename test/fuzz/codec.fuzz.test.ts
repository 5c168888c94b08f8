// Property-based fuzzing of the wire protocol: the frame decoder and decodeCommand on their own,
// then the session behind a real server socket. Seeded and bounded (see prng.ts); no timing.

import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeReply, encodeCommand } from "../../src/milter/client-codec.ts";
import { decodeCommand } from "../../src/milter/codec.ts";
import { FrameDecoder, FrameError, type Frame } from "../../src/milter/frame.ts";
import type { Command, Reply } from "../../src/milter/types.ts";
import { ProtocolError } from "../../src/milter/wire-strings.ts";
import { authResultsOf, controlMessage, sendMessage, startDaemon, type Daemon } from "../hostile/daemon.ts";
import { POSTFIX_OFFER } from "../support/milter-client.ts";
import { command, KINDS, mutate, split, type Kind } from "./commands.ts";
import { forAll, type Rng } from "./prng.ts";

/** What the server does with a stream: frames until one does not decode. */
type Decoded = {
  readonly commands: Command[];
  readonly error?: FrameError | ProtocolError;
  /** Bytes handed out as whole frames. */
  readonly consumed: number;
  readonly buffered: number;
};

function decodeStream(pieces: readonly Buffer[], maxPacketBytes: number): Decoded {
  const decoder = new FrameDecoder(maxPacketBytes);
  const commands: Command[] = [];
  let consumed = 0;
  for (const piece of pieces) {
    let frames: Frame[];
    try {
      frames = decoder.push(piece);
    } catch (err) {
      if (err instanceof FrameError) return { commands, error: err, consumed, buffered: decoder.buffered };
      throw err;
    }
    for (const frame of frames) {
      consumed += 5 + frame.payload.length;
      try {
        commands.push(decodeCommand(frame));
      } catch (err) {
        if (err instanceof ProtocolError) return { commands, error: err, consumed, buffered: decoder.buffered };
        throw err;
      }
    }
  }
  return { commands, consumed, buffered: decoder.buffered };
}

/** A stream that looks like milter traffic often enough to reach past the length check. */
function randomStream(rng: Rng): Buffer {
  const parts: Buffer[] = [];
  for (let i = rng.range(1, 8); i > 0; i--) {
    parts.push(
      rng.weighted<() => Buffer>([
        [3, () => rng.bytes(rng.length(300))],
        [
          3,
          () => {
            // A plausible header: small length, a command letter, random payload.
            const payload = rng.bytes(rng.length(200));
            const head = Buffer.alloc(5);
            head.writeUInt32BE(payload.length + 1 + rng.pick([0, 0, 0, -1, 1, 5]), 0);
            head[4] = rng.pick([..."OLDCHMRTNBEAQKUZ\x00"].map((c) => c.charCodeAt(0)));
            return Buffer.concat([head, payload]);
          },
        ],
        [2, () => encodeCommand(command(rng))],
      ])(),
    );
  }
  return Buffer.concat(parts);
}

describe("frame decoder and decodeCommand", () => {
  it("take any byte stream, split anywhere, without an exception other than FrameError or ProtocolError", async () => {
    await forAll(
      "random byte streams",
      3_000,
      (rng) => {
        const stream = randomStream(rng);
        return { stream, pieces: split(rng, stream), cap: rng.pick([64, 4096, 1024 * 1024]) };
      },
      ({ stream, pieces, cap }) => {
        const result = decodeStream(pieces, cap);
        if (result.error === undefined) {
          // Nothing lost or invented: every byte is in a decoded frame or still buffered, and
          // what is buffered is less than one packet the cap allows.
          expect(result.consumed + result.buffered).toBe(stream.length);
          expect(result.buffered).toBeLessThan(4 + 1 + cap);
        }
        // The same bytes in one piece give the same answer: decoding does not depend on splits.
        // (A bad length ends the stream; frames that came in the same read before it are
        // dropped with it, so then only a prefix is comparable.)
        const whole = decodeStream([stream], cap);
        if (result.error instanceof FrameError || whole.error instanceof FrameError) {
          expect(result.error).toBeDefined();
          expect(whole.error).toBeDefined();
          expect(result.commands.slice(0, whole.commands.length)).toEqual(whole.commands);
        } else {
          expect(whole.commands).toEqual(result.commands);
          expect(whole.error?.message).toBe(result.error?.message);
        }
      },
    );
  });

  it("decode every valid command sequence, re-encoded and split at random points, to the same commands", async () => {
    await forAll(
      "valid sequences round-trip",
      1_500,
      (rng) => {
        const commands = Array.from({ length: rng.range(1, 30) }, () => command(rng));
        const stream = Buffer.concat(commands.map(encodeCommand));
        return { commands, pieces: split(rng, stream) };
      },
      ({ commands, pieces }) => {
        const result = decodeStream(pieces, 1024 * 1024);
        expect(result.error).toBeUndefined();
        expect(result.buffered).toBe(0);
        expect(result.commands).toEqual(commands);
      },
    );
  });

  it("either decode a damaged packet or refuse it with FrameError or ProtocolError", async () => {
    const seen = { decoded: 0, frameError: 0, protocolError: 0, waiting: 0 };
    await forAll(
      "mutated packets",
      5_000,
      (rng) => {
        const original = command(rng, rng.pick(KINDS), { maxBytes: 64 });
        let packet = encodeCommand(original);
        for (let i = rng.range(1, 3); i > 0; i--) packet = mutate(rng, packet);
        return { original, packet, pieces: split(rng, packet) };
      },
      ({ packet, pieces }) => {
        const result = decodeStream(pieces, 64 * 1024);
        if (result.error instanceof FrameError) seen.frameError++;
        else if (result.error instanceof ProtocolError) seen.protocolError++;
        else if (result.commands.length > 0) seen.decoded++;
        else seen.waiting++;
        if (result.error === undefined && result.commands.length === 0) {
          // Nothing decoded and no error: only because the packet announces more than it has.
          expect(packet.length < 4 || packet.readUInt32BE(0) + 4 > packet.length).toBe(true);
        }
      },
    );
    // The mutations reach every outcome, so the property above is not vacuous.
    expect(Object.values(seen).every((n) => n > 0)).toBe(true);
  });
});

// ---- the session behind a real socket ------------------------------------------------------

const PLAUSIBLE: ReadonlyArray<readonly [number, Kind]> = [
  [12, "macro"],
  [4, "connect"],
  [4, "helo"],
  [8, "mail"],
  [6, "rcpt"],
  [3, "data"],
  [16, "header"],
  [4, "eoh"],
  [8, "body"],
  [6, "eob"],
  [4, "abort"],
  [2, "unknown"],
  [1, "quit_nc"],
  [1, "quit"],
  [1, "optneg"],
];

/** Mostly Postfix-like traffic in a random order, some of it damaged. */
function sessionBytes(rng: Rng): Buffer {
  const packets: Buffer[] = [];
  if (rng.bool(0.95)) packets.push(encodeCommand({ kind: "optneg", ...(rng.bool(0.9) ? POSTFIX_OFFER : { version: rng.pick([1, 2, 6]), actions: rng.u32(), protocol: rng.u32() }) }));
  const damaged = rng.pick([0, 0.02, 0.1, 0.3]);
  for (let i = rng.range(1, 60); i > 0; i--) {
    const kind = rng.weighted(PLAUSIBLE);
    let packet = encodeCommand(kind === "header" && rng.bool(0.3) ? { kind, name: "From", value: Buffer.from(rng.pick([" <a@ok.example>", " a@ok.example, b@x.example", " team:;", " (", ""])) } : command(rng, kind, { maxBytes: 512 }));
    if (rng.bool(damaged)) packet = mutate(rng, packet);
    packets.push(packet);
  }
  return Buffer.concat(packets);
}

interface SessionResult {
  readonly replies: Reply[];
  readonly replyError?: Error;
}

/** Writes the bytes in random pieces, half-closes, and waits for the daemon to close its side. */
function runSession(port: number, pieces: readonly Buffer[]): Promise<SessionResult> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const decoder = new FrameDecoder(64 * 1024 * 1024);
    const replies: Reply[] = [];
    let replyError: Error | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the daemon neither answered to the end nor closed the connection within 20 s (${replies.length} replies)`));
    }, 20_000);
    socket.on("data", (data: Buffer) => {
      try {
        for (const frame of decoder.push(data)) replies.push(decodeReply(frame));
      } catch (err) {
        replyError ??= err as Error;
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ replies, ...(replyError ? { replyError } : {}) });
    });
    socket.on("connect", async () => {
      for (const piece of pieces) {
        if (socket.destroyed) return;
        socket.write(piece);
        // Let some pieces arrive as separate reads.
        if (piece.length < 8) await new Promise((r) => setImmediate(r));
      }
      socket.end();
    });
  });
}

describe("the session over a real server socket", () => {
  let daemon: Daemon;
  const crashes: unknown[] = [];
  const onCrash = (err: unknown) => crashes.push(err);

  beforeAll(async () => {
    daemon = await startDaemon();
    process.on("uncaughtException", onCrash);
    process.on("unhandledRejection", onCrash);
  });
  afterAll(async () => {
    process.off("uncaughtException", onCrash);
    process.off("unhandledRejection", onCrash);
    await daemon?.stop();
  });

  it("survives random sequences of valid and damaged packets, then serves a clean session", async () => {
    const stats = { replies: 0, authResults: 0 };
    const logsBefore = daemon.logs.length;
    await forAll(
      "sessions",
      400,
      (rng) => {
        const bytes = sessionBytes(rng);
        return { bytes, pieces: split(rng, bytes) };
      },
      async ({ pieces }) => {
        const result = await runSession(daemon.running.port, pieces);
        // Whatever it was sent, the daemon only ever writes well-formed replies.
        expect(result.replyError).toBeUndefined();
        // Nothing is answered before option negotiation, and it is answered once at most.
        if (result.replies.length > 0) expect(result.replies[0]!.kind).toBe("optneg");
        expect(result.replies.filter((r) => r.kind === "optneg").length).toBeLessThanOrEqual(1);
        stats.replies += result.replies.length;
        stats.authResults += result.replies.filter((r) => r.kind === "insheader" && r.name === "Authentication-Results").length;
        expect(crashes).toEqual([]);
      },
    );
    // The sequences reach both ends: messages answered, connections closed for bad bytes.
    const logs = daemon.logs.slice(logsBefore);
    expect(stats.replies).toBeGreaterThan(0);
    expect(stats.authResults).toBeGreaterThan(0);
    expect(logs.some((l) => /closing the connection$/.test(l.msg))).toBe(true);
    expect(logs.some((l) => l.msg.includes("RequiredHeaders"))).toBe(true);
    // No handler failure, no internal error: only refusals of bad input are logged as errors.
    const errors = logs.filter((l) => l.level >= 50 && l.msg !== "milter option negotiation failed; closing");
    expect(errors.map((l) => l.msg)).toEqual([]);
    await expect.poll(() => daemon.running.server.connectionCount, { timeout: 10_000 }).toBe(0);
    const client = await daemon.client();
    const replies = await sendMessage(client, await controlMessage());
    expect(replies.at(-1)).toEqual({ kind: "continue" });
    expect(authResultsOf(replies)).toMatch(/^mx\.example\.net; dkim=pass .*; dmarc=pass \(p=REJECT dis=none\) header\.from=good\.example; arc=none$/);
    expect(crashes).toEqual([]);
  });
});
