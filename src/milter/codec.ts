// The server side of the codec: frames from the MTA become typed commands, typed replies
// become bytes. Pure: no I/O, no state.

import * as C from "./constants.ts";
import { encodeFrame, type Frame } from "./frame.ts";
import type { Command, ConnectFamily, Reply } from "./types.ts";
import { ProtocolError, cstrings, expectStrings, splitStrings, text, u32 } from "./wire-strings.ts";

export function decodeCommand(frame: Frame): Command {
  const p = frame.payload;
  switch (frame.code) {
    case C.SMFIC_OPTNEG:
      if (p.length < 12) throw new ProtocolError(`OPTNEG payload of ${p.length} bytes, need 12`);
      return { kind: "optneg", version: p.readUInt32BE(0), actions: p.readUInt32BE(4), protocol: p.readUInt32BE(8) };
    case C.SMFIC_MACRO:
      return decodeMacro(p);
    case C.SMFIC_CONNECT:
      return decodeConnect(p);
    case C.SMFIC_HELO:
      return { kind: "helo", name: text(expectStrings(p, 1, "HELO")[0]!) };
    case C.SMFIC_MAIL:
      return { kind: "mail", args: decodeArgv(p, "MAIL") };
    case C.SMFIC_RCPT:
      return { kind: "rcpt", args: decodeArgv(p, "RCPT") };
    case C.SMFIC_DATA:
      return { kind: "data" };
    case C.SMFIC_HEADER: {
      const [name, value] = expectStrings(p, 2, "HEADER");
      return { kind: "header", name: name!.toString("latin1"), value: value! };
    }
    case C.SMFIC_EOH:
      return { kind: "eoh" };
    case C.SMFIC_BODY:
      return { kind: "body", chunk: p };
    case C.SMFIC_BODYEOB:
      // Sendmail-era MTAs may carry the last body chunk here; Postfix sends it empty.
      return { kind: "eob", chunk: p };
    case C.SMFIC_ABORT:
      return { kind: "abort" };
    case C.SMFIC_QUIT:
      return { kind: "quit" };
    case C.SMFIC_QUIT_NC:
      return { kind: "quit_nc" };
    case C.SMFIC_UNKNOWN:
      return { kind: "unknown", line: text(expectStrings(p, 1, "UNKNOWN")[0]!) };
    default:
      // Guessing the reply semantics of an unknown command would desynchronise the stream.
      throw new ProtocolError(`unknown command byte 0x${frame.code.toString(16).padStart(2, "0")}`);
  }
}

function decodeArgv(p: Buffer, what: string): string[] {
  const args = splitStrings(p, what).map(text);
  if (args.length === 0) throw new ProtocolError(`${what} without an address`);
  return args;
}

function decodeMacro(p: Buffer): Command {
  if (p.length < 1) throw new ProtocolError("MACRO without a stage byte");
  const items = splitStrings(p.subarray(1), "MACRO").map(text);
  const macros = new Map<string, string>();
  // An odd count leaves the last name without a value: libmilter treats it as "".
  for (let i = 0; i < items.length; i += 2) macros.set(items[i]!, items[i + 1] ?? "");
  return { kind: "macro", stage: p[0]!, macros };
}

const FAMILIES: Record<string, ConnectFamily> = { "4": "inet", "6": "inet6", L: "unix", U: "unknown" };

function decodeConnect(p: Buffer): Command {
  const end = p.indexOf(0);
  if (end === -1 || end + 1 >= p.length) throw new ProtocolError("CONNECT: truncated");
  const hostname = text(p.subarray(0, end));
  const family = FAMILIES[String.fromCharCode(p[end + 1]!)];
  if (family === undefined) throw new ProtocolError(`CONNECT: unknown address family 0x${p[end + 1]!.toString(16)}`);
  if (family === "unknown") return { kind: "connect", hostname, family, port: 0, address: "" };
  const rest = p.subarray(end + 2);
  if (rest.length < 3) throw new ProtocolError("CONNECT: truncated address");
  const port = rest.readUInt16BE(0);
  let address = text(expectStrings(rest.subarray(2), 1, "CONNECT")[0]!);
  // Sendmail writes "IPv6:2001:db8::1"; Postfix writes the bare address.
  if (family === "inet6" && address.toLowerCase().startsWith("ipv6:")) address = address.slice(5);
  return { kind: "connect", hostname, family, port, address };
}

