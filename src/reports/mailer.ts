// Handing report messages to the MTA, and the small MIME toolkit they are built with.
//
// Two ways out: SMTP to a relay (our own client on node:net: EHLO, MAIL, RCPT, DATA, QUIT; no
// STARTTLS, it is meant for the local Postfix on loopback), or the local sendmail(1). Either
// way a message goes to all its recipients or to none: a refused recipient fails the send.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { hostname } from "node:os";
import type { GeneratedReport, ReportIdentity } from "./aggregate.ts";

export interface OutgoingMail {
  /** Envelope sender (MAIL FROM), without angle brackets; "" for the null sender. */
  readonly from: string;
  /** Envelope recipients; at least one. */
  readonly to: readonly string[];
  /** The whole RFC 5322 message, CRLF line ends. */
  readonly data: Buffer;
}

export interface Mailer {
  /** For log lines: "smtp://127.0.0.1:25", "sendmail /usr/sbin/sendmail". */
  readonly description: string;
  /** Resolves once the MTA took responsibility for the message (all recipients). */
  send(mail: OutgoingMail): Promise<void>;
}

export class MailerError extends Error {
  override readonly name = "MailerError";
  /** True when sending the same message again cannot help (a 5xx reply, a refused recipient). */
  readonly permanent: boolean;
  /** The server's reply that ended the attempt, when there was one. */
  readonly reply: string | undefined;
  constructor(message: string, options: { permanent: boolean; reply?: string; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.permanent = options.permanent;
    this.reply = options.reply;
  }
}

// ---------------------------------------------------------------------------------------------
// Addresses

const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const DOMAIN = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * A plain ASCII addr-spec (dot-atom local part, host name domain): the only kind we put into
 * RCPT TO, MAIL FROM, a header or a sendmail argument. Everything else (quoted local parts,
 * address literals, spaces, CR/LF) is refused rather than escaped.
 */
export function isPlainAddress(address: string): boolean {
  const at = address.lastIndexOf("@");
  if (at <= 0 || address.length > 254) return false;
  const local = address.slice(0, at);
  return local.length <= 64 && LOCAL_PART.test(local) && DOMAIN.test(address.slice(at + 1));
}

export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf("@") + 1).toLowerCase();
}

// ---------------------------------------------------------------------------------------------
// MIME toolkit

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** RFC 5322 date-time in UTC: "Wed, 01 May 2024 10:00:00 +0000". */
export function formatDate(date: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return (
    `${DAYS[date.getUTCDay()]}, ${two(date.getUTCDate())} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()} ` +
    `${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} +0000`
  );
}

export function newMessageId(domain: string): string {
  return `<${Date.now().toString(36)}.${randomBytes(9).toString("hex")}@${DOMAIN.test(domain) ? domain : "localhost"}>`;
}

/** A boundary that can occur neither in base64 (no "_") nor in quoted-printable ("=_" is no escape). */
export function newBoundary(): string {
  return `=_authmilter_${randomBytes(12).toString("hex")}`;
}

/** Text that comes from mail or DNS, made safe for a header: printable ASCII only, no CR/LF. */
export function headerSafe(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "?");
}

/**
 * `Name: value` folded at spaces so lines stay within 78 characters where the words allow,
 * CRLF between lines, no final CRLF. The value must already be header-safe.
 */
