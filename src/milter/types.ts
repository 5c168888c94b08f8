// Typed milter packets in both directions. Strings that carry message bytes (header values,
// body chunks) stay Buffers: 8-bit headers and invalid UTF-8 occur and DKIM hashes raw bytes.

export type ConnectFamily = "inet" | "inet6" | "unix" | "unknown";

export interface OptionNegotiation {
  readonly version: number;
  readonly actions: number;
  readonly protocol: number;
}

export type Command =
  | ({ readonly kind: "optneg" } & OptionNegotiation)
  | { readonly kind: "macro"; readonly stage: number; readonly macros: ReadonlyMap<string, string> }
  | {
      readonly kind: "connect";
      readonly hostname: string;
      readonly family: ConnectFamily;
      readonly port: number;
      readonly address: string;
    }
  | { readonly kind: "helo"; readonly name: string }
  | { readonly kind: "mail"; readonly args: readonly string[] }
  | { readonly kind: "rcpt"; readonly args: readonly string[] }
  | { readonly kind: "data" }
  | { readonly kind: "header"; readonly name: string; readonly value: Buffer }
  | { readonly kind: "eoh" }
  | { readonly kind: "body"; readonly chunk: Buffer }
  | { readonly kind: "eob"; readonly chunk: Buffer }
  | { readonly kind: "abort" }
  | { readonly kind: "quit" }
  | { readonly kind: "quit_nc" }
  | { readonly kind: "unknown"; readonly line: string };

export type CommandKind = Command["kind"];

/** A final answer to an event: it ends the MTA's wait. */
export type Decision =
  | { readonly kind: "continue" }
  | { readonly kind: "accept" }
  | { readonly kind: "reject" }
  | { readonly kind: "tempfail" }
  | { readonly kind: "discard" }
  | { readonly kind: "skip" }
  /** code "550", status "5.7.1"; the text may hold several lines (joined with "\n"). */
  | { readonly kind: "replycode"; readonly code: string; readonly status?: string; readonly text: string };

/** Changes that are legal only in the reply to end of body. */
export type Modification =
  | { readonly kind: "addheader"; readonly name: string; readonly value: string | Buffer }
  | {
      readonly kind: "insheader";
      readonly index: number;
      readonly name: string;
      readonly value: string | Buffer;
    }
  | {
      readonly kind: "chgheader";
      readonly index: number;
      readonly name: string;
      readonly value: string | Buffer;
    }
  | { readonly kind: "addrcpt"; readonly rcpt: string; readonly args?: string }
  | { readonly kind: "delrcpt"; readonly rcpt: string }
  | { readonly kind: "chgfrom"; readonly sender: string; readonly args?: string }
  | { readonly kind: "replbody"; readonly chunk: Buffer };

export type Reply =
  | Decision
  | Modification
  | { readonly kind: "progress" }
  | { readonly kind: "quarantine"; readonly reason: string }
  | ({
      readonly kind: "optneg";
      /** Macro names wanted per SMFIM_* stage; sent only when SETSYMLIST is agreed. */
      readonly macros: ReadonlyMap<number, readonly string[]>;
    } & OptionNegotiation);
