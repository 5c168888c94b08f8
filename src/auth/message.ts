// One message: what it is fed as the milter events arrive, and what it asks for at its end.

import type { DNSResolver } from "mailauth";
import type { Logger } from "pino";
import { matchesHost } from "../keys/hosts.ts";
import type { ClientInfo, ConnectionContext, MessageHandler, MessageOutcome } from "../milter/handler.ts";
import type { Modification } from "../milter/types.ts";
import type { AuthMetrics } from "../ops/metrics.ts";
import { parseMailboxList } from "./address.ts";
import { AUTHENTICATION_RESULTS, planAuthenticationResults } from "./authres.ts";
import type { ClientClass } from "./classify.ts";
import { isNamed, unfoldedText, type HeaderField } from "./header-field.ts";
import { historyRecordOf, type HistorySink } from "./history.ts";
import { CrlfNormalizer } from "./crlf.ts";
import { describeVerification } from "./log-lines.ts";
import { decide } from "./policy.ts";
import { brokenHeaderRule } from "./required-headers.ts";
import { formatAuthenticationResults, type Findings } from "./results.ts";
import type { AuthState } from "./settings.ts";
import { MessageSigner } from "./sign.ts";
import { MessageVerifier } from "./verify.ts";
import type { FailureReportInput } from "../reports/failure.ts";

export const SOFTWARE_HEADER = "Authmilter-Filter";

const NO_FINDINGS = { dkim: [], spf: [] } as const;

type LogFn = Logger["info"];

export interface MessageSetup {
  readonly state: AuthState;
  readonly resolver: DNSResolver;
  readonly logger: Logger;
  readonly context: ConnectionContext;
  readonly client: ClientInfo;
  readonly helo: string;
  readonly sender: string;
  readonly clientClass: ClientClass;
  readonly metrics?: AuthMetrics;
  readonly history?: HistorySink;
  /** When failure reports are on, the message's header fields are kept for them. */
  readonly failureReports?: FailureReportSink;
}

/** Where a verified message goes to be considered for a failure report; never throws or waits. */
export interface FailureReportSink {
  consider(input: FailureReportInput): Promise<void>;
}

export class AuthMessage implements MessageHandler {
  readonly #setup: MessageSetup;
  readonly #verifier: MessageVerifier | undefined;
  /** Ours and to be signed: the header block is kept until the author (and so the key) is known. */
  readonly #signHeaders: HeaderField[] | undefined;
  #signer: MessageSigner | undefined;
  #notSignedWhy: string | undefined;
  /** A-R fields are kept: the end of message has to find forged ones and read trusted ones. */
  readonly #authResults: HeaderField[] = [];
  readonly #authors = new Map<string, string>();
  /** Field counts by lower-cased name and the From values, for RequiredHeaders. */
  readonly #counts = new Map<string, number>();
  readonly #fromValues: string[] = [];
  /** Only kept for failure reports (a report shows the original header). */
  readonly #allHeaders: HeaderField[] = [];
  #headerCount = 0;
  #headerBytes = 0;
  #bodyBytes = 0;
  /** Set when the message broke a limit: from then on it is only counted, not examined. */
  #overLimit: string | undefined;
  readonly #deadline: number;
  readonly #crlf = new CrlfNormalizer();
  readonly #started = Date.now();

  constructor(setup: MessageSetup) {
    this.#setup = setup;
    const { settings } = setup.state;
    const kind = setup.clientClass.kind;
    const ours = kind === "internal" || kind === "authenticated";
    const verify = settings.verify && (kind === "external" || (kind === "authenticated" && !settings.ignoreAuthenticatedClients));
    this.#verifier = verify
      ? new MessageVerifier({
          resolver: setup.resolver,
          authservId: settings.authservId,
          clientAddress: setup.client.address,
          helo: setup.helo,
          sender: setup.sender,
          spfSelfValidate: settings.spfSelfValidate,
          spfIgnoreResults: settings.spfIgnoreResults,
          maxSignatures: settings.limits.maxSignatures,
        })
      : undefined;
    this.#deadline = Date.now() + settings.limits.messageTimeoutMs;
    this.#signHeaders = settings.sign && ours ? [] : undefined;
  }

