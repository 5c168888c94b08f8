// One milter connection's state machine. It consumes typed commands in order, calls the
// handler, and alone decides whether a reply is owed (the negotiated NR_* mask says so).
// No I/O: the server writes what `handle` returns.

import type { Logger } from "pino";
import * as C from "./constants.ts";
import type { ConnectionHandler, FinalDecision, MessageHandler, MilterHandler } from "./handler.ts";
import { MacroStore } from "./macros.ts";
import { negotiate, type Agreement } from "./negotiate.ts";
import { replyOwed } from "./reply-owed.ts";
import type { Command, CommandKind, Modification, Reply } from "./types.ts";

export interface SessionOptions {
  readonly sessionId: string;
  readonly logger: Logger;
  /** Longest any one handler call may take; past it the message gets `failureDecision`. */
  readonly commandTimeoutMs: number;
  /** While end of message is pending, PROGRESS re-arms Postfix's timer this often. */
  readonly progressIntervalMs: number;
  /** What a message gets when our own code fails on it: Postfix then retries (tempfail). */
  readonly failureDecision: FinalDecision;
  /** Writes a PROGRESS packet now (the only reply sent outside `handle`'s result). */
  readonly sendProgress: () => void;
}

export interface Step {
  readonly replies: readonly Reply[];
  /** Close the connection after writing the replies. */
  readonly close: boolean;
}

/** Header edits need ADDHDRS or CHGHDRS agreed; sending one without would be a protocol error. */
const ACTION_FOR: Partial<Record<Modification["kind"], number>> = {
  addheader: C.SMFIF_ADDHDRS,
  insheader: C.SMFIF_ADDHDRS,
  chgheader: C.SMFIF_CHGHDRS,
  addrcpt: C.SMFIF_ADDRCPT,
  delrcpt: C.SMFIF_DELRCPT,
  chgfrom: C.SMFIF_CHGFROM,
  replbody: C.SMFIF_CHGBODY,
};

const NOTHING: Step = { replies: [], close: false };
const CLOSE: Step = { replies: [], close: true };
const CONTINUE: Reply = { kind: "continue" };
const SPACE = Buffer.from(" ");

class TimeoutError extends Error {
  override readonly name = "TimeoutError";
}

export class MilterSession {
  readonly #handler: MilterHandler;
  readonly #opts: SessionOptions;
  readonly #macros = new MacroStore();
  #agreed: Agreement | undefined;
  #connection: ConnectionHandler | undefined;
  #connectionFailed: unknown;
  #message: MessageHandler | undefined;
  #messageFailed: unknown;

  constructor(handler: MilterHandler, options: SessionOptions) {
    this.#handler = handler;
    this.#opts = options;
  }

  /** A message is between MAIL FROM and the reply to its end: draining waits for it. */
  get inMessage(): boolean {
    return this.#message !== undefined;
  }

  get agreed(): Agreement | undefined {
    return this.#agreed;
  }

