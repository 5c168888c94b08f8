// A handler for protocol tests: it records every event it is given and answers end of
// message with whatever the test asks for. Not a mock of mail logic: a probe of the seam.

import * as C from "../../src/milter/constants.ts";
import type { ConnectionContext, MessageHandler, MessageOutcome, MilterHandler, Requirements } from "../../src/milter/handler.ts";

export interface RecordedMessage {
  readonly events: string[];
  readonly headers: Array<[string, Buffer]>;
  body: Buffer;
  aborted: boolean;
  ended: boolean;
  macrosAtEnd?: ReadonlyMap<string, string>;
}

export interface RecordedConnection {
  readonly context: ConnectionContext;
  readonly events: string[];
  readonly messages: RecordedMessage[];
  closed: boolean;
}

export interface Behaviour {
  outcome?: (message: RecordedMessage) => MessageOutcome;
  /** Delay (ms) before each body chunk is taken: end of message must still come after. */
  bodyDelayMs?: number;
  endDelayMs?: number;
  throwAt?: "connect" | "header" | "end";
}

const DEFAULT_OUTCOME: MessageOutcome = {
  modifications: [{ kind: "insheader", index: 1, name: "X-Test", value: "seen" }],
  decision: { kind: "continue" },
};

export class RecordingHandler implements MilterHandler {
  readonly connections: RecordedConnection[] = [];
  readonly behaviour: Behaviour;
  readonly requirements: Requirements;

  constructor(behaviour: Behaviour = {}, requirements?: Partial<Requirements>) {
    this.behaviour = behaviour;
    this.requirements = {
      requiredActions: C.SMFIF_ADDHDRS,
      optionalActions: C.SMFIF_CHGHDRS | C.SMFIF_QUARANTINE,
      macros: new Map([[C.SMFIM_CONNECT, ["j", "{daemon_name}"]]]),
      ...requirements,
    };
  }

  openConnection(context: ConnectionContext) {
    const conn: RecordedConnection = { context, events: [], messages: [], closed: false };
    this.connections.push(conn);
    const b = this.behaviour;
    return {
      connect: (client: { hostname: string; family: string; address: string; port: number }) => {
        conn.events.push(`connect ${client.hostname} ${client.family} ${client.address} ${client.port}`);
        if (b.throwAt === "connect") throw new Error("connect failed on purpose");
      },
      helo: (name: string) => {
        conn.events.push(`helo ${name} tls=${context.macros.get("{tls_version}") ?? "-"}`);
      },
      startMessage: (args: readonly string[]): MessageHandler => {
        const msg: RecordedMessage = { events: [`mail ${args.join(" ")}`], headers: [], body: Buffer.alloc(0), aborted: false, ended: false };
        conn.messages.push(msg);
        return {
          recipient: (rcpt) => void msg.events.push(`rcpt ${rcpt.join(" ")}`),
          header: (name, value) => {
            if (b.throwAt === "header") throw new Error("header failed on purpose");
            msg.headers.push([name, Buffer.from(value)]);
            msg.events.push(`header ${name}`);
          },
          endOfHeaders: () => void msg.events.push("eoh"),
          body: async (chunk) => {
            if (b.bodyDelayMs) await new Promise((r) => setTimeout(r, b.bodyDelayMs));
            msg.body = Buffer.concat([msg.body, chunk]);
            msg.events.push(`body ${chunk.length}`);
          },
          endOfMessage: async () => {
            msg.events.push("eom");
            msg.macrosAtEnd = new Map(context.macros.all());
            if (b.endDelayMs) await new Promise((r) => setTimeout(r, b.endDelayMs));
            if (b.throwAt === "end") throw new Error("end failed on purpose");
            msg.ended = true;
            return b.outcome ? b.outcome(msg) : DEFAULT_OUTCOME;
          },
          abort: () => {
            msg.aborted = true;
            msg.events.push("abort");
          },
        };
      },
      close: () => {
        conn.closed = true;
        conn.events.push("close");
      },
    };
  }
}
