// The MTA side of the benchmark, built on the test milter client: one SMTP session's worth of
// milter traffic over a chain of milters, as Postfix drives it.
//
// - Postfix opens one connection per milter per SMTP session and negotiates on each.
// - CONNECT, HELO, MAIL, RCPT and DATA go to each milter in turn (macros first, even when the
//   milter asked not to get the event itself).
// - The message content (headers, EOH, body chunks, EOB) goes to the first milter entirely;
//   its header changes are applied; then the changed message goes to the next (cleanup's
//   milter_message loop), so opendmarc reads opendkim's Authentication-Results.
// - An ACCEPT ends that milter's part (for the connection at CONNECT/HELO, for the message
//   later); REJECT/TEMPFAIL/DISCARD/REPLYCODE end the message (the benchmark counts an error).
// - Header values travel with their leading space when the milter agreed to HDR_LEADSPC and
//   without it otherwise; folding is LF towards the milter (reference §7).
//
// Writes (WriteMode):
// - "postfix" (default): what Postfix's milter8 does on a TCP socket. Nagle stays on
//   (vstream_tweak_tcp only enlarges the buffer to 4 × MSS), packets go into a VSTREAM buffer,
//   and the buffer is written out only before reading a reply, when it is full, and when smtpd
//   hands the milter socket to cleanup after DATA (milter8_send flushes). So events the milter
//   promised not to answer (NR_*) travel together with the next flush — and a flush that
//   follows unacknowledged data waits for the milter's (delayed) ACK.
// - "nodelay": the test client's own way: one write per packet, TCP_NODELAY on.

import { MilterClient, POSTFIX_OFFER, type Target } from "../../test/support/milter-client.ts";
import * as C from "../../src/milter/constants.ts";
import type { Command, Reply } from "../../src/milter/types.ts";
import type { BenchMessage } from "./fixtures.ts";

export interface MilterSpec {
  readonly name: string;
  readonly target: Target;
}

export interface SessionOutcome {
  /** From the first TCP connect to the last milter's end-of-message decision. */
  readonly latencyMs: number;
  /** The header block after every milter's changes (only when asked for). */
  readonly headers?: Array<[string, string]>;
  /** Final decisions, per milter, for the sanity check. */
  readonly decisions: string[];
  /** The slowest OPTNEG answer of the session: a busy event loop shows here first. */
  readonly optnegMs: number;
}

export class SessionError extends Error {
  override readonly name = "SessionError";
}

const NO_EVENT: Partial<Record<Command["kind"], number>> = {
  connect: C.SMFIP_NOCONNECT,
  helo: C.SMFIP_NOHELO,
  mail: C.SMFIP_NOMAIL,
  rcpt: C.SMFIP_NORCPT,
  data: C.SMFIP_NODATA,
  header: C.SMFIP_NOHDRS,
  eoh: C.SMFIP_NOEOH,
  body: C.SMFIP_NOBODY,
};

const MACRO_STAGE: Partial<Record<Command["kind"], string>> = {
  connect: "C",
  helo: "H",
  mail: "M",
  rcpt: "R",
  data: "T",
  header: "L",
  eoh: "N",
  body: "B",
  eob: "E",
};

export type WriteMode = "postfix" | "nodelay";

/** Postfix sizes its milter VSTREAM buffer at 4 × MSS; loopback's MSS is 65,483. */
const POSTFIX_BUFFER = 4 * 65_483;

interface Peer {
  readonly spec: MilterSpec;
  readonly client: MilterClient;
  readonly mode: WriteMode;
  readonly leadspc: boolean;
  /** ACCEPT at CONNECT or HELO: nothing more for this session. */
  connectionDone: boolean;
  /** ACCEPT during the message: nothing more for this message. */
  messageDone: boolean;
}

/** Every client currently open, so a stuck run can be cut short by closing them all. */
const openClients = new Set<MilterClient>();

export function closeAllClients(): void {
  for (const c of openClients) c.close();
}

function stripOneSpace(value: string): string {
  return value.startsWith(" ") ? value.slice(1) : value;
}

/** What the MTA stores for a value the milter sent (LF folding in, CRLF on the wire). */
function storedValue(value: string | Buffer, leadspc: boolean): string {
  const text = (typeof value === "string" ? value : value.toString("latin1")).replace(/\r?\n/g, "\r\n");
  return leadspc ? text : ` ${text}`;
}

