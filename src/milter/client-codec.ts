// The MTA side of the codec: typed commands become bytes, reply frames become typed replies.
// The daemon never needs it; the test client, the benchmark and the round-trip tests do.

import * as C from "./constants.ts";
import { encodeFrame, type Frame } from "./frame.ts";
import type { Command, Reply } from "./types.ts";
import { ProtocolError, cstrings, expectStrings, splitStrings, text, u32 } from "./wire-strings.ts";

const FAMILY_BYTE = { inet: "4", inet6: "6", unix: "L", unknown: "U" } as const;

export function encodeCommand(cmd: Command): Buffer {
  switch (cmd.kind) {
    case "optneg":
      return encodeFrame(C.SMFIC_OPTNEG, u32(cmd.version, cmd.actions, cmd.protocol));
    case "macro": {
      const pairs = [...cmd.macros].flat();
      return encodeFrame(C.SMFIC_MACRO, Buffer.concat([Buffer.from([cmd.stage]), cstrings(...pairs)]));
    }
    case "connect": {
      const family = Buffer.from(FAMILY_BYTE[cmd.family], "latin1");
      if (cmd.family === "unknown") return encodeFrame(C.SMFIC_CONNECT, Buffer.concat([cstrings(cmd.hostname), family]));
      const port = Buffer.alloc(2);
      port.writeUInt16BE(cmd.port);
      return encodeFrame(C.SMFIC_CONNECT, Buffer.concat([cstrings(cmd.hostname), family, port, cstrings(cmd.address)]));
    }
    case "helo":
      return encodeFrame(C.SMFIC_HELO, cstrings(cmd.name));
    case "mail":
      return encodeFrame(C.SMFIC_MAIL, cstrings(...cmd.args));
    case "rcpt":
      return encodeFrame(C.SMFIC_RCPT, cstrings(...cmd.args));
    case "data":
      return encodeFrame(C.SMFIC_DATA);
    case "header":
      return encodeFrame(C.SMFIC_HEADER, cstrings(Buffer.from(cmd.name, "latin1"), cmd.value));
    case "eoh":
      return encodeFrame(C.SMFIC_EOH);
    case "body":
      return encodeFrame(C.SMFIC_BODY, cmd.chunk);
    case "eob":
      return encodeFrame(C.SMFIC_BODYEOB, cmd.chunk);
    case "abort":
      return encodeFrame(C.SMFIC_ABORT);
    case "quit":
      return encodeFrame(C.SMFIC_QUIT);
    case "quit_nc":
      return encodeFrame(C.SMFIC_QUIT_NC);
    case "unknown":
      return encodeFrame(C.SMFIC_UNKNOWN, cstrings(cmd.line));
  }
}

export function decodeReply(frame: Frame): Reply {
  const p = frame.payload;
  const noPayload = (reply: Reply): Reply => {
    // Postfix treats a decision reply with payload as a protocol error; so do we.
    if (p.length !== 0) throw new ProtocolError(`reply '${String.fromCharCode(frame.code)}' carries ${p.length} bytes`);
    return reply;
  };
  switch (frame.code) {
    case C.SMFIR_CONTINUE:
      return noPayload({ kind: "continue" });
    case C.SMFIR_ACCEPT:
      return noPayload({ kind: "accept" });
    case C.SMFIR_REJECT:
      return noPayload({ kind: "reject" });
    case C.SMFIR_TEMPFAIL:
      return noPayload({ kind: "tempfail" });
    case C.SMFIR_DISCARD:
      return noPayload({ kind: "discard" });
    case C.SMFIR_SKIP:
      return noPayload({ kind: "skip" });
    case C.SMFIR_PROGRESS:
      return noPayload({ kind: "progress" });
    case C.SMFIR_REPLYCODE: {
      const line = text(expectStrings(p, 1, "REPLYCODE")[0]!);
      const m = /^([45][0-9][0-9])[ -](?:([45]\.[0-9]{1,3}\.[0-9]{1,3}) )?/.exec(line);
      if (!m) throw new ProtocolError(`malformed REPLYCODE ${JSON.stringify(line)}`);
      const body = line
        .split("\r\n")
        .map((l) => l.slice(m[0].length).replace(/%%/g, "%"))
        .join("\n");
      return m[2] === undefined
        ? { kind: "replycode", code: m[1]!, text: body }
        : { kind: "replycode", code: m[1]!, status: m[2], text: body };
    }
    case C.SMFIR_QUARANTINE:
      return { kind: "quarantine", reason: text(expectStrings(p, 1, "QUARANTINE")[0]!) };
    case C.SMFIR_ADDHEADER: {
      const [name, value] = expectStrings(p, 2, "ADDHEADER");
      return { kind: "addheader", name: name!.toString("latin1"), value: value! };
    }
    case C.SMFIR_INSHEADER:
    case C.SMFIR_CHGHEADER: {
      if (p.length < 4) throw new ProtocolError("header edit without index");
      const [name, value] = expectStrings(p.subarray(4), 2, "header edit");
      const kind = frame.code === C.SMFIR_INSHEADER ? "insheader" : "chgheader";
      return { kind, index: p.readUInt32BE(0), name: name!.toString("latin1"), value: value! };
    }
    case C.SMFIR_ADDRCPT:
      return { kind: "addrcpt", rcpt: text(expectStrings(p, 1, "ADDRCPT")[0]!) };
    case C.SMFIR_ADDRCPT_PAR: {
      const [rcpt, args] = expectStrings(p, 2, "ADDRCPT_PAR").map(text);
      return { kind: "addrcpt", rcpt: rcpt!, args: args! };
    }
    case C.SMFIR_DELRCPT:
      return { kind: "delrcpt", rcpt: text(expectStrings(p, 1, "DELRCPT")[0]!) };
    case C.SMFIR_CHGFROM: {
      const [sender, args] = splitStrings(p, "CHGFROM").map(text);
      if (sender === undefined) throw new ProtocolError("CHGFROM without sender");
      return args === undefined ? { kind: "chgfrom", sender } : { kind: "chgfrom", sender, args };
    }
    case C.SMFIR_REPLBODY:
      return { kind: "replbody", chunk: p };
    case C.SMFIR_OPTNEG: {
      if (p.length < 12) throw new ProtocolError("OPTNEG reply shorter than 12 bytes");
      const macros = new Map<number, string[]>();
      let rest = p.subarray(12);
      while (rest.length > 0) {
        if (rest.length < 5) throw new ProtocolError("truncated macro list in OPTNEG reply");
        const end = rest.indexOf(0, 4);
        if (end === -1) throw new ProtocolError("macro list without NUL in OPTNEG reply");
        const names = text(rest.subarray(4, end));
        macros.set(rest.readUInt32BE(0), names === "" ? [] : names.split(" "));
        rest = rest.subarray(end + 1);
      }
      return { kind: "optneg", version: p.readUInt32BE(0), actions: p.readUInt32BE(4), protocol: p.readUInt32BE(8), macros };
    }
    default:
      throw new ProtocolError(`unknown reply byte 0x${frame.code.toString(16)}`);
  }
}
