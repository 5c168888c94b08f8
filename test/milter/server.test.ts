// The server under abuse: garbage, truncated packets, many idle connections, limits,
// timeouts and drain. After each abuse a well-formed session must still be served.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { encodeFrame } from "../../src/milter/frame.ts";
import { MilterClient, sendMessage, type Target, type TestMessage } from "../support/milter-client.ts";
import { RecordingHandler } from "../support/recording-handler.ts";
import { startServer, type Running } from "../support/in-process-server.ts";

const message: TestMessage = {
  sender: "alice@example.org",
  recipients: ["bob@example.net"],
  headers: [["From", " alice@example.org"]],
  body: "hi\r\n",
};

let running: Running | undefined;
const sockets: Array<{ destroy(): void }> = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await running?.stop();
  running = undefined;
});

async function serveOneMessage(target: Target): Promise<string[]> {
  const client = await MilterClient.connect(target);
  sockets.push(client.socket);
  await client.negotiate();
  return (await sendMessage(client, message)).map((r) => r.kind);
}

function rawConnection(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => resolve(socket));
    socket.on("error", reject);
    sockets.push(socket);
  });
}

function closedByPeer(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => (socket.destroyed ? resolve() : socket.once("close", () => resolve())));
}

describe("hostile bytes", () => {
  it("closes a connection that sends random garbage, and serves the next", async () => {
    running = await startServer(new RecordingHandler());
    for (let i = 0; i < 20; i++) {
      const socket = await rawConnection(running.port);
      socket.on("error", () => {});
      socket.write(randomBytes(64 + i * 50));
      // Garbage that happens to announce a long packet waits for the rest: end it ourselves.
      socket.end();
      await closedByPeer(socket);
    }
    expect(await serveOneMessage({ host: "127.0.0.1", port: running.port })).toEqual(["insheader", "continue"]);
  });

  it.each([
    ["a zero length", Buffer.from([0, 0, 0, 0])],
    ["a length over the cap", Buffer.from([0x7f, 0xff, 0xff, 0xff, 0x42])],
    ["an unknown command", encodeFrame(0x7a, Buffer.from("junk"))],
    ["a command before negotiation", encodeFrame(0x42, Buffer.from("body"))],
  ])("closes on %s without a reply", async (_, bytes) => {
    running = await startServer(new RecordingHandler());
    const socket = await rawConnection(running.port);
    const received: Buffer[] = [];
    socket.on("data", (d: Buffer) => received.push(d));
    socket.write(bytes);
    await closedByPeer(socket);
    expect(Buffer.concat(received).length).toBe(0);
    expect(await serveOneMessage({ host: "127.0.0.1", port: running.port })).toEqual(["insheader", "continue"]);
  });

  it("drops a truncated packet at EOF without touching the handler", async () => {
    const handler = new RecordingHandler();
    running = await startServer(handler);
    const client = await MilterClient.connect({ host: "127.0.0.1", port: running.port });
    sockets.push(client.socket);
    await client.negotiate();
    const packet = encodeFrame(0x4d, Buffer.from("<a@b.example>\0"));
    client.sendRaw(packet.subarray(0, packet.length - 3));
    client.socket.end();
    await client.closed();
    expect(handler.connections).toHaveLength(0);
    expect(await serveOneMessage({ host: "127.0.0.1", port: running.port })).toEqual(["insheader", "continue"]);
  });
});