  async handle(cmd: Command): Promise<Step> {
    if (cmd.kind === "optneg") return this.#negotiate(cmd);
    if (this.#agreed === undefined) {
      this.#opts.logger.warn({ command: cmd.kind }, "milter command before option negotiation; closing");
      return CLOSE;
    }
    switch (cmd.kind) {
      case "macro":
        this.#macros.set(cmd.stage, cmd.macros);
        return NOTHING;
      case "connect":
        this.#endConnection();
        await this.#connectionCall(() =>
          this.#ensureConnection().connect?.({
            hostname: cmd.hostname,
            family: cmd.family,
            address: cmd.address,
            port: cmd.port,
          }),
        );
        return this.#owed(cmd.kind);
      case "helo":
        this.#abortMessage();
        await this.#connectionCall(() => this.#ensureConnection().helo?.(cmd.name));
        return this.#owed(cmd.kind);
      case "mail":
        await this.#startMessage(cmd.args);
        return this.#owed(cmd.kind);
      case "rcpt":
        await this.#messageCall((m) => m.recipient?.(cmd.args));
        return this.#owed(cmd.kind);
      case "data":
        return this.#owed(cmd.kind);
      case "header":
        await this.#messageCall((m) => m.header?.(cmd.name, cmd.value));
        return this.#owed(cmd.kind);
      case "eoh":
        await this.#messageCall((m) => m.endOfHeaders?.());
        return this.#owed(cmd.kind);
      case "body":
        await this.#messageCall((m) => m.body?.(cmd.chunk));
        return this.#owed(cmd.kind);
      case "eob":
        if (cmd.chunk.length > 0) await this.#messageCall((m) => m.body?.(cmd.chunk));
        return { replies: await this.#endOfMessage(), close: false };
      case "abort":
        this.#abortMessage();
        this.#macros.resetTransaction();
        return NOTHING;
      case "unknown":
        return this.#owed(cmd.kind);
      case "quit_nc":
        // A new client follows on this socket: wipe everything but the negotiated options.
        this.#endConnection();
        this.#macros.resetAll();
        return NOTHING;
      case "quit":
        this.close();
        return CLOSE;
    }
  }

  /** The connection is gone (QUIT, EOF, error, timeout): release the handlers. */
  close(): void {
    this.#endConnection();
  }

  #negotiate(cmd: Command & { kind: "optneg" }): Step {
    if (this.#agreed !== undefined) {
      this.#opts.logger.warn("second option negotiation on one connection; closing");
      return CLOSE;
    }
    try {
      const { reply, agreed } = negotiate(cmd, this.#handler.requirements);
      this.#agreed = agreed;
      this.#opts.logger.debug(
        {
          mta: { version: cmd.version, actions: hex(cmd.actions), protocol: hex(cmd.protocol) },
          agreed: { version: agreed.version, actions: hex(agreed.actions), protocol: hex(agreed.protocol) },
        },
        "milter options negotiated",
      );
      return { replies: [reply], close: false };
    } catch (err) {
      this.#opts.logger.error({ err }, "milter option negotiation failed; closing");
      return CLOSE;
    }
  }

  #owed(kind: CommandKind): Step {
    return replyOwed(kind, this.#agreed!.protocol) ? { replies: [CONTINUE], close: false } : NOTHING;
  }

  #ensureConnection(): ConnectionHandler {
    this.#connection ??= this.#handler.openConnection({
      sessionId: this.#opts.sessionId,
      agreed: this.#agreed!,
      macros: this.#macros,
    });
    return this.#connection;
  }

  async #connectionCall(call: () => unknown): Promise<void> {
    if (this.#connectionFailed !== undefined) return;
    try {
      await this.#withTimeout(call);
    } catch (err) {
      this.#connectionFailed = err;
      this.#opts.logger.error({ err }, "connection handler failed; its messages will get the failure action");
    }
  }

  async #startMessage(args: readonly string[]): Promise<void> {
    this.#abortMessage();
    this.#messageFailed = this.#connectionFailed;
    if (this.#connectionFailed !== undefined) {
      this.#message = FAILED_MESSAGE;
      return;
    }
    try {
      this.#message = await this.#withTimeout(() => this.#ensureConnection().startMessage(args));
    } catch (err) {
      this.#message = FAILED_MESSAGE;
      this.#fail(err);
    }
  }

  async #messageCall(call: (m: MessageHandler) => unknown): Promise<void> {
    const message = this.#message;
    // Message events outside a transaction (a confused or hostile client) reach no handler.
    if (message === undefined || this.#messageFailed !== undefined) return;
    try {
      await this.#withTimeout(() => call(message));
    } catch (err) {
      this.#fail(err);
    }
  }

  #fail(err: unknown): void {
    this.#messageFailed = err;
    this.#opts.logger.error(
      { err, qid: this.#macros.get("i") },
      "message handler failed; the message will get the failure action",
    );
  }

  async #endOfMessage(): Promise<Reply[]> {
    const message = this.#message;
    this.#message = undefined;
    if (message === undefined) return [CONTINUE];
    if (this.#messageFailed !== undefined) return [this.#opts.failureDecision];
    const progress = setInterval(this.#opts.sendProgress, this.#opts.progressIntervalMs);
    try {
      const outcome = await this.#withTimeout(() => message.endOfMessage());
      const replies: Reply[] = [];
      for (const mod of outcome.modifications) {
        const needed = ACTION_FOR[mod.kind] ?? 0;
        if ((this.#agreed!.actions & needed) === needed) replies.push(this.#withLeadingSpace(mod));
        else this.#opts.logger.warn({ modification: mod.kind }, "the MTA did not agree to this change; skipped");
      }
      if (outcome.quarantine !== undefined) {
        if ((this.#agreed!.actions & C.SMFIF_QUARANTINE) !== 0) replies.push({ kind: "quarantine", reason: outcome.quarantine });
        else this.#opts.logger.warn("the MTA did not agree to quarantine; message not held");
      }
      replies.push(outcome.decision);
      return replies;
    } catch (err) {
      this.#fail(err);
      return [this.#opts.failureDecision];
    } finally {
      clearInterval(progress);
    }
  }

  /**
   * Handlers write values without leading whitespace. Postfix puts one space after the colon
   * itself unless HDR_LEADSPC was agreed; then the value must bring its own (reference §7).
   * An empty CHGHEADER value means "delete" and stays empty.
   */
  #withLeadingSpace(mod: Modification): Modification {
    if (mod.kind !== "addheader" && mod.kind !== "insheader" && mod.kind !== "chgheader") return mod;
    const value = typeof mod.value === "string" ? Buffer.from(mod.value, "utf8") : mod.value;
    let start = 0;
    while (value[start] === 0x20 || value[start] === 0x09) start++;
    const bare = value.subarray(start);
    const leadspc = (this.#agreed!.protocol & C.SMFIP_HDR_LEADSPC) !== 0;
    return { ...mod, value: leadspc && bare.length > 0 ? Buffer.concat([SPACE, bare]) : bare };
  }

  #abortMessage(): void {
    const message = this.#message;
    this.#message = undefined;
    this.#messageFailed = undefined;
    if (message === undefined) return;
    try {
      message.abort?.();
    } catch (err) {
      this.#opts.logger.error({ err }, "message abort handler failed");
    }
  }

  #endConnection(): void {
    this.#abortMessage();
    const connection = this.#connection;
    this.#connection = undefined;
    this.#connectionFailed = undefined;
    try {
      connection?.close?.();
    } catch (err) {
      this.#opts.logger.error({ err }, "connection close handler failed");
    }
  }

  async #withTimeout<T>(call: () => T | Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new TimeoutError(`handler took longer than ${this.#opts.commandTimeoutMs} ms`)),
        this.#opts.commandTimeoutMs,
      );
    });
    try {
      return await Promise.race([Promise.resolve().then(call), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Stands in for a message whose handler could not be created, so its events are skipped. */
const FAILED_MESSAGE: MessageHandler = {
  endOfMessage() {
    throw new Error("unreachable: a failed message never reaches its end handler");
  },
};

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
