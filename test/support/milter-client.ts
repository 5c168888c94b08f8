// A small milter client (the MTA side) that speaks to a running milter the way Postfix does.
// Used by the session tests and by the benchmark.

import net from "node:net";
import { decodeReply, encodeCommand } from "../../src/milter/client-codec.ts";
import * as C from "../../src/milter/constants.ts";
import { FrameDecoder } from "../../src/milter/frame.ts";
import { replyOwed } from "../../src/milter/reply-owed.ts";
import type { Command, Reply } from "../../src/milter/types.ts";

/** What Postfix 3.x sends: version 6, all actions, all protocol steps (reference §4). */
export const POSTFIX_OFFER = { version: 6, actions: 0x1ff, protocol: 0x1fffff } as const;

const DECISIONS = new Set(["continue", "accept", "reject", "tempfail", "discard", "skip", "replycode"]);

export type Target = { host: string; port: number } | { path: string };

export class MilterClient {
  readonly socket: net.Socket;
  readonly replies: Reply[] = [];
  readonly #decoder = new FrameDecoder(64 * 1024 * 1024);
  #waiters: Array<() => void> = [];
  #error: Error | undefined;
  #ended = false;
  /** The protocol mask the milter agreed to (decides which commands get replies). */
  protocol = 0;
  actions = 0;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (data: Buffer) => {
      try {
        for (const frame of this.#decoder.push(data)) this.replies.push(decodeReply(frame));
      } catch (err) {
        this.#error = err as Error;
      }
      this.#wake();
    });
    socket.on("error", (err) => {
      this.#error = err;
      this.#wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wake();
    });
  }

  static connect(target: Target): Promise<MilterClient> {
    return new Promise((resolve, reject) => {
      const socket = "path" in target ? net.connect(target.path) : net.connect(target.port, target.host);
      socket.once("connect", () => resolve(new MilterClient(socket)));
      socket.once("error", reject);
    });
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Sends OPTNEG and returns the milter's answer; remembers the agreed masks. */
  async negotiate(offer: { version: number; actions: number; protocol: number } = POSTFIX_OFFER): Promise<Reply & { kind: "optneg" }> {
    this.send({ kind: "optneg", ...offer });
    const [reply] = await this.#take(1);
    if (reply?.kind !== "optneg") throw new Error(`expected an OPTNEG reply, got ${reply?.kind}`);
    this.protocol = reply.protocol;
    this.actions = reply.actions;
    return reply;
  }

  send(cmd: Command): void {
    this.socket.write(encodeCommand(cmd));
  }

  sendRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Whether the milter owes a reply to this command under the agreed mask. */
  expectsReply(cmd: Command): boolean {
    return replyOwed(cmd.kind, this.protocol);
  }

  /** Sends a command and, if a reply is owed, returns every packet up to the decision. */
  async command(cmd: Command): Promise<Reply[]> {
    this.send(cmd);
    return this.expectsReply(cmd) ? this.decision() : [];
  }

  /** Waits for replies up to and including the next decision (edits and PROGRESS come before it). */
  async decision(): Promise<Reply[]> {
    const out: Reply[] = [];
    for (;;) {
      const [reply] = await this.#take(1);
      out.push(reply!);
      if (DECISIONS.has(reply!.kind)) return out;
    }
  }

  /** Resolves once the milter has closed the connection. */
  async closed(timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#ended) {
      if (Date.now() > deadline) throw new Error("the milter did not close the connection");
      await this.#wait(deadline - Date.now());
    }
  }

  close(): void {
    this.socket.destroy();
  }

  async #take(n: number, timeoutMs = 10_000): Promise<Reply[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length < n) {
      if (this.#error) throw this.#error;
      if (this.#ended) throw new Error("the milter closed the connection");
      if (Date.now() > deadline) throw new Error("no reply from the milter in time");
      await this.#wait(deadline - Date.now());
    }
    return this.replies.splice(0, n);
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(ms, 1));
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

export interface TestMessage {
  readonly client?: { hostname: string; address: string; family?: "inet" | "inet6"; port?: number };
  readonly helo?: string;
  readonly sender: string;
  readonly recipients: readonly string[];
  readonly headers: ReadonlyArray<readonly [string, string | Buffer]>;
  readonly body: Buffer | string;
  readonly queueId?: string;
  /** Postfix's chunk size by default. */
  readonly chunkSize?: number;
}

/** Drives one message through the way Postfix does (macros before events) and returns the EOB replies. */
export async function sendMessage(client: MilterClient, message: TestMessage, opts: { connect?: boolean } = {}): Promise<Reply[]> {
  const qid = message.queueId ?? "4ABCDEF123";
  const c = message.client ?? { hostname: "mail.example.org", address: "192.0.2.1" };
  const macro = (stage: string, pairs: Record<string, string>) =>
    client.send({ kind: "macro", stage: stage.charCodeAt(0), macros: new Map(Object.entries(pairs)) });
  const expectContinue = async (cmd: Command) => {
    const replies = await client.command(cmd);
    if (replies.length > 0 && replies.at(-1)!.kind !== "continue") throw new Error(`${cmd.kind} answered ${replies.at(-1)!.kind}`);
  };
  if (opts.connect !== false) {
    macro("C", { j: "mx.example.net", "{daemon_name}": "mx.example.net", _: `${c.hostname} [${c.address}]` });
    await expectContinue({ kind: "connect", hostname: c.hostname, family: c.family ?? "inet", port: c.port ?? 25025, address: c.address });
    await expectContinue({ kind: "helo", name: message.helo ?? c.hostname });
  }
  macro("M", { i: qid, "{mail_addr}": message.sender });
  await expectContinue({ kind: "mail", args: [`<${message.sender}>`] });
  for (const rcpt of message.recipients) {
    macro("R", { i: qid, "{rcpt_addr}": rcpt });
    await expectContinue({ kind: "rcpt", args: [`<${rcpt}>`] });
  }
  macro("T", { i: qid });
  await expectContinue({ kind: "data" });
  for (const [name, value] of message.headers) {
    macro("L", { i: qid });
    await expectContinue({ kind: "header", name, value: Buffer.isBuffer(value) ? value : Buffer.from(value) });
  }
  macro("N", { i: qid });
  await expectContinue({ kind: "eoh" });
  const body = Buffer.isBuffer(message.body) ? message.body : Buffer.from(message.body);
  const size = message.chunkSize ?? C.MILTER_CHUNK_SIZE;
  for (let off = 0; off < body.length; off += size) {
    macro("B", { i: qid });
    await expectContinue({ kind: "body", chunk: body.subarray(off, off + size) });
  }
  macro("E", { i: qid });
  return client.command({ kind: "eob", chunk: Buffer.alloc(0) });
}