describe("limits", () => {
  it("holds 1,000 idle connections and still serves a real session", async () => {
    running = await startServer(new RecordingHandler());
    const idle = await Promise.all(Array.from({ length: 1000 }, () => rawConnection(running!.port)));
    await expect.poll(() => running!.server.connectionCount, { timeout: 10_000 }).toBe(1000);
    expect(await serveOneMessage({ host: "127.0.0.1", port: running.port })).toEqual(["insheader", "continue"]);
    expect(idle.every((s) => !s.destroyed)).toBe(true);
  });

  it("refuses connections over the cap and serves again once one closes", async () => {
    running = await startServer(new RecordingHandler(), { maxConnections: 3 });
    const held = await Promise.all([1, 2, 3].map(() => rawConnection(running!.port)));
    await expect.poll(() => running!.server.connectionCount).toBe(3);
    const extra = await rawConnection(running.port);
    await closedByPeer(extra);
    expect(running.logs.some((l) => /connection limit reached/.test(l.msg))).toBe(true);
    held[0]!.destroy();
    await expect.poll(() => running!.server.connectionCount).toBe(2);
    expect(await serveOneMessage({ host: "127.0.0.1", port: running.port })).toEqual(["insheader", "continue"]);
  });

  it("closes a connection that stays idle past the idle timeout", async () => {
    running = await startServer(new RecordingHandler(), { idleTimeoutMs: 200 });
    const socket = await rawConnection(running.port);
    await closedByPeer(socket);
    expect(running.logs.some((l) => /idle too long/.test(l.msg))).toBe(true);
  });
});

describe("drain", () => {
  it("refuses new connections, lets open sessions finish their messages and waits for them to end", async () => {
    const handler = new RecordingHandler({ endDelayMs: 300 });
    running = await startServer(handler);
    const port = running.port;
    const busy = await MilterClient.connect({ host: "127.0.0.1", port });
    sockets.push(busy.socket);
    await busy.negotiate();
    const inFlight = sendMessage(busy, message);
    await expect.poll(() => handler.connections.some((c) => c.messages[0]?.events.includes("eom"))).toBe(true);
    let drained = false;
    const draining = running.server.drain().then(() => (drained = true));
    await expect(MilterClient.connect({ host: "127.0.0.1", port })).rejects.toThrow(/ECONNREFUSED/);
    expect((await inFlight).map((r) => r.kind)).toEqual(["insheader", "continue"]);
    // The session goes on: Postfix may send another message on it before QUIT.
    busy.send({ kind: "abort" });
    expect((await sendMessage(busy, message, { connect: false })).map((r) => r.kind)).toEqual(["insheader", "continue"]);
    expect(drained).toBe(false);
    busy.send({ kind: "quit" });
    await draining;
    expect(drained).toBe(true);
    running = undefined;
  });

  it("closes what is still busy when the drain timeout passes", async () => {
    running = await startServer(new RecordingHandler({ endDelayMs: 5_000 }), { drainTimeoutMs: 100 });
    const busy = await MilterClient.connect({ host: "127.0.0.1", port: running.port });
    sockets.push(busy.socket);
    await busy.negotiate();
    void sendMessage(busy, message).catch(() => {});
    await new Promise((r) => setTimeout(r, 50));
    await running.server.drain();
    await busy.closed();
    expect(running.logs.some((l) => /drain timed out/.test(l.msg))).toBe(true);
    running = undefined;
  });
});

describe("unix sockets", () => {
  it("listens on a local socket with the configured umask and replaces a stale one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "authmilter-sock-"));
    try {
      const path = join(dir, "authmilter.sock");
      const first = await startServer(new RecordingHandler(), { socket: `local:${path}`, umask: 0o077 });
      expect(statSync(path).mode & 0o777).toBe(0o700);
      expect(await serveOneMessage({ path })).toEqual(["insheader", "continue"]);
      await first.stop();
      // A crashed run leaves its socket file behind; the next start must not fail on it.
      execFileSync("python3", ["-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", path]);
      expect(statSync(path).isSocket()).toBe(true);
      running = await startServer(new RecordingHandler(), { socket: `local:${path}`, umask: 0o007 });
      expect(statSync(path).mode & 0o777).toBe(0o770);
      expect(await serveOneMessage({ path })).toEqual(["insheader", "continue"]);
    } finally {
      await running?.stop();
      running = undefined;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
