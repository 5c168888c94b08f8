// The first handler: it marks every message with which authmilter saw it, so the whole pipe
// (Postfix → milter → Postfix) can be seen end to end before verification and signing land.

import type { Logger } from "pino";
import * as C from "../milter/constants.ts";
import type {
  ConnectionContext,
  ConnectionHandler,
  MessageHandler,
  MilterHandler,
  Requirements,
} from "../milter/handler.ts";

export const SOFTWARE_HEADER = "X-Authmilter";

/** Macros we ask Postfix for, per stage (reference §9); main.cf's milter_*_macros are the fallback. */
export const WANTED_MACROS: Requirements["macros"] = new Map([
  [C.SMFIM_CONNECT, ["j", "{daemon_name}", "{daemon_addr}", "{client_addr}", "{client_name}", "{client_ptr}", "_"]],
  [C.SMFIM_HELO, ["{tls_version}", "{cipher}"]],
  [C.SMFIM_ENVFROM, ["i", "{auth_type}", "{auth_authen}", "{mail_addr}"]],
  [C.SMFIM_ENVRCPT, ["i", "{rcpt_addr}"]],
  [C.SMFIM_EOH, ["i", "{auth_authen}"]],
  [C.SMFIM_EOM, ["i", "{auth_authen}", "{auth_type}"]],
]);

export interface SoftwareHeaderOptions {
  readonly version: string;
  readonly hostname: string;
  readonly logger: Logger;
}

export class SoftwareHeaderHandler implements MilterHandler {
  readonly requirements: Requirements = {
    requiredActions: C.SMFIF_ADDHDRS,
    optionalActions: C.SMFIF_CHGHDRS | C.SMFIF_QUARANTINE,
    macros: WANTED_MACROS,
  };
  readonly #opts: SoftwareHeaderOptions;

  constructor(options: SoftwareHeaderOptions) {
    this.#opts = options;
  }

  openConnection(context: ConnectionContext): ConnectionHandler {
    const { hostname, version, logger } = this.#opts;
    let client = "unknown";
    return {
      connect(info) {
        client = `${info.hostname} [${info.address}]`;
      },
      startMessage(): MessageHandler {
        let bodyBytes = 0;
        let headers = 0;
        return {
          header() {
            headers++;
          },
          body(chunk) {
            bodyBytes += chunk.length;
          },
          endOfMessage() {
            // The queue id is known at end of message for SMTP and non-SMTP mail alike.
            const qid = context.macros.get("i") ?? "NOQUEUE";
            logger.info({ qid, client, headers, bodyBytes }, `${qid}: ${client} seen (${headers} headers, ${bodyBytes} body bytes)`);
            return {
              modifications: [
                // Index 1: just below Postfix's own Received:, where opendkim puts its headers.
                { kind: "insheader", index: 1, name: SOFTWARE_HEADER, value: `authmilter ${version} ${hostname} ${qid}` },
              ],
              decision: { kind: "continue" },
            };
          },
        };
      },
    };
  }
}
