// The daemon as Postfix meets it, for the hostile-input tests: the real AuthHandler built from a
// Config (defaults, except the authserv-id and DNS pointing at the loopback test server) behind an
// in-process MilterServer with the daemon's own milter limits. Messages go over a loopback socket
// through the test milter client, so frame decoder, codec, session and handler all run.

import { Writable } from "node:stream";
import { dkimSign } from "mailauth/lib/dkim/sign.js";
import { pino } from "pino";
import { buildAuthHandler, buildResolver } from "../../src/auth/build.ts";
import { actionDecision } from "../../src/auth/policy.ts";
import { defaultConfig, type Config } from "../../src/config/schema.ts";
import type { Resolver } from "../../src/dns/index.ts";
import type { Reply } from "../../src/milter/types.ts";
import { startDnsServer, type DnsTestServer, type Zone } from "../support/dns-server.ts";
import { startServer, type Running } from "../support/in-process-server.ts";
import { MilterClient, sendMessage, type TestMessage } from "../support/milter-client.ts";
import { FIXTURE_KEY_PEM, FIXTURE_KEY_RECORD } from "./dkim.ts";

export const AUTHSERV_ID = "mx.example.net";
/** The client every test message comes from unless a case says otherwise (external: verified). */
export const CLIENT = { hostname: "mail.good.example", address: "192.0.2.1" } as const;
export const HELO = "mail.good.example";
export const DATE = "Thu, 26 Nov 2026 06:00:00 +0000";

/** Names every hostile case may use; a case adds its own through `extraZone`. */
export const BASE_ZONE: Zone = {
  // The well-formed control message: DKIM, SPF (MAIL FROM and HELO) and DMARC all pass.
  "sel._domainkey.good.example": { TXT: FIXTURE_KEY_RECORD },
  "good.example": { TXT: "v=spf1 ip4:192.0.2.0/24 -all" },
  "_dmarc.good.example": { TXT: "v=DMARC1; p=reject" },
  "mail.good.example": { A: "192.0.2.1", TXT: "v=spf1 ip4:192.0.2.1 -all" },
  // Where most hostile messages claim to come from: SPF passes, DMARC report-only by default.
  "ok.example": { TXT: "v=spf1 ip4:192.0.2.1 -all" },
  "_dmarc.ok.example": { TXT: "v=DMARC1; p=reject" },
};

export interface Daemon {
  readonly running: Running;
  readonly dns: DnsTestServer;
  readonly config: Config;
  /** Log messages of the handler and the server, in order. */
  readonly logs: Array<{ level: number; msg: string }>;
  /** A connected, negotiated client; closed by `stop`. */
  client(): Promise<MilterClient>;
  stop(): Promise<void>;
}

export async function startDaemon(extraZone: Zone = {}, tweak: (c: Config) => Config = (c) => c): Promise<Daemon> {
  const dns = await startDnsServer({ zone: { ...BASE_ZONE, ...extraZone } });
  const base = defaultConfig();
  const config = tweak({
    ...base,
    hostname: "mx.example.net",
    authservId: AUTHSERV_ID,
    dns: { ...base.dns, servers: dns.servers, timeoutMs: 1_000, tries: 1 },
  });
  const logs: Daemon["logs"] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  const logger = pino({ level: "info" }, sink);
  const resolver: Resolver = buildResolver(config);
  const handler = await buildAuthHandler(config, resolver, logger);
  const m = config.milter;
  const running = await startServer(handler, {
    maxConnections: m.maxConnections,
    idleTimeoutMs: m.idleTimeoutMs,
    commandTimeoutMs: m.commandTimeoutMs,
    progressIntervalMs: m.progressIntervalMs,
    maxPacketBytes: m.maxPacketBytes,
    drainTimeoutMs: 2_000,
    failureDecision: actionDecision(config.actions.internalError),
    logger,
  });
  const clients: MilterClient[] = [];
  return {
    running,
    dns,
    config,
    logs,
    async client() {
      const c = await MilterClient.connect({ host: "127.0.0.1", port: running.port });
      clients.push(c);
      await c.negotiate();
      return c;
    },
    async stop() {
      for (const c of clients) c.close();
      await running.stop();
      resolver.close();
      await dns.close();
    },
  };
}

// ---- messages ------------------------------------------------------------------------------

export type Headers = ReadonlyArray<readonly [string, string | Buffer]>;

/** Headers that meet RequiredHeaders, From first; values carry their leading space (HDR_LEADSPC). */
export function plainHeaders(from = "<alice@ok.example>", extra: Headers = []): Headers {
  return [
    ["From", ` ${from}`],
    ["To", " bob@example.net"],
    ["Subject", " hostile"],
    ["Date", ` ${DATE}`],
    ["Message-ID", " <h1@ok.example>"],
    ...extra,
  ];
}

export function testMessage(over: Partial<TestMessage> & { headers?: Headers } = {}): TestMessage {
  return {
    client: CLIENT,
    helo: HELO,
    sender: "alice@ok.example",
    recipients: ["bob@example.net"],
    headers: plainHeaders(),
    body: "Hello.\r\n",
    ...over,
  };
}

let controlSeq = 0;

/** A message signed by good.example's key that passes DKIM, SPF and DMARC. */
export async function controlMessage(): Promise<TestMessage> {
  const id = `<control.${++controlSeq}@good.example>`;
  const raw =
    `From: Alice <alice@good.example>\r\nTo: bob@example.net\r\nSubject: control\r\nDate: ${DATE}\r\n` +
    `Message-ID: ${id}\r\n\r\nThe well-formed message after each hostile one.\r\n`;
  const signed = await dkimSign(raw, {
    signatureData: [{ signingDomain: "good.example", selector: "sel", privateKey: FIXTURE_KEY_PEM }],
  } as never);
  const sig = String(signed.signatures).replace(/\r\n$/, "");
  const colon = sig.indexOf(":");
  if (!sig.startsWith("DKIM-Signature:")) throw new Error(`dkimSign produced no signature: ${JSON.stringify(signed)}`);
  // Postfix hands folded values over with LF line ends.
  const sigValue = sig.slice(colon + 1).replace(/\r\n/g, "\n");
  return {
    client: CLIENT,
    helo: HELO,
    sender: "alice@good.example",
    recipients: ["bob@example.net"],
    headers: [
      ["DKIM-Signature", sigValue],
      ["From", " Alice <alice@good.example>"],
      ["To", " bob@example.net"],
      ["Subject", " control"],
      ["Date", ` ${DATE}`],
      ["Message-ID", ` ${id}`],
    ],
    body: "The well-formed message after each hostile one.\r\n",
  };
}

// ---- reading the replies -------------------------------------------------------------------

/** Our Authentication-Results value, unfolded to one line; undefined when none was added. */
export function authResultsOf(replies: readonly Reply[]): string | undefined {
  const ar = replies.filter((r) => r.kind === "insheader" && r.name === "Authentication-Results");
  if (ar.length > 1) throw new Error("more than one Authentication-Results added");
  const first = ar[0];
  if (!first || first.kind !== "insheader") return undefined;
  return Buffer.from(first.value).toString("latin1").trim().replace(/\n\t/g, " ");
}

export { MilterClient, sendMessage };