export function foldHeader(name: string, value: string): string {
  const words = value.split(" ");
  const lines: string[] = [];
  let line = `${name}:`;
  for (const word of words) {
    if (line.length + 1 + word.length > 78 && line.trim() !== `${name}:` && word !== "") {
      lines.push(line);
      line = ` ${word}`;
    } else {
      line = `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines.join("\r\n");
}

/** Base64 in lines of 76 characters, each ending in CRLF. */
export function base64Lines(data: Buffer): string {
  const b64 = data.toString("base64");
  let out = "";
  for (let i = 0; i < b64.length; i += 76) out += `${b64.slice(i, i + 76)}\r\n`;
  return out;
}

/**
 * Quoted-printable (RFC 2045 §6.7) of text whose lines end in LF or CRLF: line breaks stay
 * hard breaks, everything else but printable ASCII is escaped, lines are soft-broken at 76.
 */
export function quotedPrintable(data: Buffer): string {
  const lines = data.toString("latin1").split(/\r?\n/);
  const out: string[] = [];
  for (const line of lines) {
    let encoded = "";
    let current = "";
    for (let i = 0; i < line.length; i++) {
      const code = line.charCodeAt(i);
      const last = i === line.length - 1;
      let piece: string;
      if ((code >= 33 && code <= 126 && code !== 61) || ((code === 32 || code === 9) && !last)) piece = line[i]!;
      else piece = `=${code.toString(16).toUpperCase().padStart(2, "0")}`;
      if (current.length + piece.length > 75) {
        encoded += `${current}=\r\n`;
        current = "";
      }
      current += piece;
    }
    out.push(encoded + current);
  }
  return out.join("\r\n");
}

/** True when the bytes can go as they are in a 7bit part: ASCII, no NUL, lines within 998. */
export function is7bit(data: Buffer): boolean {
  let lineLength = 0;
  for (const byte of data) {
    if (byte === 0x0a) {
      lineLength = 0;
      continue;
    }
    if (byte === 0 || byte > 0x7e || (byte < 0x20 && byte !== 0x09 && byte !== 0x0d)) return false;
    if (++lineLength > 998) return false;
  }
  return true;
}

/** Text as CRLF lines, for a 7bit part or a header block. */
export function crlf(text: string): string {
  return text.replace(/\r?\n/g, "\r\n");
}

export interface MimePart {
  /** Header lines of the part, without CRLF. */
  readonly headers: readonly string[];
  /** The encoded body; CRLF line ends. */
  readonly body: string;
}

/** A text/plain part: 7bit when it is ASCII, quoted-printable UTF-8 otherwise. */
export function textPart(text: string): MimePart {
  const bytes = Buffer.from(crlf(text), "utf8");
  const plain = is7bit(bytes);
  return {
    headers: [
      `Content-Type: text/plain; charset=${plain ? "us-ascii" : "utf-8"}`,
      `Content-Transfer-Encoding: ${plain ? "7bit" : "quoted-printable"}`,
    ],
    body: plain ? bytes.toString("latin1") : quotedPrintable(bytes),
  };
}

/** The body of a multipart entity: the parts between boundary lines, and the closing one. */
export function multipartBody(boundary: string, parts: readonly MimePart[]): string {
  let out = "This is a multi-part message in MIME format.\r\n";
  for (const part of parts) {
    const body = part.body.endsWith("\r\n") || part.body === "" ? part.body : `${part.body}\r\n`;
    out += `\r\n--${boundary}\r\n${part.headers.join("\r\n")}\r\n\r\n${body}`;
  }
  return `${out}\r\n--${boundary}--\r\n`;
}

/** Header lines (each possibly folded) and a body into one message. */
export function assembleMessage(headers: readonly string[], body: string): Buffer {
  return Buffer.from(`${headers.join("\r\n")}\r\n\r\n${body}`, "latin1");
}

// ---------------------------------------------------------------------------------------------
// Aggregate report messages (RFC 7489 §7.2.1.1)

export interface AggregateMailOptions {
  /** From: and the envelope sender. */
  readonly from: string;
  /** To: one rua address. */
  readonly to: string;
  readonly date?: Date;
  readonly messageId?: string;
}

/** "Report Domain: example.com Submitter: receiver.example Report-ID: <...>" */
export function aggregateSubject(report: GeneratedReport, identity: ReportIdentity): string {
  const domain = headerSafe(report.report.policyDomain);
  return `Report Domain: ${domain} Submitter: ${headerSafe(identity.receiver)} Report-ID: <${headerSafe(report.report.reportId)}>`;
}

function isoSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
}

/**
 * One aggregate report as a message to one rua address: multipart/mixed with a short text
 * part and the gzipped XML as an application/gzip attachment named as the report file.
 */
export function aggregateReportMail(report: GeneratedReport, identity: ReportIdentity, options: AggregateMailOptions): Buffer {
  const r = report.report;
  const boundary = newBoundary();
  const text =
    `This is a DMARC aggregate report (RFC 7489) for ${r.policyDomain},\n` +
    `from ${identity.orgName} (${identity.receiver}, ${identity.email}),\n` +
    `covering ${isoSeconds(r.begin)} to ${isoSeconds(r.end)}: ${r.messages} message(s) in ${r.records.length} record(s).\n` +
    `The report is attached as ${report.filename}.\n`;
  const attachment: MimePart = {
    headers: [
      `Content-Type: application/gzip; name="${report.filename}"`,
      `Content-Disposition: attachment; filename="${report.filename}"`,
      "Content-Transfer-Encoding: base64",
    ],
    body: base64Lines(report.data),
  };
  const headers = [
    `From: ${options.from}`,
    `To: ${options.to}`,
    `Date: ${formatDate(options.date ?? new Date())}`,
    foldHeader("Subject", aggregateSubject(report, identity)),
    `Message-ID: ${options.messageId ?? newMessageId(domainOf(options.from))}`,
    "MIME-Version: 1.0",
    "Auto-Submitted: auto-generated",
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
  ];
  return assembleMessage(headers, multipartBody(boundary, [textPart(text), attachment]));
}

// ---------------------------------------------------------------------------------------------
// SMTP

export interface SmtpMailerOptions {
  readonly host: string;
  readonly port: number;
  /** The EHLO name; default this host's name. */
  readonly helo?: string;
  /** Longest wait for the connection and for each reply; default 120 s. */
  readonly timeoutMs?: number;
}

interface Reply {
  readonly code: number;
  /** All lines, joined with " / " for messages. */
  readonly text: string;
  readonly lines: readonly string[];
}

const MAX_REPLY_BYTES = 64 * 1024;

/** Reads SMTP replies (multi-line ones whole) off a socket, one at a time. */
class ReplyReader {
  #pending = "";
  #lines: string[] = [];
  readonly #replies: Reply[] = [];
  #waiter: { resolve: (r: Reply) => void; reject: (e: Error) => void } | undefined;
  #error: Error | undefined;

  push(chunk: Buffer): void {
    this.#pending += chunk.toString("latin1");
    for (;;) {
      const end = this.#pending.indexOf("\n");
      if (end < 0) break;
      const line = this.#pending.slice(0, end).replace(/\r$/, "");
      this.#pending = this.#pending.slice(end + 1);
      const m = /^([2-5][0-9]{2})([ -]|$)(.*)$/.exec(line);
      if (m === null) {
        this.fail(new MailerError(`the server sent something that is not an SMTP reply: ${JSON.stringify(line.slice(0, 200))}`, { permanent: false }));
        return;
      }
      this.#lines.push(line);
      if (m[2] !== "-") {
        const reply = { code: Number(m[1]), lines: this.#lines, text: this.#lines.join(" / ") };
        this.#lines = [];
        this.#deliver(reply);
      }
    }
    if (this.#pending.length + this.#lines.join("").length > MAX_REPLY_BYTES) {
      this.fail(new MailerError("the server's reply is too long", { permanent: false }));
    }
  }

  fail(error: Error): void {
    this.#error ??= error;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(this.#error);
  }

  #deliver(reply: Reply): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) waiter.resolve(reply);
    else this.#replies.push(reply);
  }

  next(): Promise<Reply> {
    const queued = this.#replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }
}

function transient(message: string, cause?: unknown): MailerError {
  return new MailerError(message, { permanent: false, cause });
}

function refused(stage: string, reply: Reply): MailerError {
  return new MailerError(`${stage}: ${reply.text}`, { permanent: reply.code >= 500, reply: reply.text });
}

/** The payload after DATA: CRLF line ends, dot-stuffed (RFC 5321 §4.5.2), ending in CRLF.CRLF. */
export function dataPayload(message: Buffer): Buffer {
  let text = message.toString("latin1").replace(/\r?\n/g, "\r\n");
  if (!text.endsWith("\r\n")) text += "\r\n";
  text = `\r\n${text}`.replace(/\r\n\./g, "\r\n..").slice(2);
  return Buffer.from(`${text}.\r\n`, "latin1");
}

class SmtpSession {
  readonly #socket: Socket;
  readonly #reader = new ReplyReader();
  readonly #timeoutMs: number;

  private constructor(socket: Socket, timeoutMs: number) {
    this.#socket = socket;
    this.#timeoutMs = timeoutMs;
    socket.on("data", (chunk: Buffer) => this.#reader.push(chunk));
    socket.on("error", (err) => this.#reader.fail(transient(`connection failed: ${err.message}`, err)));
    socket.on("close", () => this.#reader.fail(transient("the server closed the connection")));
  }

  static open(host: string, port: number, timeoutMs: number): Promise<SmtpSession> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(transient(`no connection to ${host}:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("error", (err) => {
        clearTimeout(timer);
        reject(transient(`cannot connect to ${host}:${port}: ${err.message}`, err));
      });
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        resolve(new SmtpSession(socket, timeoutMs));
      });
    });
  }

  async reply(stage: string): Promise<Reply> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = transient(`${stage}: no reply within ${this.#timeoutMs} ms`);
        this.#reader.fail(err);
        this.#socket.destroy();
        reject(err);
      }, this.#timeoutMs);
    });
    try {
      return await Promise.race([this.#reader.next(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async command(line: string, stage: string): Promise<Reply> {
    this.#socket.write(`${line}\r\n`, "latin1");
    return this.reply(stage);
  }

  write(data: Buffer): void {
    this.#socket.write(data);
  }

  /** QUIT without waiting long for the answer; the socket is gone afterwards either way. */
  async quit(): Promise<void> {
    if (this.#socket.destroyed) return;
    try {
      this.#socket.write("QUIT\r\n");
      await Promise.race([this.#reader.next(), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    } catch {
      // the server hung up first: fine
    } finally {
      this.#socket.destroy();
    }
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

function checkEnvelope(mail: OutgoingMail): void {
  if (mail.to.length === 0) throw new MailerError("no recipients", { permanent: true });
  for (const address of [...(mail.from === "" ? [] : [mail.from]), ...mail.to]) {
    if (!isPlainAddress(address)) throw new MailerError(`not a plain address: ${JSON.stringify(address)}`, { permanent: true });
  }
}

/** A relay that takes mail over plain SMTP, e.g. the local Postfix on 127.0.0.1:25. */
export function smtpMailer(options: SmtpMailerOptions): Mailer {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const helo = options.helo ?? hostname();
  const where = options.host.includes(":") ? `[${options.host}]:${options.port}` : `${options.host}:${options.port}`;
  return {
    description: `smtp://${where}`,
    async send(mail: OutgoingMail): Promise<void> {
      checkEnvelope(mail);
      const session = await SmtpSession.open(options.host, options.port, timeoutMs);
      try {
        const greeting = await session.reply("greeting");
        if (greeting.code !== 220) throw refused("greeting", greeting);
        let hello = await session.command(`EHLO ${helo}`, "EHLO");
        const extensions = new Set<string>();
        let maxSize = 0;
        if (hello.code === 250) {
          for (const line of hello.lines.slice(1)) {
            const keyword = line.slice(4).trim().toUpperCase();
            extensions.add(keyword.split(/\s+/)[0] ?? "");
            const size = /^SIZE\s+([0-9]+)$/.exec(keyword);
            if (size) maxSize = Number(size[1]);
          }
        } else {
          hello = await session.command(`HELO ${helo}`, "HELO");
          if (hello.code !== 250) throw refused("HELO", hello);
        }
        const payload = dataPayload(mail.data);
        if (maxSize > 0 && mail.data.length > maxSize) {
          throw new MailerError(`the message (${mail.data.length} bytes) exceeds the server's SIZE limit of ${maxSize}`, { permanent: true });
        }
        const params = [
          ...(extensions.has("SIZE") ? [`SIZE=${mail.data.length}`] : []),
          ...(extensions.has("8BITMIME") && !is7bit(mail.data) ? ["BODY=8BITMIME"] : []),
        ];
        const mailFrom = await session.command(`MAIL FROM:<${mail.from}>${params.map((p) => ` ${p}`).join("")}`, "MAIL FROM");
        if (mailFrom.code !== 250) throw refused("MAIL FROM", mailFrom);
        for (const rcpt of mail.to) {
          const r = await session.command(`RCPT TO:<${rcpt}>`, `RCPT TO <${rcpt}>`);
          if (r.code !== 250 && r.code !== 251) throw refused(`RCPT TO <${rcpt}>`, r);
        }
        const data = await session.command("DATA", "DATA");
        if (data.code !== 354) throw refused("DATA", data);
        session.write(payload);
        const accepted = await session.reply("end of data");
        if (accepted.code !== 250) throw refused("end of data", accepted);
        await session.quit();
      } catch (err) {
        session.destroy();
        throw err instanceof MailerError ? err : transient((err as Error).message, err);
      }
    },
  };
}

/** "host:port", "[v6]:port", "host" (the default port). */
export function parseHostPort(value: string, defaultPort: number): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s[\]]+))(?::([0-9]{1,5}))?$/.exec(value.trim());
  const port = m?.[3] === undefined ? defaultPort : Number(m[3]);
  if (m === null || port < 1 || port > 65535) throw new RangeError(`${JSON.stringify(value)} is not host:port`);
  return { host: (m[1] ?? m[2])!, port };
}

// ---------------------------------------------------------------------------------------------
// sendmail

export interface SendmailOptions {
  /** The program, e.g. /usr/sbin/sendmail. */
  readonly command: string;
  /** Given before ours (-i -f FROM -- RCPT...), e.g. ["-C", "/etc/postfix-out"]. */
  readonly args?: readonly string[];
  /** Killed after this long; default 120 s. */
  readonly timeoutMs?: number;
}

/** "/usr/sbin/sendmail -C /etc/postfix-out": a program and its arguments, split at spaces (no shell). */
export function parseSendmailCommand(value: string): { command: string; args: string[] } {
  const [command, ...args] = value.trim().split(/\s+/).filter((w) => w !== "");
  if (command === undefined) throw new RangeError("empty sendmail command");
  return { command, args };
}

const EX_TEMPFAIL = 75;

/** The local sendmail(1): the message on standard input, LF line ends, as the command expects. */
export function sendmailMailer(options: SendmailOptions): Mailer {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const args = options.args ?? [];
  return {
    description: `sendmail ${[options.command, ...args].join(" ")}`,
    send(mail: OutgoingMail): Promise<void> {
      try {
        checkEnvelope(mail);
      } catch (err) {
        return Promise.reject(err);
      }
      return new Promise((resolve, reject) => {
        const child = spawn(options.command, [...args, "-i", "-f", mail.from === "" ? "<>" : mail.from, "--", ...mail.to], {
          stdio: ["pipe", "pipe", "pipe"],
        });
        let output = "";
        const collect = (chunk: Buffer) => {
          if (output.length < 4096) output += chunk.toString("utf8");
        };
        child.stdout.on("data", collect);
        child.stderr.on("data", collect);
        const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
        child.once("error", (err) => {
          clearTimeout(timer);
          reject(transient(`cannot run ${options.command}: ${err.message}`, err));
        });
        child.once("close", (code, signal) => {
          clearTimeout(timer);
          if (code === 0) return resolve();
          const said = output.trim().replace(/\s*\n\s*/g, " / ");
          const how = code === null ? `was killed (${signal})` : `exited with ${code}`;
          reject(new MailerError(`${options.command} ${how}${said ? `: ${said}` : ""}`, { permanent: code !== null && code !== EX_TEMPFAIL, ...(said ? { reply: said } : {}) }));
        });
        child.stdin.on("error", () => {
          // it exited without reading everything; its status says why
        });
        child.stdin.end(Buffer.from(mail.data.toString("latin1").replace(/\r\n/g, "\n"), "latin1"));
      });
    },
  };
}

/** The mailer a configuration asks for: its sendmail command when given, else SMTP to its relay. */
export function reportMailer(where: { readonly smtp?: string; readonly sendmail?: string }, helo?: string): Mailer {
  if (where.sendmail !== undefined) return sendmailMailer(parseSendmailCommand(where.sendmail));
  return smtpMailer({ ...parseHostPort(where.smtp ?? "127.0.0.1:25", 25), ...(helo === undefined ? {} : { helo }) });
}
