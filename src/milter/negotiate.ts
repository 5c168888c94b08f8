// OPTNEG: agree on version, actions and protocol steps with the MTA. Pure.

import * as C from "./constants.ts";
import type { OptionNegotiation, Reply } from "./types.ts";
import { ProtocolError } from "./wire-strings.ts";

/** What a handler declares it needs; the negotiator derives the masks from it. */
export interface Requirements {
  /** SMFIF_* bits without which the handler cannot work: the connection is refused. */
  readonly requiredActions: number;
  /** SMFIF_* bits taken when offered; the handler learns which it got. */
  readonly optionalActions: number;
  /** Macro names wanted per SMFIM_* stage (sent only if the MTA offers SETSYMLIST). */
  readonly macros: ReadonlyMap<number, readonly string[]>;
}

export interface Agreement {
  readonly version: number;
  readonly actions: number;
  readonly protocol: number;
}

export class NegotiationError extends ProtocolError {}

/*
 * We observe every event but decide only at end of message, so we promise "no reply" (NR_*)
 * for nearly everything before it: Postfix then pipelines headers and body chunks without
 * waiting. HDR_LEADSPC gives exact header bytes for DKIM. SKIP is useless under NR_BODY (it
 * is a reply to BODY), so it is not asked for.
 *
 * DATA is the exception, answered on purpose. Postfix keeps Nagle on and writes its buffered
 * packets out twice per message: when smtpd hands the milter socket to cleanup at DATA, and
 * before it reads the end-of-message reply. If nothing went back in between, the second write
 * waits for our delayed ACK, 40 ms a message (reference §13; measured here: 20 msgs/s, p50 50 ms
 * at concurrency 1). Our CONTINUE to DATA carries that ACK back at once.
 */
const WANTED_PROTOCOL =
  C.SMFIP_NOUNKNOWN |
  C.SMFIP_NR_CONN |
  C.SMFIP_NR_HELO |
  C.SMFIP_NR_MAIL |
  C.SMFIP_NR_RCPT |
  C.SMFIP_NR_UNKN |
  C.SMFIP_NR_HDR |
  C.SMFIP_NR_EOH |
  C.SMFIP_NR_BODY |
  C.SMFIP_HDR_LEADSPC;

export function negotiate(offer: OptionNegotiation, needs: Requirements): { reply: Reply; agreed: Agreement } {
  if (offer.version < 2) throw new NegotiationError(`MTA speaks milter protocol version ${offer.version}, need 2 or later`);
  // libmilter: an MTA that offers nothing means the version-1 defaults.
  const mtaActions = offer.actions === 0 ? C.SMFI_V1_ACTS : offer.actions;
  const mtaProtocol = offer.protocol === 0 ? C.SMFI_V1_PROT : offer.protocol;
  const missing = needs.requiredActions & ~mtaActions;
  if (missing !== 0) {
    throw new NegotiationError(
      `MTA does not offer the required milter actions 0x${missing.toString(16)} (offered 0x${mtaActions.toString(16)})`,
    );
  }
  const version = Math.min(C.SMFI_VERSION, offer.version);
  const sendMacros = (mtaActions & C.SMFIF_SETSYMLIST) !== 0 && needs.macros.size > 0;
  const actions =
    ((needs.requiredActions | needs.optionalActions) & mtaActions) | (sendMacros ? C.SMFIF_SETSYMLIST : 0);
  // Steps the MTA did not offer must be dropped: the final mask decides which events we answer.
  const protocol = WANTED_PROTOCOL & mtaProtocol;
  const agreed = { version, actions, protocol };
  return {
    agreed,
    reply: { kind: "optneg", ...agreed, macros: sendMacros ? needs.macros : new Map() },
  };
}
