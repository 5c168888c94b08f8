// One message's journey through authmilter: classify the client, verify what comes from
// outside, remove forged results, add ours. Typed milter events in, typed actions out.

import type { Logger } from "pino";
import type { DNSResolver } from "mailauth";
import type { HostList } from "../keys/hosts.ts";
import * as C from "../milter/constants.ts";
import type {
  ClientInfo,
  ConnectionContext,
  ConnectionHandler,
  MessageHandler,
  MessageOutcome,
  MilterHandler,
  Requirements,
} from "../milter/handler.ts";
import type { Modification } from "../milter/types.ts";
import { AUTHENTICATION_RESULTS, planAuthenticationResults } from "./authres.ts";
import { classifyClient, type ClientClass } from "./classify.ts";
import { isNamed, type HeaderField } from "./header-field.ts";
import { formatAuthenticationResults } from "./results.ts";
import { describeVerification } from "./log-lines.ts";
import { MessageVerifier } from "./verify.ts";

export const SOFTWARE_HEADER = "Authmilter-Filter";

/** Macros we ask Postfix for, per stage (reference §9); main.cf's milter_*_macros are the fallback. */
export const WANTED_MACROS: Requirements["macros"] = new Map([
  [C.SMFIM_CONNECT, ["j", "{daemon_name}", "{daemon_addr}", "{client_addr}", "{client_name}", "{client_ptr}", "_"]],
  [C.SMFIM_HELO, ["{tls_version}", "{cipher}"]],
  [C.SMFIM_ENVFROM, ["i", "{auth_type}", "{auth_authen}", "{mail_addr}"]],
  [C.SMFIM_ENVRCPT, ["i", "{rcpt_addr}"]],
  [C.SMFIM_EOH, ["i", "{auth_authen}"]],
  [C.SMFIM_EOM, ["i", "{auth_authen}", "{auth_type}"]],
]);

export interface AuthSettings {
  readonly version: string;
  readonly hostname: string;
  readonly authservId: string;
  readonly softwareHeader: boolean;
  readonly internalHosts: HostList;
  readonly spfSelfValidate: boolean;
  readonly spfIgnoreResults: boolean;
  readonly trustedAuthservIds: readonly string[];
  readonly ignoreAuthenticatedClients: boolean;
}

export class AuthHandler implements MilterHandler {
  readonly requirements: Requirements = {
    requiredActions: C.SMFIF_ADDHDRS,
    // Without CHGHDRS forged A-R headers cannot be removed; the session logs each time.
    optionalActions: C.SMFIF_CHGHDRS | C.SMFIF_QUARANTINE,
    macros: WANTED_MACROS,
  };
  readonly #settings: AuthSettings;
  readonly #resolver: DNSResolver;
  readonly #logger: Logger;

  constructor(settings: AuthSettings, resolver: DNSResolver, logger: Logger) {
    this.#settings = settings;
    this.#resolver = resolver;
    this.#logger = logger;
  }

  openConnection(context: ConnectionContext): ConnectionHandler {
    const settings = this.#settings;
    const resolver = this.#resolver;
    const logger = this.#logger;
    let client: ClientInfo = { hostname: "unknown", family: "unknown", address: "", port: 0 };
    let helo = "";
    return {
      connect(info) {
        client = info;
      },
      helo(name) {
        helo = name;
      },
      startMessage(args): MessageHandler {
        // {auth_authen} comes with MAIL from smtpd; cleanup's later macros may lack it (§13.2).
        const authUser = context.macros.get("{auth_authen}");
        const clientClass = classifyClient(
          { address: client.address, hostname: client.hostname, ...(authUser ? { authUser } : {}) },
          { internalHosts: settings.internalHosts },
        );
        const sender = context.macros.get("{mail_addr}") ?? bareAddress(args[0] ?? "");
        return new AuthMessage({ settings, resolver, logger, context, client, helo, sender, clientClass });
      },
    };
  }
}

