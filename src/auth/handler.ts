// One message's journey through authmilter: classify the client, sign what is ours, verify
// what comes from outside, remove forged results, add ours. Typed milter events in, typed
// actions out.

import type { DNSResolver } from "mailauth";
import type { Logger } from "pino";
import * as C from "../milter/constants.ts";
import type { ClientInfo, ConnectionContext, ConnectionHandler, MessageHandler, MilterHandler, Requirements } from "../milter/handler.ts";
import type { AuthMetrics } from "../ops/metrics.ts";
import { classifyClient } from "./classify.ts";
import type { HistorySink } from "./history.ts";
import { AuthMessage, type FailureReportSink } from "./message.ts";
import type { AuthState } from "./settings.ts";

export { SOFTWARE_HEADER } from "./message.ts";

/** What the daemon adds to a handler beyond its state: counters and where reports go. */
export interface HandlerExtras {
  readonly metrics?: AuthMetrics;
  readonly history?: HistorySink;
  readonly failureReports?: FailureReportSink;
}
export type { AuthSettings, AuthState } from "./settings.ts";

/** Macros we ask Postfix for, per stage (reference §9); main.cf's milter_*_macros are the fallback. */
export const WANTED_MACROS: Requirements["macros"] = new Map([
  [C.SMFIM_CONNECT, ["j", "{daemon_name}", "{daemon_addr}", "{client_addr}", "{client_name}", "{client_ptr}", "_"]],
  [C.SMFIM_HELO, ["{tls_version}", "{cipher}"]],
  [C.SMFIM_ENVFROM, ["i", "{auth_type}", "{auth_authen}", "{mail_addr}"]],
  [C.SMFIM_ENVRCPT, ["i", "{rcpt_addr}"]],
  [C.SMFIM_EOH, ["i", "{auth_authen}"]],
  [C.SMFIM_EOM, ["i", "{auth_authen}", "{auth_type}"]],
]);

export class AuthHandler implements MilterHandler {
  readonly requirements: Requirements = {
    requiredActions: C.SMFIF_ADDHDRS,
    // Without CHGHDRS forged A-R headers cannot be removed; the session logs each time.
    optionalActions: C.SMFIF_CHGHDRS | C.SMFIF_QUARANTINE,
    macros: WANTED_MACROS,
  };
  #state: AuthState;
  readonly #resolver: DNSResolver;
  readonly #logger: Logger;
  readonly #metrics: AuthMetrics | undefined;
  readonly #extras: HandlerExtras;

  constructor(state: AuthState, resolver: DNSResolver, logger: Logger, extras: HandlerExtras = {}) {
    this.#state = state;
    this.#resolver = resolver;
    this.#logger = logger;
    this.#metrics = extras.metrics;
    this.#extras = extras;
  }

  /** Messages that start from now on use `state`; messages in flight keep theirs. */
  reload(state: AuthState): void {
    this.#state = state;
  }

  openConnection(context: ConnectionContext): ConnectionHandler {
    let client: ClientInfo = { hostname: "unknown", family: "unknown", address: "", port: 0 };
    let helo = "";
    let daemonName: string | undefined;
    return {
      connect: (info) => {
        client = info;
        // smtpd's value; cleanup sends its own at the header and body stages (§13.2).
        daemonName = context.macros.get("{daemon_name}");
      },
      helo(name) {
        helo = name;
      },
      startMessage: (args): MessageHandler => {
        const state = this.#state;
        const authUser = context.macros.get("{auth_authen}");
        const clientClass = classifyClient(
          { address: client.address, hostname: client.hostname, port: client.port, ...(authUser ? { authUser } : {}), ...(daemonName ? { daemonName } : {}) },
          state.settings,
        );
        const sender = context.macros.get("{mail_addr}") ?? bareAddress(args[0] ?? "");
        this.#metrics?.messages.inc({ class: clientClass.kind });
        return new AuthMessage({
          state,
          resolver: this.#resolver,
          logger: this.#logger,
          context,
          client,
          helo,
          sender,
          clientClass,
          ...this.#extras,
        });
      },
    };
  }
}

/** MAIL FROM as smtpd passes it ("<a@b>") or as cleanup does for non-SMTP mail ("a@b"). */
function bareAddress(arg: string): string {
  return arg.replace(/^<(.*)>$/, "$1");
}
