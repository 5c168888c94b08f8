// The state machine's edge cases from shared/reference/milter-protocol.md §12, each driven
// over a real loopback connection by the test milter client. Numbers refer to that list.

import { afterEach, describe, expect, it } from "vitest";
import * as C from "../../src/milter/constants.ts";
import type { Reply } from "../../src/milter/types.ts";
import { MilterClient, POSTFIX_OFFER, sendMessage, type TestMessage } from "../support/milter-client.ts";
import { RecordingHandler, type Behaviour } from "../support/recording-handler.ts";
import { startServer, type Running } from "../support/in-process-server.ts";

const message: TestMessage = {
  sender: "alice@example.org",
  recipients: ["bob@example.net"],
  headers: [
    ["From", " Alice <alice@example.org>"],
    ["Subject", " hello"],
  ],
  body: "Hello Bob.\r\n",
};

let running: Running | undefined;
const clients: MilterClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await running?.stop();
  running = undefined;
});

async function setup(behaviour: Behaviour = {}, serverOptions = {}) {
  const handler = new RecordingHandler(behaviour);
  running = await startServer(handler, serverOptions);
  const client = await MilterClient.connect({ host: "127.0.0.1", port: running.port });
  clients.push(client);
  return { handler, client, running };
}

const kinds = (replies: readonly Reply[]) => replies.map((r) => r.kind);
const macro = (stage: string, pairs: Record<string, string> = {}) =>
  ({ kind: "macro", stage: stage.charCodeAt(0), macros: new Map(Object.entries(pairs)) }) as const;

describe("a Postfix-like session", () => {
  it("adds the handler's header at end of message and says continue, in one packet run", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    const replies = await sendMessage(client, message);
    expect(kinds(replies)).toEqual(["insheader", "continue"]);
    expect(replies[0]).toMatchObject({ index: 1, name: "X-Test" });
    // HDR_LEADSPC was agreed, so the value brings its own space after the colon.
    expect((replies[0] as { value: Buffer }).value.toString()).toBe(" seen");
    expect(handler.connections[0]!.messages[0]!.events).toEqual([
      "mail <alice@example.org>",
      "rcpt <bob@example.net>",
      "header From",
      "header Subject",
      "eoh",
      "body 12",
      "eom",
    ]);
  });

  it("negotiates the macros it needs and gets them", async () => {
    const { client, handler } = await setup();
    const reply = await client.negotiate();
    expect(reply.macros.get(C.SMFIM_CONNECT)).toEqual(["j", "{daemon_name}"]);
    await sendMessage(client, message);
    expect(handler.connections[0]!.context.macros.get("{daemon_name}")).toBe("mx.example.net");
    expect(handler.connections[0]!.messages[0]!.macrosAtEnd!.get("i")).toBe("4ABCDEF123");
  });

  it("leaves Postfix to add the space when HDR_LEADSPC is not offered", async () => {
    const { client } = await setup();
    await client.negotiate({ ...POSTFIX_OFFER, protocol: POSTFIX_OFFER.protocol & ~C.SMFIP_HDR_LEADSPC });
    const replies = await sendMessage(client, message);
    expect((replies[0] as { value: Buffer }).value.toString()).toBe("seen");
  });

  it("(1, 2) handles a whole session written byte by byte and one written in a single packet run", async () => {
    const { handler, running } = await setup();
    const { encodeCommand } = await import("../../src/milter/client-codec.ts");
    const bytes = Buffer.concat(
      [
        { kind: "optneg", ...POSTFIX_OFFER } as const,
        macro("C", { j: "mx" }),
        { kind: "connect", hostname: "h", family: "inet", port: 25, address: "192.0.2.9" } as const,
        { kind: "mail", args: ["<a@b.example>"] } as const,
        ...Array.from({ length: 50 }, (_, i) => ({ kind: "header", name: `X-H${i}`, value: Buffer.from(" v") }) as const),
        { kind: "eoh" } as const,
        { kind: "eob", chunk: Buffer.alloc(0) } as const,
      ].map((c) => encodeCommand(c)),
    );
    for (const pieces of [[bytes], [...bytes].map((b) => Buffer.from([b]))]) {
      const client = await MilterClient.connect({ host: "127.0.0.1", port: running.port });
      clients.push(client);
      for (const piece of pieces) client.sendRaw(piece);
      // With NR_* agreed, the only answers are the OPTNEG reply and the end-of-message run.
      expect(kinds(await client.decision())).toEqual(["optneg", "insheader", "continue"]);
    }
    for (const conn of handler.connections) {
      expect(conn.messages[0]!.headers).toHaveLength(50);
      expect(conn.messages[0]!.ended).toBe(true);
    }
  });
});