interface MessageSetup {
  readonly settings: AuthSettings;
  readonly resolver: DNSResolver;
  readonly logger: Logger;
  readonly context: ConnectionContext;
  readonly client: ClientInfo;
  readonly helo: string;
  readonly sender: string;
  readonly clientClass: ClientClass;
}

class AuthMessage implements MessageHandler {
  readonly #setup: MessageSetup;
  readonly #verifier: MessageVerifier | undefined;
  /** Only the A-R fields are kept: they are all the end of message needs to see again. */
  readonly #authResults: HeaderField[] = [];

  constructor(setup: MessageSetup) {
    this.#setup = setup;
    const { settings, clientClass } = setup;
    const verify = clientClass.kind === "external" || (clientClass.kind === "authenticated" && !settings.ignoreAuthenticatedClients);
    this.#verifier = verify
      ? new MessageVerifier({
          resolver: setup.resolver,
          authservId: settings.authservId,
          clientAddress: setup.client.address,
          helo: setup.helo,
          sender: setup.sender,
          spfSelfValidate: settings.spfSelfValidate,
          spfIgnoreResults: settings.spfIgnoreResults,
        })
      : undefined;
  }

  async header(name: string, value: Buffer): Promise<void> {
    const field = { name, value };
    if (isNamed(field, AUTHENTICATION_RESULTS)) this.#authResults.push(field);
    await this.#verifier?.header(field);
  }

  async endOfHeaders(): Promise<void> {
    await this.#verifier?.endOfHeaders();
  }

  async body(chunk: Buffer): Promise<void> {
    await this.#verifier?.body(chunk);
  }

  abort(): void {
    this.#verifier?.abort();
  }

  async endOfMessage(): Promise<MessageOutcome> {
    const { settings, context, client, clientClass, logger } = this.#setup;
    const qid = context.macros.get("i") ?? "NOQUEUE";
    const log = logger.child({ qid });
    const who = `${client.hostname} [${client.address}]`;
    const modifications: Modification[] = [];
    if (settings.softwareHeader) {
      modifications.push({ kind: "insheader", index: 1, name: SOFTWARE_HEADER, value: `authmilter ${settings.version} ${settings.hostname} ${qid}` });
    }
    if (clientClass.kind === "internal") {
      log.info({ client: who }, `${qid}: ${clientClass.why}; not verified`);
      return { modifications, decision: { kind: "continue" } };
    }
    log.info({ client: who }, `${qid}: ${who} not internal`);
    if (clientClass.kind === "authenticated") log.info({ user: clientClass.user }, `${qid}: authenticated as ${clientClass.user}`);
    else log.info(`${qid}: not authenticated`);
    if (!this.#verifier) return { modifications, decision: { kind: "continue" } };

    const plan = planAuthenticationResults(this.#authResults, settings.authservId, settings.trustedAuthservIds);
    const verification = await this.#verifier.finish(plan.trusted);
    for (const line of describeVerification(verification)) log.info(line.fields, `${qid}: ${line.text}`);
    // Postfix unlinks a deleted header, shifting later ones: delete from the last up (§8).
    for (const position of [...plan.forged].reverse()) {
      log.info({ position }, `${qid}: removed an ${AUTHENTICATION_RESULTS} header that claims our authserv-id`);
      modifications.push({ kind: "chgheader", index: position, name: AUTHENTICATION_RESULTS, value: "" });
    }
    // Inserted last at index 1, so it lands on top, above the software header (§8 stacking).
    modifications.push({
      kind: "insheader",
      index: 1,
      name: AUTHENTICATION_RESULTS,
      value: formatAuthenticationResults(settings.authservId, verification.findings),
    });
    return { modifications, decision: { kind: "continue" } };
  }
}

/** MAIL FROM as smtpd passes it ("<a@b>") or as cleanup does for non-SMTP mail ("a@b"). */
function bareAddress(arg: string): string {
  return arg.replace(/^<(.*)>$/, "$1");
}
