// Which commands the MTA waits for an answer to, under the negotiated protocol mask. Both ends
// must agree on it to the letter: one reply too many or too few desynchronises the stream.

import * as C from "./constants.ts";
import type { CommandKind } from "./types.ts";

/** The NR_* bit that, when agreed, means the MTA expects no reply to this command. */
const NO_REPLY_BIT: Partial<Record<CommandKind, number>> = {
  connect: C.SMFIP_NR_CONN,
  helo: C.SMFIP_NR_HELO,
  mail: C.SMFIP_NR_MAIL,
  rcpt: C.SMFIP_NR_RCPT,
  data: C.SMFIP_NR_DATA,
  header: C.SMFIP_NR_HDR,
  eoh: C.SMFIP_NR_EOH,
  body: C.SMFIP_NR_BODY,
  unknown: C.SMFIP_NR_UNKN,
};

/** MACRO, ABORT, QUIT and QUIT_NC are never answered; OPTNEG and end of body always are. */
const NEVER_ANSWERED: ReadonlySet<CommandKind> = new Set(["macro", "abort", "quit", "quit_nc"]);

export function replyOwed(kind: CommandKind, protocol: number): boolean {
  if (NEVER_ANSWERED.has(kind)) return false;
  const bit = NO_REPLY_BIT[kind];
  return bit === undefined || (protocol & bit) === 0;
}
