import { describe, expect, it } from "vitest";
import { decodeReply, encodeCommand } from "../../src/milter/client-codec.ts";
import { decodeCommand, encodeReply, formatReplyCode } from "../../src/milter/codec.ts";
import { FrameDecoder, encodeFrame } from "../../src/milter/frame.ts";
import type { Command, Reply } from "../../src/milter/types.ts";
import { ProtocolError } from "../../src/milter/wire-strings.ts";

function one(bytes: Buffer) {
  const frames = new FrameDecoder().push(bytes);
  expect(frames).toHaveLength(1);
  return frames[0]!;
}

const commands: Command[] = [
  { kind: "optneg", version: 6, actions: 0x1ff, protocol: 0x1fffff },
  { kind: "macro", stage: 0x43, macros: new Map([["j", "mx.example.net"], ["{daemon_name}", "smtpd"]]) },
  { kind: "macro", stage: 0x45, macros: new Map() },
  { kind: "connect", hostname: "mail.example.org", family: "inet", port: 25025, address: "192.0.2.1" },
  { kind: "connect", hostname: "[2001:db8::1]", family: "inet6", port: 0, address: "2001:db8::1" },
  { kind: "connect", hostname: "localhost", family: "unix", port: 0, address: "/run/sock" },
  { kind: "connect", hostname: "unknown", family: "unknown", port: 0, address: "" },
  { kind: "helo", name: "mail.example.org" },
  { kind: "mail", args: ["<a@example.org>", "BODY=8BITMIME", "SIZE=1000"] },
  { kind: "mail", args: [""] },
  { kind: "rcpt", args: ["<b@example.net>", "NOTIFY=NEVER"] },
  { kind: "data" },
  { kind: "header", name: "Subject", value: Buffer.from(" caf\xe9\n\tfolded", "latin1") },
  { kind: "header", name: "X-Empty", value: Buffer.alloc(0) },
  { kind: "eoh" },
  { kind: "body", chunk: Buffer.from("line\r\n") },
  { kind: "eob", chunk: Buffer.alloc(0) },
  { kind: "eob", chunk: Buffer.from("last chunk\r\n") },
  { kind: "abort" },
  { kind: "quit" },
  { kind: "quit_nc" },
  { kind: "unknown", line: "XFOO bar" },
];

const replies: Reply[] = [
  { kind: "continue" },
  { kind: "accept" },
  { kind: "reject" },
  { kind: "tempfail" },
  { kind: "discard" },
  { kind: "skip" },
  { kind: "progress" },
  { kind: "replycode", code: "550", status: "5.7.1", text: "rejected" },
  { kind: "replycode", code: "451", text: "try later" },
  { kind: "quarantine", reason: "DMARC policy" },
  { kind: "addheader", name: "X-A", value: Buffer.from(" v") },
  { kind: "insheader", index: 1, name: "Authentication-Results", value: Buffer.from(" mx; dkim=pass") },
  { kind: "chgheader", index: 2, name: "Authentication-Results", value: Buffer.alloc(0) },
  { kind: "addrcpt", rcpt: "<c@example.org>" },
  { kind: "addrcpt", rcpt: "<c@example.org>", args: "NOTIFY=NEVER" },
  { kind: "delrcpt", rcpt: "<c@example.org>" },
  { kind: "chgfrom", sender: "<d@example.org>" },
  { kind: "chgfrom", sender: "<d@example.org>", args: "RET=HDRS" },
  { kind: "replbody", chunk: Buffer.from("new body\r\n") },
  { kind: "optneg", version: 6, actions: 0x111, protocol: 0x1ff380, macros: new Map([[0, ["j", "{daemon_name}"]], [5, []]]) },
];