  async header(name: string, value: Buffer): Promise<void> {
    const field = { name, value };
    // A-R fields are tracked even past the limits: a forged one must still go.
    if (isNamed(field, AUTHENTICATION_RESULTS)) this.#authResults.push(field);
    const lower = name.toLowerCase();
    const n = (this.#counts.get(lower) ?? 0) + 1;
    this.#counts.set(lower, n);
    this.#headerBytes += name.length + value.length + 3;
    const { limits } = this.#setup.state.settings;
    if (++this.#headerCount > limits.maxHeaders) this.#exceeded(`more than ${limits.maxHeaders} header fields`);
    if (this.#headerBytes > limits.maxHeaderBytes) this.#exceeded(`header block over ${limits.maxHeaderBytes} bytes`);
    if (this.#overLimit) return;
    if (lower === "from") this.#fromValues.push(unfoldedText(field));
    if (this.#setup.failureReports && this.#verifier) this.#allHeaders.push(field);
    if ((lower === "from" || lower === "sender") && n === 1) {
      const mailbox = parseMailboxList(unfoldedText(field)).mailboxes[0];
      if (mailbox) this.#authors.set(lower, mailbox);
    }
    this.#signHeaders?.push(field);
    this.#verifier?.header(field);
  }

  async endOfHeaders(): Promise<void> {
    if (this.#overLimit) return;
    if (this.#signHeaders) await this.#startSigning(this.#signHeaders);
    await this.#verifier?.endOfHeaders();
  }

  async body(chunk: Buffer): Promise<void> {
    this.#bodyBytes += chunk.length;
    const { limits } = this.#setup.state.settings;
    if (this.#bodyBytes > limits.maxMessageBytes) this.#exceeded(`body over ${limits.maxMessageBytes} bytes`);
    if (this.#overLimit) return;
    this.#signer?.body(this.#crlf.push(chunk));
    this.#verifier?.body(chunk);
  }

  /** Past a limit the message is not examined further (no CPU for it); the end decides what it gets. */
  #exceeded(why: string): void {
    if (this.#overLimit) return;
    this.#overLimit = why;
    this.#verifier?.abort();
    this.#signer = undefined;
  }

  abort(): void {
    this.#verifier?.abort();
  }

  async endOfMessage(): Promise<MessageOutcome> {
    const outcome = await this.#end();
    const metrics = this.#setup.metrics;
    if (metrics) {
      metrics.actions.inc({ action: outcome.quarantine ? "quarantine" : outcome.decision.kind });
      metrics.messageSeconds.observe((Date.now() - this.#started) / 1000);
      for (const m of outcome.modifications) {
        if (m.kind === "insheader" && m.name === "DKIM-Signature") metrics.signatures.inc({ algorithm: /a=([a-z0-9-]+)/.exec(String(m.value))?.[1] ?? "unknown" });
      }
    }
    return outcome;
  }

  async #end(): Promise<MessageOutcome> {
    const { state, context, client, clientClass, logger } = this.#setup;
    const { settings } = state;
    const qid = context.macros.get("i") ?? "NOQUEUE";
    const log = logger.child({ qid });
    const why = settings.logWhy ? log.info.bind(log) : log.debug.bind(log);
    const success = settings.logSuccess ? log.info.bind(log) : log.debug.bind(log);
    const who = `${client.hostname} [${client.address}]`;
    const modifications: Modification[] = [];
    if (settings.softwareHeader) {
      modifications.push({ kind: "insheader", index: 1, name: SOFTWARE_HEADER, value: `authmilter ${settings.version} ${settings.hostname} ${qid}` });
    }
    if (this.#overLimit) log.warn({ limit: this.#overLimit }, `${qid}: ${this.#overLimit}; not examined further`);

    if (clientClass.kind !== "external") {
      why({ client: who }, `${qid}: ${clientClass.kind === "internal" ? clientClass.why : `authenticated as ${clientClass.user}`}`);
    } else {
      why({ client: who }, `${qid}: ${who} not internal`);
      why(`${qid}: not authenticated`);
      await this.#warnIfClaimingOurDomain(log, qid, who);
    }
    await this.#sign(modifications, qid, success, why);
    if (!this.#verifier) {
      // Ours, or verification off: over a limit it still gets the security-concern action.
      const verdict = this.#overLimit ? decide({ findings: NO_FINDINGS, hostExempt: false, securityConcern: this.#overLimit }, settings.dmarc, settings.actions, settings.random) : undefined;
      if (verdict?.why) log.warn(`${qid}: ${verdict.why}`);
      return { modifications, decision: verdict?.decision ?? { kind: "continue" }, ...(verdict?.quarantine ? { quarantine: verdict.quarantine } : {}) };
    }

    const plan = planAuthenticationResults(this.#authResults, settings.authservId, settings.trustedAuthservIds);
    // Postfix unlinks a deleted header, shifting later ones: delete from the last up (§8).
    for (const position of [...plan.forged].reverse()) {
      log.info({ position }, `${qid}: removed an ${AUTHENTICATION_RESULTS} header that claims our authserv-id`);
      modifications.push({ kind: "chgheader", index: position, name: AUTHENTICATION_RESULTS, value: "" });
    }
    const hostExempt = matchesHost(settings.dmarcIgnoreHosts, client.address || undefined, client.hostname);
    if (this.#overLimit) {
      const verdict = decide({ findings: NO_FINDINGS, hostExempt, securityConcern: this.#overLimit }, settings.dmarc, settings.actions, settings.random);
      if (verdict.why) log.warn(`${qid}: ${verdict.why}`);
      return { modifications, decision: verdict.decision, ...(verdict.quarantine ? { quarantine: verdict.quarantine } : {}) };
    }

    const verification = await this.#withDeadline(this.#verifier.finish(plan.trusted));
    if (verification === "timeout") {
      const why = `verification took longer than ${settings.limits.messageTimeoutMs} ms`;
      const verdict = decide({ findings: NO_FINDINGS, hostExempt, timedOut: why }, settings.dmarc, settings.actions, settings.random);
      log.warn(`${qid}: ${verdict.why ?? why}`);
      return { modifications, decision: verdict.decision, ...(verdict.quarantine ? { quarantine: verdict.quarantine } : {}) };
    }
    for (const line of describeVerification(verification)) (line.fields["result"] === "pass" ? success : log.info.bind(log))(line.fields, `${qid}: ${line.text}`);
    this.#countResults(verification.findings);
    if (verification.skippedSignatures > 0) {
      log.warn(`${qid}: ${verification.skippedSignatures} DKIM signature(s) beyond limits.maxSignatures not verified`);
    }
    const rule = settings.requiredHeaders ? brokenHeaderRule({ counts: this.#counts, fromValues: this.#fromValues }) : undefined;
    const verdict = decide(
      { findings: verification.findings, ...(verification.dmarcPolicy ? { dmarcPolicy: verification.dmarcPolicy } : {}), hostExempt, ...(rule ? { brokenHeaderRule: rule } : {}) },
      settings.dmarc,
      settings.actions,
      settings.random,
    );
    const dmarc = verification.findings.dmarc;
    const findings = dmarc ? { ...verification.findings, dmarc: { ...dmarc, disposition: verdict.disposition } } : verification.findings;
    if (dmarc && verdict.disposition !== "none") log.info({ disposition: verdict.disposition }, `${qid}: DMARC ${dmarc.headerFrom ?? "-"} disposition ${verdict.disposition}`);
    if (verdict.why) log.warn({ decision: verdict.decision.kind }, `${qid}: ${verdict.why}`);
    const row = this.#setup.history && historyRecordOf(verification, { queueId: qid, sourceIp: client.address, sender: this.#setup.sender, disposition: verdict.disposition });
    if (row) this.#setup.history!.record(row);
    void this.#setup.failureReports?.consider({
      queueId: qid,
      authservId: settings.authservId,
      sourceIp: client.address,
      sender: this.#setup.sender,
      headers: this.#allHeaders,
      findings,
      dmarcRecord: verification.dmarcRecord,
      disposition: verdict.disposition,
    });
    // Inserted last at index 1, so it lands on top, above the software header.
    modifications.push({ kind: "insheader", index: 1, name: AUTHENTICATION_RESULTS, value: formatAuthenticationResults(settings.authservId, findings) });
    return { modifications, decision: verdict.decision, ...(verdict.quarantine ? { quarantine: verdict.quarantine } : {}) };
  }

  #countResults(findings: Findings): void {
    const results = this.#setup.metrics?.results;
    if (!results) return;
    for (const d of findings.dkim) results.inc({ method: "dkim", result: d.result });
    for (const s of findings.spf) results.inc({ method: `spf-${s.identity}`, result: s.result });
    if (findings.dmarc) results.inc({ method: "dmarc", result: findings.dmarc.result });
    if (findings.arc) results.inc({ method: "arc", result: findings.arc.result });
  }

  async #sign(modifications: Modification[], qid: string, success: LogFn, why: LogFn): Promise<void> {
    if (this.#overLimit) return;
    // A message without headers or body never saw end of headers.
    if (this.#signHeaders && !this.#signer && this.#notSignedWhy === undefined) await this.#startSigning(this.#signHeaders);
    if (this.#signer) {
      // Inserted at index 1 like opendkim; each insert lands above the one before (§8).
      for (const signature of await this.#signer.finish()) {
        modifications.push({ kind: "insheader", index: 1, name: signature.name, value: signature.value });
        success({ domain: signature.domain, selector: signature.selector }, `${qid}: DKIM-Signature field added (s=${signature.selector}, d=${signature.domain})`);
      }
    } else if (this.#notSignedWhy) {
      why(`${qid}: not signed: ${this.#notSignedWhy}`);
    }
  }

  /** The message's own deadline, counted from MAIL FROM: slow DNS ends in the DNS-error action. */
  async #withDeadline<T>(work: Promise<T>): Promise<T | "timeout"> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), Math.max(0, this.#deadline - Date.now()));
    });
    try {
      const result = await Promise.race([work, timeout]);
      if (result === "timeout") this.#verifier?.abort();
      return result;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The author decides the key; without one, or without a key for it, the message goes unsigned. */
  async #startSigning(headers: readonly HeaderField[]): Promise<void> {
    const { state, sender } = this.#setup;
    const source = state.settings.author;
    const author = source === "mailfrom" ? sender || undefined : source === "sender" ? (this.#authors.get("sender") ?? this.#authors.get("from")) : this.#authors.get("from");
    if (!author) {
      this.#notSignedWhy = source === "mailfrom" ? "null sender" : "no author address in From";
      return;
    }
    const keys = await state.signing.keysFor(author);
    if (keys.length === 0) {
      this.#notSignedWhy = `no signing key for ${author.slice(author.lastIndexOf("@") + 1)}`;
      return;
    }
    this.#signer = new MessageSigner(keys, state.settings.signOptions);
    for (const h of headers) this.#signer.header(h.name, h.value);
  }

  /** opendkim's "external host ... tried to send mail as ...", silenced by externalIgnoreList. */
  async #warnIfClaimingOurDomain(log: Logger, qid: string, who: string): Promise<void> {
    const { state, client } = this.#setup;
    const from = this.#authors.get("from");
    if (!from || !state.settings.sign) return;
    if (matchesHost(state.settings.externalIgnoreList, client.address || undefined, client.hostname)) return;
    if ((await state.signing.keysFor(from)).length > 0) {
      log.warn({ client: who, author: from }, `${qid}: external host ${who} tried to send mail as ${from.slice(from.lastIndexOf("@") + 1)}`);
    }
  }
}