export function encodeReply(reply: Reply): Buffer {
  switch (reply.kind) {
    case "continue":
      return encodeFrame(C.SMFIR_CONTINUE);
    case "accept":
      return encodeFrame(C.SMFIR_ACCEPT);
    case "reject":
      return encodeFrame(C.SMFIR_REJECT);
    case "tempfail":
      return encodeFrame(C.SMFIR_TEMPFAIL);
    case "discard":
      return encodeFrame(C.SMFIR_DISCARD);
    case "skip":
      return encodeFrame(C.SMFIR_SKIP);
    case "progress":
      return encodeFrame(C.SMFIR_PROGRESS);
    case "replycode":
      return encodeFrame(C.SMFIR_REPLYCODE, cstrings(formatReplyCode(reply.code, reply.status, reply.text)));
    case "quarantine":
      return encodeFrame(C.SMFIR_QUARANTINE, cstrings(singleLine(reply.reason)));
    case "addheader":
      return encodeFrame(C.SMFIR_ADDHEADER, cstrings(headerName(reply.name), headerValue(reply.value)));
    case "insheader":
      return encodeFrame(
        C.SMFIR_INSHEADER,
        Buffer.concat([u32(reply.index), cstrings(headerName(reply.name), headerValue(reply.value))]),
      );
    case "chgheader":
      return encodeFrame(
        C.SMFIR_CHGHEADER,
        Buffer.concat([u32(reply.index), cstrings(headerName(reply.name), headerValue(reply.value))]),
      );
    case "addrcpt":
      return reply.args === undefined
        ? encodeFrame(C.SMFIR_ADDRCPT, cstrings(reply.rcpt))
        : encodeFrame(C.SMFIR_ADDRCPT_PAR, cstrings(reply.rcpt, reply.args));
    case "delrcpt":
      return encodeFrame(C.SMFIR_DELRCPT, cstrings(reply.rcpt));
    case "chgfrom":
      return encodeFrame(
        C.SMFIR_CHGFROM,
        reply.args === undefined ? cstrings(reply.sender) : cstrings(reply.sender, reply.args),
      );
    case "replbody":
      if (reply.chunk.length > C.MILTER_CHUNK_SIZE) throw new ProtocolError("REPLBODY chunk over 65535 bytes");
      return encodeFrame(C.SMFIR_REPLBODY, reply.chunk);
    case "optneg": {
      const parts = [u32(reply.version, reply.actions, reply.protocol)];
      for (const [stage, names] of reply.macros) parts.push(u32(stage), cstrings(names.join(" ")));
      return encodeFrame(C.SMFIR_OPTNEG, Buffer.concat(parts));
    }
  }
}

/** Encodes several replies as one buffer, so that one event's answer leaves in one write. */
export function encodeReplies(replies: readonly Reply[]): Buffer {
  return replies.length === 1 ? encodeReply(replies[0]!) : Buffer.concat(replies.map(encodeReply));
}

function headerName(name: string): string {
  if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) throw new ProtocolError(`invalid header name ${JSON.stringify(name)}`);
  return name;
}

/** Postfix wants LF-only folding in values we send; CRLF would be stored as damage. */
function headerValue(value: string | Buffer): Buffer {
  const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : value;
  if (!bytes.includes(0x0d)) return bytes;
  return Buffer.from(bytes.toString("latin1").replace(/\r\n/g, "\n").replace(/\r/g, ""), "latin1");
}

function singleLine(s: string): string {
  return s.replace(/[\r\n\0]+/g, " ");
}

/**
 * Builds an SMTP reply Postfix accepts (it validates them since 3.12): 4xx/5xx, enhanced
 * status with a matching class, `ddd-` continuation lines, `%` doubled, ASCII only.
 */
export function formatReplyCode(code: string, status: string | undefined, message: string): string {
  if (!/^[45][0-9][0-9]$/.test(code)) throw new ProtocolError(`reply code ${code} is not 4xx or 5xx`);
  if (status !== undefined && !new RegExp(`^${code[0]}\\.[0-9]{1,3}\\.[0-9]{1,3}$`).test(status)) {
    throw new ProtocolError(`enhanced status ${status} does not match reply code ${code}`);
  }
  const lines = message.split(/\r?\n/);
  return lines
    .map((line, i) => {
      const clean = line.replace(/[^\x20-\x7e]/g, "?").replace(/%/g, "%%");
      const sep = i === lines.length - 1 ? " " : "-";
      return status === undefined ? `${code}${sep}${clean}` : `${code}${sep}${status} ${clean}`;
    })
    .join("\r\n");
}