async function step(peer: Peer, cmd: Command, macros: Record<string, string>, qid: string, level: "connection" | "message"): Promise<Reply[] | "skipped"> {
  const stage = MACRO_STAGE[cmd.kind];
  if (stage !== undefined) {
    peer.client.send({ kind: "macro", stage: stage.charCodeAt(0), macros: new Map(Object.entries({ ...macros, ...(stage === "C" || stage === "H" ? {} : { i: qid }) })) });
  }
  const no = NO_EVENT[cmd.kind];
  if (no !== undefined && (peer.client.protocol & no) !== 0) {
    // smtpd passes the milter socket to cleanup after DATA and flushes first (milter8_send).
    if (cmd.kind === "data") await flush(peer);
    return "skipped";
  }
  peer.client.send(cmd);
  let replies: Reply[] = [];
  if (peer.client.expectsReply(cmd)) {
    await flush(peer);
    replies = await decision(peer.client, cmd.kind === "eob" ? CONTENT_TIMEOUT_MS : COMMAND_TIMEOUT_MS);
  } else if (cmd.kind === "data" || peer.client.socket.writableLength >= (peer.mode === "postfix" ? POSTFIX_BUFFER : 0)) {
    // Under NR_BODY nothing answers a chunk: wait for the socket like Postfix's blocking
    // write, or 20 MB messages pile up in this process's memory.
    await flush(peer);
  }
  const last = replies.at(-1);
  if (last === undefined || last.kind === "continue") return replies;
  if (last.kind === "accept") {
    if (level === "connection") peer.connectionDone = true;
    else peer.messageDone = true;
    return replies;
  }
  if (last.kind === "skip") return replies;
  throw new SessionError(`${peer.spec.name} answered ${last.kind} to ${cmd.kind}${last.kind === "replycode" ? `: ${last.code} ${last.text}` : ""}`);
}

// Postfix's milter_command_timeout and milter_content_timeout. The test client's own
// decision() gives up after 10 s, which 128 concurrent 20 MB messages can exceed while the
// milter is still working (and sending PROGRESS), so the benchmark waits as Postfix would.
const COMMAND_TIMEOUT_MS = 30_000;
const CONTENT_TIMEOUT_MS = 300_000;
const DECISIONS = new Set(["continue", "accept", "reject", "tempfail", "discard", "skip", "replycode"]);

/** OPTNEG as MilterClient.negotiate does it, with Postfix's 30 s instead of the client's 10 s. */
async function negotiate(client: MilterClient): Promise<void> {
  client.send({ kind: "optneg", ...POSTFIX_OFFER });
  const [reply] = await decision(client, COMMAND_TIMEOUT_MS, (r) => r.kind === "optneg");
  if (reply?.kind !== "optneg") throw new SessionError(`expected an OPTNEG reply, got ${reply?.kind}`);
  client.protocol = reply.protocol;
  client.actions = reply.actions;
}

/** Every reply up to and including the next decision (edits and PROGRESS come before it). */
async function decision(client: MilterClient, timeoutMs: number, final: (r: Reply) => boolean = (r) => DECISIONS.has(r.kind)): Promise<Reply[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const at = client.replies.findIndex(final);
    if (at >= 0) return client.replies.splice(0, at + 1);
    if (client.ended) throw new SessionError("the milter closed the connection");
    const left = deadline - Date.now();
    if (left <= 0) throw new SessionError(`no decision from the milter in ${timeoutMs / 1000} s`);
    // The client's own "data" listener (registered first) has decoded the packet by the time ours runs.
    await new Promise<void>((resolve) => {
      const socket = client.socket;
      const done = () => {
        clearTimeout(timer);
        socket.off("data", done);
        socket.off("close", done);
        resolve();
      };
      const timer = setTimeout(done, left);
      socket.on("data", done);
      socket.on("close", done);
    });
  }
}

/** Writes out what is buffered and waits until the kernel took it (a blocking write). */
async function flush(peer: Peer): Promise<void> {
  const socket = peer.client.socket;
  if (peer.mode === "postfix") socket.uncork();
  if (socket.writableNeedDrain && !socket.destroyed) {
    await new Promise<void>((resolve) => {
      const done = () => {
        socket.off("drain", done);
        socket.off("close", done);
        resolve();
      };
      socket.on("drain", done);
      socket.on("close", done);
    });
  }
  if (peer.mode === "postfix") socket.cork();
}

function applyModifications(headers: Array<[string, string]>, replies: readonly Reply[], leadspc: boolean): void {
  for (const r of replies) {
    switch (r.kind) {
      case "addheader":
        headers.push([r.name, storedValue(r.value, leadspc)]);
        break;
      case "insheader":
        // Index 1 is the top of what the milter saw (Postfix's hidden Received: is index 0).
        headers.splice(Math.min(Math.max(0, r.index - 1), headers.length), 0, [r.name, storedValue(r.value, leadspc)]);
        break;
      case "chgheader": {
        const want = r.name.toLowerCase();
        let n = 0;
        const target = Math.max(1, r.index);
        const at = headers.findIndex(([name]) => name.toLowerCase() === want && ++n === target);
        const empty = (typeof r.value === "string" ? r.value.length : r.value.length) === 0;
        if (at < 0) {
          if (!empty) headers.push([r.name, storedValue(r.value, leadspc)]);
        } else if (empty) headers.splice(at, 1);
        else headers[at] = [headers[at]![0], storedValue(r.value, leadspc)];
        break;
      }
      default:
        break;
    }
  }
}

