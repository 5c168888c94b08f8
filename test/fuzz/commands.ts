// Generators of milter commands (MTA → milter) and of damaged packets, for the codec and session
// fuzz tests.

import { encodeCommand } from "../../src/milter/client-codec.ts";
import * as C from "../../src/milter/constants.ts";
import type { Command, ConnectFamily } from "../../src/milter/types.ts";
import type { Rng } from "./prng.ts";

/** Text pieces that survive UTF-8 (no NUL, no lone surrogates) and are awkward anyway. */
const TEXT = ["a", "Z", "0", " ", "\t", "\r", "\n", "<", ">", "@", ":", ";", ",", '"', "\\", "%", "{", "}", "é", "ü", "😀", "\u2028", "\x7f", "\x01", "xn--bcher-kva", "."];

export function text(rng: Rng, max = 40): string {
  return rng.string(TEXT, rng.length(max));
}

/** Bytes without NUL (what a milter string field can carry). */
export function bytesNoNul(rng: Rng, max: number): Buffer {
  const b = rng.bytes(rng.length(max));
  for (let i = 0; i < b.length; i++) if (b[i] === 0) b[i] = 0x20;
  return b;
}

const STAGES = "CHMRTLNBEUZ\x00".split("").map((c) => c.charCodeAt(0));
const FAMILIES: readonly ConnectFamily[] = ["inet", "inet6", "unix", "unknown"];

export type Kind = Command["kind"];
export const KINDS: readonly Kind[] = ["optneg", "macro", "connect", "helo", "mail", "rcpt", "data", "header", "eoh", "body", "eob", "abort", "quit", "quit_nc", "unknown"];

/** A valid command of the given kind with random fields; its encoding decodes to itself. */
export function command(rng: Rng, kind: Kind = rng.pick(KINDS), opts: { maxBytes?: number } = {}): Command {
  const maxBytes = opts.maxBytes ?? 2048;
  switch (kind) {
    case "optneg":
      return { kind, version: rng.pick([0, 1, 2, 6, 7, rng.u32()]), actions: rng.pick([0, 0x1ff, rng.u32()]), protocol: rng.pick([0, 0x1fffff, rng.u32()]) };
    case "macro": {
      const macros = new Map<string, string>();
      for (let i = rng.int(6); i > 0; i--) macros.set(rng.pick(["i", "{i}", "j", "_", "{daemon_name}", "{auth_authen}", "{mail_addr}", text(rng, 12)]), text(rng));
      return { kind, stage: rng.pick(STAGES), macros };
    }
    case "connect": {
      const family = rng.pick(FAMILIES);
      const hostname = rng.pick(["mail.example.org", "[192.0.2.1]", "unknown", "localhost", text(rng)]);
      if (family === "unknown") return { kind, hostname, family, port: 0, address: "" };
      let address = rng.pick(["192.0.2.1", "127.0.0.1", "2001:db8::1", "/run/x.sock", "", text(rng)]);
      // Sendmail's "IPv6:" prefix is stripped by the decoder: not something to round-trip.
      if (family === "inet6" && address.toLowerCase().startsWith("ipv6:")) address = address.slice(5);
      return { kind, hostname, family, port: rng.int(65536), address };
    }
    case "helo":
      return { kind, name: rng.pick(["mail.example.org", "[192.0.2.1]", "", text(rng)]) };
    case "mail":
    case "rcpt": {
      const args = [rng.pick(["<alice@example.org>", "<>", "", `<${text(rng)}@example.org>`, text(rng)])];
      for (let i = rng.int(3); i > 0; i--) args.push(rng.pick(["SIZE=1000", "BODY=8BITMIME", "SMTPUTF8", text(rng, 12)]));
      return { kind, args };
    }
    case "header": {
      const name = rng.pick(["From", "To", "Subject", "DKIM-Signature", "Authentication-Results", "Date", "X-\xe9", String.fromCharCode(...bytesNoNul(rng, 20))]);
      return { kind, name, value: bytesNoNul(rng, maxBytes) };
    }
    case "body":
      return { kind, chunk: rng.bytes(rng.length(maxBytes)) };
    case "eob":
      return { kind, chunk: rng.bool(0.8) ? Buffer.alloc(0) : rng.bytes(rng.length(64)) };
    case "unknown":
      return { kind, line: text(rng) };
    case "data":
    case "eoh":
    case "abort":
    case "quit":
    case "quit_nc":
      return { kind };
  }
}

/** Damages one encoded packet: bit flips, truncation, extension, NULs, another code, a wrong length. */
export function mutate(rng: Rng, packet: Buffer): Buffer {
  const p = Buffer.from(packet);
  const withLength = (b: Buffer) => {
    b.writeUInt32BE(b.length - 4, 0);
    return b;
  };
  switch (rng.int(8)) {
    case 0: {
      for (let i = rng.range(1, 4); i > 0 && p.length > 4; i--) p[4 + rng.int(p.length - 4)]! ^= 1 << rng.int(8);
      return p;
    }
    case 1:
      return withLength(Buffer.from(p.subarray(0, 5 + rng.int(Math.max(1, p.length - 5)))));
    case 2:
      return withLength(Buffer.concat([p, rng.bytes(rng.range(1, 16))]));
    case 3: {
      if (p.length > 5) p[5 + rng.int(p.length - 5)] = 0;
      return p;
    }
    case 4:
      p[4] = rng.bool(0.5) ? rng.pick([...KINDS.map((k) => encodeCommand(command(rng, k))[4]!), 0x5a, 0x00, 0xff]) : rng.u32() & 0xff;
      return p;
    case 5: {
      // A length that is off by a little: the stream desynchronises.
      const delta = rng.pick([-3, -2, -1, 1, 2, 3]);
      p.writeUInt32BE(Math.min(0xffffffff, Math.max(0, p.readUInt32BE(0) + delta)), 0);
      return p;
    }
    case 6:
      p.writeUInt32BE(rng.pick([0, 1, 0x7fffffff, 0xffffffff, 1024 * 1024 + 1]), 0);
      return p;
    default: {
      // Cut a payload NUL away or add one, changing the number of strings.
      const nul = p.indexOf(0, 5);
      if (nul !== -1 && rng.bool(0.5)) return withLength(Buffer.concat([p.subarray(0, nul), p.subarray(nul + 1)]));
      return withLength(Buffer.concat([p, Buffer.from([0])]));
    }
  }
}

/** Splits bytes at random points (sometimes into single bytes). */
export function split(rng: Rng, bytes: Buffer): Buffer[] {
  if (bytes.length === 0) return [bytes];
  const pieces: Buffer[] = [];
  let at = 0;
  const style = rng.int(4);
  while (at < bytes.length) {
    const n = style === 0 ? 1 : style === 1 ? rng.range(1, 7) : style === 2 ? rng.range(1, 300) : rng.range(1, bytes.length);
    pieces.push(bytes.subarray(at, at + n));
    at += n;
  }
  return pieces;
}

export { C };