describe("edge cases of §12", () => {
  it("(4) answers CONTINUE to every event of a version-2 MTA that offers nothing", async () => {
    const { client } = await setup();
    const reply = await client.negotiate({ version: 2, actions: 0, protocol: 0 });
    expect(reply.protocol & (C.SMFIP_NR_HDR | C.SMFIP_NR_BODY)).toBe(0);
    expect(kinds(await client.command({ kind: "mail", args: ["<a@b.example>"] }))).toEqual(["continue"]);
    expect(kinds(await client.command({ kind: "header", name: "From", value: Buffer.from("a@b.example") }))).toEqual(["continue"]);
    expect(kinds(await client.command({ kind: "body", chunk: Buffer.from("x\r\n") }))).toEqual(["continue"]);
    expect(kinds(await client.command({ kind: "eob", chunk: Buffer.alloc(0) }))).toEqual(["insheader", "continue"]);
  });

  it("(5) closes when the MTA cannot add headers at all", async () => {
    const { client } = await setup();
    client.send({ kind: "optneg", version: 6, actions: C.SMFIF_CHGHDRS, protocol: 0x1fffff });
    await client.closed();
    expect(client.replies).toEqual([]);
  });

  it("(5) skips a header change the MTA did not agree to, and still answers", async () => {
    const { client, running } = await setup({
      outcome: () => ({
        modifications: [
          { kind: "chgheader", index: 1, name: "Authentication-Results", value: "" },
          { kind: "insheader", index: 1, name: "X-Test", value: "v" },
        ],
        decision: { kind: "continue" },
      }),
    });
    await client.negotiate({ version: 6, actions: C.SMFIF_ADDHDRS, protocol: 0x1fffff });
    expect(kinds(await sendMessage(client, message))).toEqual(["insheader", "continue"]);
    expect(running.logs.some((l) => /did not agree/.test(l.msg))).toBe(true);
  });

  it("(7) serves a message whose CONNECT was suppressed but whose macros came", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    client.send(macro("C", { "{daemon_name}": "submission" }));
    const replies = await sendMessage(client, message, { connect: false });
    expect(kinds(replies)).toEqual(["insheader", "continue"]);
    expect(handler.connections[0]!.context.macros.get("{daemon_name}")).toBe("submission");
  });

  it.each([
    ["unknown family", { hostname: "unknown", family: "unknown", port: 0, address: "" }, "connect unknown unknown  0"],
    ["unix socket", { hostname: "localhost", family: "unix", port: 0, address: "/run/x" }, "connect localhost unix /run/x 0"],
    ["IPv6", { hostname: "[2001:db8::1]", family: "inet6", port: 587, address: "2001:db8::1" }, "connect [2001:db8::1] inet6 2001:db8::1 587"],
    ["non-SMTP (port 0)", { hostname: "localhost", family: "inet", port: 0, address: "127.0.0.1" }, "connect localhost inet 127.0.0.1 0"],
  ] as const)("(8, 9) passes a CONNECT from an %s client to the handler", async (_, connect, event) => {
    const { client, handler } = await setup();
    await client.negotiate();
    expect(await client.command({ kind: "connect", ...connect })).toEqual([]);
    await sendMessage(client, message, { connect: false });
    expect(handler.connections[0]!.events[0]).toBe(event);
  });

  it("(10) sees a second HELO after STARTTLS with the TLS macros, and no message leaks", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    client.send({ kind: "connect", hostname: "h", family: "inet", port: 1, address: "192.0.2.1" });
    client.send({ kind: "helo", name: "first" });
    client.send({ kind: "abort" });
    client.send(macro("H", { "{tls_version}": "TLSv1.3" }));
    client.send({ kind: "helo", name: "second" });
    await sendMessage(client, message, { connect: false });
    expect(handler.connections[0]!.events).toEqual([
      "connect h inet 192.0.2.1 1",
      "helo first tls=-",
      "helo second tls=TLSv1.3",
    ]);
  });

  it("(11) keeps messages on one connection apart", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    await sendMessage(client, message);
    client.send({ kind: "abort" });
    client.send({ kind: "abort" });
    await sendMessage(client, { ...message, headers: [["Subject", " second"]], body: "two\r\n", queueId: "QID2" }, { connect: false });
    const [first, second] = handler.connections[0]!.messages;
    expect(first!.headers.map(([n]) => n)).toEqual(["From", "Subject"]);
    expect(second!.headers.map(([n]) => n)).toEqual(["Subject"]);
    expect(second!.body.toString()).toBe("two\r\n");
    expect(second!.macrosAtEnd!.get("i")).toBe("QID2");
    expect(first!.aborted).toBe(false); // an ABORT after the end does not reach a finished message
  });

  it.each(["mail", "rcpt", "header", "body"] as const)("(12) aborts after %s and then serves a new message", async (point) => {
    const { client, handler } = await setup();
    await client.negotiate();
    client.send(macro("M", { "{auth_authen}": "alice" }));
    client.send({ kind: "mail", args: ["<a@b.example>"] });
    if (point !== "mail") client.send({ kind: "rcpt", args: ["<c@d.example>"] });
    if (point === "header" || point === "body") client.send({ kind: "header", name: "From", value: Buffer.from(" a@b.example") });
    if (point === "body") client.send({ kind: "body", chunk: Buffer.from("partial") });
    client.send({ kind: "abort" });
    await sendMessage(client, message, { connect: false });
    const [aborted, next] = handler.connections[0]!.messages;
    expect(aborted!.aborted).toBe(true);
    expect(aborted!.ended).toBe(false);
    expect(next!.ended).toBe(true);
    expect(next!.headers).toHaveLength(2);
    expect(next!.macrosAtEnd!.has("{auth_authen}")).toBe(false);
  });

  it("(13) treats ABORT with no transaction as a no-op without reply", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    client.send({ kind: "abort" });
    expect(kinds(await sendMessage(client, message))).toEqual(["insheader", "continue"]);
    expect(handler.connections[0]!.messages).toHaveLength(1);
  });

  it("(14) passes null senders and ESMTP parameters as given", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    client.send({ kind: "mail", args: ["<>", "BODY=8BITMIME", "SMTPUTF8", "SIZE=1234"] });
    client.send({ kind: "abort" });
    client.send({ kind: "mail", args: [""] });
    client.send({ kind: "abort" });
    client.send({ kind: "mail", args: ["<jürgen@exämple.de>"] });
    await client.command({ kind: "eob", chunk: Buffer.alloc(0) });
    expect(handler.connections[0]!.messages.map((m) => m.events[0])).toEqual([
      "mail <> BODY=8BITMIME SMTPUTF8 SIZE=1234",
      "mail ",
      "mail <jürgen@exämple.de>",
    ]);
  });

  it("(15) takes a thousand recipients", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    const recipients = Array.from({ length: 1000 }, (_, i) => `r${i}@example.net`);
    expect(kinds(await sendMessage(client, { ...message, recipients }))).toEqual(["insheader", "continue"]);
    expect(handler.connections[0]!.messages[0]!.events.filter((e) => e.startsWith("rcpt"))).toHaveLength(1000);
  });

  it("(16, 17) serves a message with no DATA, no headers and no body", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    client.send({ kind: "mail", args: ["<a@b.example>"] });
    client.send({ kind: "rcpt", args: ["<c@d.example>"] });
    expect(kinds(await client.command({ kind: "eob", chunk: Buffer.alloc(0) }))).toEqual(["insheader", "continue"]);
    expect(handler.connections[0]!.messages[0]!.events).toEqual(["mail <a@b.example>", "rcpt <c@d.example>", "eom"]);
  });

  it("(18-21) hands header bytes to the handler exactly as sent", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    const headers: Array<[string, Buffer]> = [
      ["X-Empty", Buffer.alloc(0)],
      ["X-Space", Buffer.from("   ")],
      ["X-Tab", Buffer.from("\tvalue")],
      ["dKiM-sIgNaTuRe", Buffer.from(" v=1;\n\ta=rsa-sha256")],
      ["Subject", Buffer.from([0x20, 0xc3, 0xa9, 0xff, 0x0d, 0x41])],
      ["References", Buffer.alloc(100_000, 0x3c)],
    ];
    await sendMessage(client, { ...message, headers });
    expect(handler.connections[0]!.messages[0]!.headers).toEqual(headers);
  });

  it("(22) closes the connection on a HEADER without its second NUL", async () => {
    const { client, running } = await setup();
    await client.negotiate();
    client.send({ kind: "mail", args: ["<a@b.example>"] });
    const { encodeFrame } = await import("../../src/milter/frame.ts");
    client.sendRaw(encodeFrame(C.SMFIC_HEADER, Buffer.from("Subject\0no terminator")));
    await client.closed();
    expect(running.logs.some((l) => /protocol error/.test(l.msg))).toBe(true);
  });

  it("(24, 40) gets body bytes in order across odd chunk boundaries, end of message last", async () => {
    const { client, handler } = await setup({ bodyDelayMs: 5 });
    await client.negotiate();
    const body = Buffer.from("line one\r\nline two\r\n.\r\nlast\r\n".repeat(3));
    await sendMessage(client, { ...message, body, chunkSize: 1 });
    await sendMessage(client, { ...message, body: Buffer.alloc(65_535 * 2 + 7, 0x61) }, { connect: false });
    const [first, second] = handler.connections[0]!.messages;
    expect(first!.body).toEqual(body);
    expect(first!.events.at(-1)).toBe("eom");
    expect(second!.body.length).toBe(65_535 * 2 + 7);
  });

  it("(26) treats a payload on end of body as the last body chunk", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    client.send({ kind: "mail", args: ["<a@b.example>"] });
    client.send({ kind: "body", chunk: Buffer.from("first\r\n") });
    await client.command({ kind: "eob", chunk: Buffer.from("second\r\n") });
    expect(handler.connections[0]!.messages[0]!.body.toString()).toBe("first\r\nsecond\r\n");
  });

  it("(27) answers UNKNOWN with CONTINUE when no-reply was not agreed for it", async () => {
    const { client } = await setup();
    await client.negotiate({ ...POSTFIX_OFFER, protocol: POSTFIX_OFFER.protocol & ~(C.SMFIP_NR_UNKN | C.SMFIP_NOUNKNOWN) });
    expect(kinds(await client.command({ kind: "unknown", line: "XFOO bar" }))).toEqual(["continue"]);
  });

  it("(28) closes on an unknown command byte without replying", async () => {
    const { client } = await setup();
    await client.negotiate();
    const { encodeFrame } = await import("../../src/milter/frame.ts");
    client.sendRaw(encodeFrame(0x5a));
    await client.closed();
    expect(client.replies).toEqual([]);
  });

  it("(29) ignores message events that arrive outside a transaction", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    client.send({ kind: "body", chunk: Buffer.from("stray") });
    client.send({ kind: "header", name: "X", value: Buffer.from("stray") });
    expect(kinds(await client.command({ kind: "eob", chunk: Buffer.alloc(0) }))).toEqual(["continue"]);
    await sendMessage(client, message);
    expect(handler.connections[0]!.messages).toHaveLength(1);
    expect(handler.connections[0]!.messages[0]!.body.toString()).toBe("Hello Bob.\r\n");
  });

  it("(30) wipes connection state on QUIT_NC and serves the next client on the same socket", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    client.send(macro("C", { "{daemon_name}": "first" }));
    await sendMessage(client, message);
    client.send({ kind: "quit_nc" });
    client.send({ kind: "connect", hostname: "second.example", family: "inet", port: 2, address: "192.0.2.2" });
    await sendMessage(client, message, { connect: false });
    expect(handler.connections).toHaveLength(2);
    expect(handler.connections[0]!.closed).toBe(true);
    expect(handler.connections[1]!.events[0]).toBe("connect second.example inet 192.0.2.2 2");
    expect(handler.connections[1]!.context.macros.get("{daemon_name}")).toBeUndefined();
  });

  it("(31) releases the message and the connection when the MTA disappears mid-message", async () => {
    const { client, handler } = await setup();
    await client.negotiate();
    client.send({ kind: "mail", args: ["<a@b.example>"] });
    client.send({ kind: "body", chunk: Buffer.from("partial") });
    await new Promise((r) => setTimeout(r, 50));
    client.close();
    await expect.poll(() => handler.connections[0]?.closed).toBe(true);
    expect(handler.connections[0]!.messages[0]!.aborted).toBe(true);
  });

  it("(33) sends edits, then quarantine, then the decision, all in one write", async () => {
    const { client } = await setup({
      outcome: () => ({
        modifications: [
          { kind: "chgheader", index: 2, name: "Authentication-Results", value: "" },
          { kind: "insheader", index: 1, name: "Authentication-Results", value: "mx; dkim=pass" },
        ],
        quarantine: "held for review",
        decision: { kind: "replycode", code: "550", status: "5.7.1", text: "100% rejected" },
      }),
    });
    await client.negotiate();
    const reads: Buffer[] = [];
    client.socket.on("data", (d: Buffer) => reads.push(d));
    const replies = await sendMessage(client, message);
    expect(kinds(replies)).toEqual(["chgheader", "insheader", "quarantine", "replycode"]);
    expect(replies[3]).toEqual({ kind: "replycode", code: "550", status: "5.7.1", text: "100% rejected" });
    // The whole end-of-message answer arrived in one read: it left in one write.
    const { FrameDecoder } = await import("../../src/milter/frame.ts");
    expect(new FrameDecoder().push(reads.at(-1)!).map((f) => String.fromCharCode(f.code))).toEqual(["m", "i", "q", "y"]);
  });

  it("(37) sends PROGRESS while end of message is slow, and nothing after the decision", async () => {
    const { client } = await setup({ endDelayMs: 300 }, { progressIntervalMs: 50 });
    await client.negotiate();
    const replies = await sendMessage(client, message);
    expect(replies.filter((r) => r.kind === "progress").length).toBeGreaterThanOrEqual(2);
    expect(kinds(replies).slice(-2)).toEqual(["insheader", "continue"]);
    await new Promise((r) => setTimeout(r, 150));
    expect(client.replies).toEqual([]);
  });

  it("(39) survives an MTA that closes right after our OPTNEG reply", async () => {
    const { client, running } = await setup();
    await client.negotiate();
    client.close();
    const next = await MilterClient.connect({ host: "127.0.0.1", port: running.port });
    clients.push(next);
    await next.negotiate();
    expect(kinds(await sendMessage(next, message))).toEqual(["insheader", "continue"]);
  });
});

describe("failures in the handler", () => {
  it.each(["header", "end", "connect"] as const)("a handler that throws at %s fails only that message, with tempfail", async (throwAt) => {
    const { client, handler, running } = await setup({ throwAt });
    await client.negotiate();
    expect(kinds(await sendMessage(client, message))).toEqual(["tempfail"]);
    expect(running.logs.some((l) => l.level >= 50 && /failed/.test(l.msg))).toBe(true);
    handler.behaviour.throwAt = undefined;
    const next = await MilterClient.connect({ host: "127.0.0.1", port: running.port });
    clients.push(next);
    await next.negotiate();
    expect(kinds(await sendMessage(next, message))).toEqual(["insheader", "continue"]);
  });

  it("a handler slower than the command timeout gets the failure decision", async () => {
    const { client } = await setup({ endDelayMs: 1_000 }, { commandTimeoutMs: 100, failureDecision: { kind: "accept" } });
    await client.negotiate();
    expect(kinds(await sendMessage(client, message))).toEqual(["accept"]);
  });
});