let sessionCounter = 0;

/**
 * One SMTP session with `messages` messages (1: Postfix's one-message-per-session case).
 * Returns one outcome per message; throws SessionError when a milter refuses or misbehaves.
 */
export async function runSession(
  milters: readonly MilterSpec[],
  message: BenchMessage,
  opts: { collectHeaders?: boolean; messages?: number; writeMode?: WriteMode } = {},
): Promise<SessionOutcome[]> {
  const peers: Peer[] = [];
  const outcomes: SessionOutcome[] = [];
  let t0 = performance.now();
  let optnegMs = 0;
  try {
    for (const spec of milters) {
      const client = await MilterClient.connect(spec.target);
      const mode = opts.writeMode ?? "postfix";
      openClients.add(client);
      // Postfix leaves Nagle on for milter sockets; the test client turns it off.
      if (mode === "postfix") client.socket.setNoDelay(false);
      const peer: Peer = { spec, client, mode, leadspc: false, connectionDone: false, messageDone: false };
      peers.push(peer);
      const n0 = performance.now();
      await negotiate(client);
      optnegMs = Math.max(optnegMs, performance.now() - n0);
      (peer as { leadspc: boolean }).leadspc = (client.protocol & C.SMFIP_HDR_LEADSPC) !== 0;
      if (mode === "postfix") client.socket.cork();
    }
    const c = message.client;
    const connMacros = { j: "mx.example.net", "{daemon_name}": "mx.example.net", "{client_addr}": c.address, "{client_name}": c.hostname, _: `${c.hostname} [${c.address}]` };
    for (const p of peers) {
      if (p.connectionDone) continue;
      await step(p, { kind: "connect", hostname: c.hostname, family: "inet", port: 25025, address: c.address }, connMacros, "", "connection");
    }
    for (const p of peers) {
      if (p.connectionDone) continue;
      await step(p, { kind: "helo", name: message.helo }, {}, "", "connection");
    }
    const count = opts.messages ?? 1;
    for (let m = 0; m < count; m++) {
      if (m > 0) t0 = performance.now();
      const qid = `B${(++sessionCounter).toString(16).toUpperCase().padStart(9, "0")}`;
      for (const p of peers) p.messageDone = p.connectionDone;
      for (const p of peers) {
        if (p.messageDone) continue;
        await step(p, { kind: "mail", args: [`<${message.sender}>`] }, { "{mail_addr}": message.sender }, qid, "message");
      }
      for (const rcpt of message.recipients) {
        for (const p of peers) {
          if (p.messageDone) continue;
          await step(p, { kind: "rcpt", args: [`<${rcpt}>`] }, { "{rcpt_addr}": rcpt }, qid, "message");
        }
      }
      for (const p of peers) {
        if (p.messageDone) continue;
        await step(p, { kind: "data" }, {}, qid, "message");
      }
      const headers: Array<[string, string]> = message.headers.map(([n, v]) => [n, v]);
      const decisions: string[] = [];
      for (const p of peers) {
        if (p.messageDone) {
          decisions.push(`${p.spec.name}:accept`);
          continue;
        }
        decisions.push(`${p.spec.name}:${await content(p, headers, message.body, qid)}`);
      }
      const latencyMs = performance.now() - t0;
      outcomes.push({ latencyMs, decisions, optnegMs, ...(opts.collectHeaders ? { headers } : {}) });
    }
    for (const p of peers) {
      p.client.send({ kind: "quit" });
      if (p.mode === "postfix") p.client.socket.uncork();
    }
    return outcomes;
  } finally {
    for (const p of peers) {
      p.client.close();
      openClients.delete(p.client);
    }
  }
}

/** Headers, EOH, body and EOB to one milter; applies its header changes; returns its decision. */
async function content(p: Peer, headers: Array<[string, string]>, body: Buffer, qid: string): Promise<string> {
  const snapshot = headers.slice();
  for (const [name, value] of snapshot) {
    const v = (p.leadspc ? value : stripOneSpace(value)).replace(/\r\n/g, "\n");
    await step(p, { kind: "header", name, value: Buffer.from(v, "latin1") }, {}, qid, "message");
    if (p.messageDone) return "accept";
  }
  await step(p, { kind: "eoh" }, {}, qid, "message");
  if (p.messageDone) return "accept";
  for (let off = 0; off < body.length; off += C.MILTER_CHUNK_SIZE) {
    const replies = await step(p, { kind: "body", chunk: body.subarray(off, off + C.MILTER_CHUNK_SIZE) }, {}, qid, "message");
    if (p.messageDone) return "accept";
    if (replies !== "skipped" && replies.at(-1)?.kind === "skip") break;
  }
  const replies = await step(p, { kind: "eob", chunk: Buffer.alloc(0) }, {}, qid, "message");
  if (replies === "skipped") return "continue";
  applyModifications(headers, replies, p.leadspc);
  return replies.at(-1)!.kind;
}
