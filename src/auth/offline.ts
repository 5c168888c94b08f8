// Runs a message from a file through the same handler the daemon uses, driving it with the
// events Postfix would send. For `authmilter verify` and for tests without a socket.

import * as C from "../milter/constants.ts";
import type { MilterHandler, MessageOutcome } from "../milter/handler.ts";
import { MacroStore } from "../milter/macros.ts";
import type { HeaderField } from "./header-field.ts";

export interface Envelope {
  readonly clientAddress: string;
  readonly clientName?: string;
  readonly clientPort?: number;
  /** Postfix's {daemon_name} for the service the mail came in on. */
  readonly daemonName?: string;
  readonly helo: string;
  /** "" for the null sender. */
  readonly sender: string;
  readonly recipients?: readonly string[];
  readonly authUser?: string;
  readonly queueId?: string;
}

export interface ParsedMessage {
  readonly headers: readonly HeaderField[];
  /** CRLF lines, as Postfix hands the body to a milter. */
  readonly body: Buffer;
}

/** Splits a message file as Postfix would present it: header values after the colon, LF folding. */
export function parseMessage(raw: Buffer): ParsedMessage {
  const text = raw.toString("latin1");
  // A message may have no header fields at all: then it starts with the empty separator line.
  const end = /^\r?\n/.exec(text) ?? /\r?\n\r?\n/.exec(text);
  const head = end ? text.slice(0, end.index) : text;
  const bodyText = end ? text.slice(end.index + end[0].length) : "";
  const headers: Array<{ name: string; value: string }> = [];
  for (const line of head.split(/\r?\n/)) {
    if ((line.startsWith(" ") || line.startsWith("\t")) && headers.length > 0) {
      headers[headers.length - 1]!.value += `\n${line}`;
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue; // not a header field (an mbox "From " line, junk): Postfix would not pass it as one
    headers.push({ name: line.slice(0, colon).trimEnd(), value: line.slice(colon + 1) });
  }
  let body = bodyText.replace(/\r?\n/g, "\r\n");
  if (body !== "" && !body.endsWith("\r\n")) body += "\r\n";
  return {
    headers: headers.map((h) => ({ name: h.name, value: Buffer.from(h.value, "latin1") })),
    body: Buffer.from(body, "latin1"),
  };
}

/** Feeds one message to a handler as a Postfix session would and returns its outcome. */
export async function runMessage(handler: MilterHandler, envelope: Envelope, parsed: ParsedMessage): Promise<MessageOutcome> {
  const macros = new MacroStore();
  const stage = (c: string) => c.charCodeAt(0);
  const qid = envelope.queueId ?? "OFFLINE";
  const connection = handler.openConnection({
    sessionId: "offline",
    agreed: { version: 6, actions: C.SMFIF_ADDHDRS | C.SMFIF_CHGHDRS | C.SMFIF_QUARANTINE, protocol: C.SMFIP_HDR_LEADSPC },
    macros,
  });
  const name = envelope.clientName ?? `[${envelope.clientAddress}]`;
  const connectMacros = new Map([["{client_addr}", envelope.clientAddress], ["{client_name}", name]]);
  if (envelope.daemonName) connectMacros.set("{daemon_name}", envelope.daemonName);
  macros.set(stage("C"), connectMacros);
  const family = envelope.clientAddress.includes(":") ? "inet6" : "inet";
  await connection.connect?.({ hostname: name, family, address: envelope.clientAddress, port: envelope.clientPort ?? 25025 });
  await connection.helo?.(envelope.helo);
  const mail = new Map([["i", qid], ["{mail_addr}", envelope.sender]]);
  if (envelope.authUser) mail.set("{auth_authen}", envelope.authUser);
  macros.set(stage("M"), mail);
  const message = await connection.startMessage([`<${envelope.sender}>`]);
  for (const rcpt of envelope.recipients ?? []) await message.recipient?.([`<${rcpt}>`]);
  for (const h of parsed.headers) await message.header?.(h.name, h.value);
  await message.endOfHeaders?.();
  for (let off = 0; off < parsed.body.length; off += C.MILTER_CHUNK_SIZE) {
    await message.body?.(parsed.body.subarray(off, off + C.MILTER_CHUNK_SIZE));
  }
  macros.set(stage("E"), new Map([["i", qid]]));
  const outcome = await message.endOfMessage();
  connection.close?.();
  return outcome;
}
