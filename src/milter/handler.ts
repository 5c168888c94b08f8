// The seam between the wire protocol and mail logic: typed events in, typed actions out.
// src/auth implements these interfaces; it never sees bytes of the protocol or a socket.

import type { MacroReader } from "./macros.ts";
import type { Agreement, Requirements } from "./negotiate.ts";
import type { ConnectFamily, Decision, Modification } from "./types.ts";

export type { Requirements, Agreement, MacroReader };

export interface ClientInfo {
  /** Postfix sends "[192.0.2.1]" when reverse DNS failed, "unknown" when the address is unknown too. */
  readonly hostname: string;
  readonly family: ConnectFamily;
  readonly address: string;
  /** 0 for non-SMTP mail and when the MTA does not know the port. */
  readonly port: number;
}

export interface ConnectionContext {
  /** Our id for the milter connection, for logs before the MTA's queue id is known. */
  readonly sessionId: string;
  /** What the MTA agreed to: a handler checks `actions` before planning a header change. */
  readonly agreed: Agreement;
  /** Macros in scope right now; read them during the event they matter for. */
  readonly macros: MacroReader;
}

/** Everything that may end a message. SKIP is a reply to BODY only, so it is not here. */
export type FinalDecision = Exclude<Decision, { kind: "skip" }>;

export interface MessageOutcome {
  /** Applied in order; header indexes follow Postfix's rules (reference §8). */
  readonly modifications: readonly Modification[];
  /** Puts the message on hold (Postfix's hold queue) with this reason. */
  readonly quarantine?: string;
  readonly decision: FinalDecision;
}

type Maybe<T> = T | Promise<T>;

/** Created at MAIL FROM, dropped at ABORT or after end of message: no state leaks between messages. */
export interface MessageHandler {
  recipient?(args: readonly string[]): Maybe<void>;
  header?(name: string, value: Buffer): Maybe<void>;
  endOfHeaders?(): Maybe<void>;
  body?(chunk: Buffer): Maybe<void>;
  endOfMessage(): Maybe<MessageOutcome>;
  /** The MTA abandoned the message (RSET, rejected transaction, lost client). */
  abort?(): void;
}

/** One per client connection (or per non-SMTP message, which Postfix gives its own connection). */
export interface ConnectionHandler {
  connect?(client: ClientInfo): Maybe<void>;
  helo?(name: string): Maybe<void>;
  startMessage(args: readonly string[]): Maybe<MessageHandler>;
  /** The connection ended, or the MTA announced a new client on it (QUIT_NC). */
  close?(): void;
}

export interface MilterHandler {
  readonly requirements: Requirements;
  openConnection(context: ConnectionContext): ConnectionHandler;
}