describe("commands", () => {
  it.each(commands.map((c) => [c.kind, c] as const))("%s survives encode → decode", (_, cmd) => {
    expect(decodeCommand(one(encodeCommand(cmd)))).toEqual(cmd);
  });

  it("strips Sendmail's IPv6: prefix from a CONNECT address", () => {
    const payload = Buffer.concat([Buffer.from("h\x006"), Buffer.from([0, 25]), Buffer.from("IPv6:2001:db8::2\0")]);
    const cmd = decodeCommand({ code: 0x43, payload });
    expect(cmd).toMatchObject({ family: "inet6", address: "2001:db8::2", port: 25 });
  });

  it("gives the last macro name an empty value when the count is odd", () => {
    const cmd = decodeCommand({ code: 0x44, payload: Buffer.from("Mi\0ABC\0{auth_authen}\0") });
    expect(cmd).toEqual({ kind: "macro", stage: 0x4d, macros: new Map([["i", "ABC"], ["{auth_authen}", ""]]) });
  });

  it("accepts a MACRO packet with only the stage byte", () => {
    expect(decodeCommand({ code: 0x44, payload: Buffer.from("C") })).toEqual({ kind: "macro", stage: 0x43, macros: new Map() });
  });

  it.each([
    ["HEADER without its second NUL", 0x4c, "Subject\0value"],
    ["HEADER with a third string", 0x4c, "Subject\0v\0extra\0"],
    ["HELO without NUL", 0x48, "mail.example.org"],
    ["OPTNEG shorter than 12 bytes", 0x4f, "\0\0\0\x06"],
    ["CONNECT with an unknown family", 0x43, "h\0X"],
    ["CONNECT without its address", 0x43, "h\x004\0"],
    ["MAIL with no argument", 0x4d, ""],
    ["an unknown command byte", 0x5a, ""],
  ])("rejects %s", (_, code, payload) => {
    expect(() => decodeCommand({ code, payload: Buffer.from(payload, "latin1") })).toThrow(ProtocolError);
  });

  it("keeps header bytes exactly, 8-bit and bare CR included", () => {
    const value = Buffer.from([0x20, 0xc3, 0xa9, 0xff, 0x0d, 0x41, 0x0a, 0x09, 0x42]);
    const cmd = decodeCommand(one(encodeCommand({ kind: "header", name: "dKiM-sIgNaTuRe", value })));
    expect(cmd).toEqual({ kind: "header", name: "dKiM-sIgNaTuRe", value });
  });

  it("takes a header of more than 64 KiB", () => {
    const value = Buffer.alloc(102_400, 0x61);
    expect(decodeCommand(one(encodeCommand({ kind: "header", name: "References", value })))).toMatchObject({ value });
  });
});

describe("replies", () => {
  it.each(replies.map((r) => [r.kind, r] as const))("%s survives encode → decode", (_, reply) => {
    expect(decodeReply(one(encodeReply(reply)))).toEqual(reply);
  });

  it("sends decisions with no payload, as Postfix demands", () => {
    for (const kind of ["continue", "accept", "reject", "tempfail", "discard", "skip", "progress"] as const) {
      expect(encodeReply({ kind }).length).toBe(5);
    }
  });

  it("turns CRLF folding into LF folding in header values", () => {
    const bytes = encodeReply({ kind: "addheader", name: "X-A", value: "a\r\n\tb" });
    expect(bytes.subarray(5).toString()).toBe("X-A\0a\n\tb\0");
  });

  it("refuses a header value with NUL", () => {
    expect(() => encodeReply({ kind: "addheader", name: "X-A", value: "a\0b" })).toThrow(/NUL/);
  });

  it("refuses a header name with a colon or space", () => {
    expect(() => encodeReply({ kind: "addheader", name: "X A", value: "v" })).toThrow(/header name/);
    expect(() => encodeReply({ kind: "addheader", name: "X:A", value: "v" })).toThrow(/header name/);
  });

  it("refuses a REPLBODY chunk over 65535 bytes", () => {
    expect(() => encodeReply({ kind: "replbody", chunk: Buffer.alloc(65_536) })).toThrow(/65535/);
  });
});

describe("formatReplyCode", () => {
  it("doubles % so Postfix does not eat it", () => {
    expect(formatReplyCode("550", "5.7.1", "100% spam")).toBe("550 5.7.1 100%% spam");
  });

  it("writes multi-line replies with ddd- continuation lines and no trailing CRLF", () => {
    expect(formatReplyCode("550", "5.7.1", "first\nsecond")).toBe("550-5.7.1 first\r\n550 5.7.1 second");
  });

  it("keeps the reply ASCII", () => {
    expect(formatReplyCode("451", "4.7.1", "café\u0000")).toBe("451 4.7.1 caf??");
  });

  it("refuses codes that are not 4xx/5xx and statuses of another class", () => {
    expect(() => formatReplyCode("250", undefined, "ok")).toThrow(/4xx or 5xx/);
    expect(() => formatReplyCode("550", "4.7.1", "x")).toThrow(/does not match/);
  });
});

describe("encodeFrame", () => {
  it("counts the command byte in the length", () => {
    expect([...encodeFrame(0x63)]).toEqual([0, 0, 0, 1, 0x63]);
  });
});
