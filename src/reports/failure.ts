// Failure reports about single messages, off by default:
// - DMARC failure reports (RFC 7489 §7.3, format RFC 6591) to the ruf= addresses of the policy
//   domain's record, when its fo= asks for one;
// - DKIM failure reports (RFC 6651) for a failed signature that carries r=y, to the address the
//   signing domain publishes at _report._domainkey.<d> (ra=, with rp= and rr=).
//
// `FailureReporter.consider()` is what the daemon calls for each verified message. It decides
// at once (no I/O) whether a report is due, takes it from the reported domain's hourly budget,
// and does the rest (DNS, building, sending) in the background. It never throws, and the
// message never waits for it.

import type { Logger } from "pino";
import { isNoRecord } from "../dns/index.ts";
import type { HeaderField } from "../auth/header-field.ts";
import { publishedPolicy } from "../auth/history.ts";
import { formatAuthenticationResults, type DkimFinding, type Disposition, type Findings, type SpfFinding } from "../auth/results.ts";
import { VERSION } from "../version.ts";
import { resolveDestinations, type DestinationResolver, type ReportDestination } from "./destination.ts";
import { buildAfrfMessage, type AfrfMessage, type AuthFailureType } from "./failure-format.ts";
import { isPlainAddress, type Mailer } from "./mailer.ts";

/** What the verifier knows about one message. */
export interface FailureReportInput {
  /** Postfix queue id: Original-Envelope-Id, and the key of our log lines. */
  readonly queueId: string;
  /** Our authserv-id, for the report's Authentication-Results. */
  readonly authservId: string;
  /** The SMTP client's address: Source-IP. */
  readonly sourceIp: string;
  /** MAIL FROM without angle brackets; "" for the null sender. */
  readonly sender: string;
  /** The header fields as the milter received them (value: the bytes after the colon). */
  readonly headers: readonly HeaderField[];
  /** `verification.findings`. */
  readonly findings: Findings;
  /** `verification.dmarcRecord`: the record that applied (its fo= and ruf=) and what aligned. */
  readonly dmarcRecord?:
    | {
        readonly policyDomain: string;
        readonly record: string;
        readonly dkimAligned: boolean;
        readonly spfAligned: boolean;
      }
    | undefined;
  /** What was done with the message (Delivery-Result). */
  readonly disposition: Disposition;
  /** Default: when consider() was called. */
  readonly arrivalDate?: Date;
}

/** Addressing and identity of one report message. */
export interface ReportEnvelope {
  readonly from: string;
  readonly to: string;
  /** Our host name: Reporting-MTA. */
  readonly reportingMta: string;
  readonly userAgent?: string;
  readonly date?: Date;
  readonly messageId?: string;
}

const USER_AGENT = `authmilter/${VERSION}`;

// ---------------------------------------------------------------------------------------------
// Decisions: pure functions of the input

/** A message that is itself a report (or an auto-reply to one) gets none: no report loops. */
export function isReportMessage(headers: readonly HeaderField[]): boolean {
  for (const h of headers) {
    const name = h.name.toLowerCase();
    const value = h.value.toString("latin1").toLowerCase();
    if (name === "content-type" && /multipart\/report/.test(value) && /report-type\s*=\s*"?feedback-report/.test(value)) return true;
    if (name === "auto-submitted" && /^\s*auto-(?:generated|replied)/.test(value)) return true;
  }
  return false;
}

/** fo= options (RFC 7489 §6.3): colon-separated, default "0"; unknown ones are ignored. */
export function failureOptions(fo: string | undefined): Set<"0" | "1" | "d" | "s"> {
  const out = new Set<"0" | "1" | "d" | "s">();
  for (const raw of (fo ?? "0").split(":")) {
    const o = raw.trim().toLowerCase();
    if (o === "0" || o === "1" || o === "d" || o === "s") out.add(o);
  }
  if (out.size === 0) out.add("0");
  return out;
}

/** A DKIM result that is a failed evaluation (not a pass, not "no signature", not our DNS trouble). */
function dkimFailed(d: DkimFinding): boolean {
  return (d.result === "fail" || d.result === "permerror") && d.domain !== undefined && d.domain !== "";
}

/** The SPF result DMARC looks at: MAIL FROM's, or HELO's for the null sender. */
function spfResult(spf: readonly SpfFinding[]): SpfFinding | undefined {
  return spf.find((s) => s.identity === "mailfrom") ?? spf.find((s) => s.identity === "helo");
}

function spfFailed(spf: readonly SpfFinding[]): boolean {
  const r = spfResult(spf)?.result;
  return r === "fail" || r === "softfail" || r === "permerror";
}

export interface DmarcFailureTrigger {
  /** The domain whose record asked (ruf= and fo= come from it; the rate limit is its). */
  readonly policyDomain: string;
  /** RFC5322.From domain: Reported-Domain. */
  readonly reportedDomain: string;
  readonly ruf: readonly string[];
  readonly authFailure: AuthFailureType;
  /** The fo= options that asked for this report. */
  readonly because: readonly string[];
  readonly identityAlignment: readonly ("dkim" | "spf")[];
  /** The failed signature the report names (DKIM fields), if any. */
  readonly dkim?: DkimFinding;
}

/**
 * Whether the DMARC record asks for a failure report about this message (RFC 7489 §6.3 fo=):
 * 0: neither DKIM nor SPF produced an aligned pass; 1: one of them did not; d: a DKIM
 * signature failed evaluation, aligned or not; s: SPF failed, aligned or not.
 * Undefined when no report is due (no record, no ruf=, or fo= not met).
 */
export function dmarcFailureTrigger(input: FailureReportInput): DmarcFailureTrigger | undefined {
  const rec = input.dmarcRecord;
  if (rec === undefined) return undefined;
  const policy = publishedPolicy(rec.policyDomain, rec.record);
  if (policy === undefined || policy.ruf.length === 0) return undefined;
  const fo = failureOptions(policy.fo);
  const because: string[] = [];
  if (fo.has("0") && !rec.dkimAligned && !rec.spfAligned) because.push("0");
  if (fo.has("1") && (!rec.dkimAligned || !rec.spfAligned)) because.push("1");
  const failedSignature = input.findings.dkim.find(dkimFailed);
  if (fo.has("d") && failedSignature !== undefined) because.push("d");
  if (fo.has("s") && spfFailed(input.findings.spf)) because.push("s");
  if (because.length === 0) return undefined;
  const authFailure: AuthFailureType =
    because.includes("0") || because.includes("1") ? "dmarc" : because.includes("d") ? dkimFailureType(failedSignature!) : "spf";
  return {
    policyDomain: rec.policyDomain.toLowerCase(),
    reportedDomain: (input.findings.dmarc?.headerFrom ?? rec.policyDomain).toLowerCase(),
    ruf: policy.ruf,
    authFailure,
    because,
    identityAlignment: [...(rec.dkimAligned ? ["dkim" as const] : []), ...(rec.spfAligned ? ["spf" as const] : [])],
    ...(failedSignature !== undefined && authFailure !== "spf" ? { dkim: failedSignature } : {}),
  };
}

/** RFC 6591's DKIM failure types, from the verifier's reason. */
export function dkimFailureType(d: DkimFinding): "signature" | "bodyhash" | "revoked" {
  const reason = d.reason ?? "";
  if (/body hash/i.test(reason)) return "bodyhash";
  if (/revoked/i.test(reason)) return "revoked";
  return "signature";
}

/** RFC 6651 §3.3 rr= token for a failure: d(ns), o(ther), p(olicy), s(ignature), v(erification), x (expired). */
export function dkimFailureClass(d: DkimFinding): "d" | "o" | "p" | "s" | "v" | "x" {
  const reason = (d.reason ?? "").toLowerCase();
  if (d.result === "policy") return "p";
  if (/body hash|bad signature/.test(reason)) return "v";
  if (/expir/.test(reason)) return "x";
  if (/^(?:no key|unknown key|invalid public key|inappropriate|key not for email|domain mismatch)/.test(reason)) return "d";
  if (d.result === "permerror") return "s";
  return "o";
}

/** Tag-list (RFC 6376 §3.2) of a DKIM-Signature or report record: lower-case names, trimmed values. */
export function parseTagList(text: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of text.split(";")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim().toLowerCase();
    if (!tags.has(name)) tags.set(name, part.slice(eq + 1).trim());
  }
  return tags;
}

export interface DkimReportCandidate {
  readonly finding: DkimFinding;
  /** d= of the signature, lower case. */
  readonly domain: string;
  readonly selector?: string;
  readonly identity?: string;
  readonly failureClass: ReturnType<typeof dkimFailureClass>;
}

/**
 * Failed signatures whose DKIM-Signature field carries r=y (RFC 6651 §3.1), matched to the
 * header field by d=, s= and the start of b=.
 */
export function dkimReportCandidates(input: FailureReportInput): DkimReportCandidate[] {
  const signatures = input.headers
    .filter((h) => h.name.toLowerCase() === "dkim-signature")
    .map((h) => parseTagList(h.value.toString("latin1")));
  const out: DkimReportCandidate[] = [];
  for (const finding of input.findings.dkim) {
    if (!dkimFailed(finding) && finding.result !== "policy") continue;
    const domain = finding.domain?.toLowerCase();
    if (domain === undefined || domain === "") continue;
    const tags = signatures.find(
      (t) =>
        (t.get("d") ?? "").toLowerCase() === domain &&
        (finding.selector === undefined || t.get("s") === finding.selector) &&
        (finding.signaturePrefix === undefined || (t.get("b") ?? "").replace(/\s+/g, "").startsWith(finding.signaturePrefix)),
    );
    if (tags === undefined || tags.get("r")?.toLowerCase() !== "y") continue;
    const selector = finding.selector ?? tags.get("s");
    const identity = finding.identity ?? tags.get("i");
    out.push({ finding, domain, ...(selector ? { selector } : {}), ...(identity ? { identity } : {}), failureClass: dkimFailureClass(finding) });
  }
  return out;
}

export interface DkimReportRecord {
  /** ra=, decoded: the local part of the reporting address at the d= domain. */
  readonly ra: string;
  /** rp=: percentage of failures to report. */
  readonly rp: number;
  /** rr=: the failure classes to report ("all" expanded). */
  readonly rr: ReadonlySet<string>;
}

/** The TXT record at _report._domainkey.<d> (RFC 6651 §3.3); undefined without a usable ra=. */
export function parseDkimReportRecord(txt: string): DkimReportRecord | undefined {
  const tags = parseTagList(txt);
  const raw = tags.get("ra");
  if (raw === undefined || raw === "") return undefined;
  // dkim-quoted-printable (RFC 6376 §2.11)
  const ra = raw.replace(/\s+/g, "").replace(/=([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
  const rpText = tags.get("rp");
  const rpNumber = rpText !== undefined && /^[0-9]{1,3}$/.test(rpText) ? Number(rpText) : 100;
  const tokens = (tags.get("rr") ?? "all").split(":").map((t) => t.trim().toLowerCase());
  const rr = new Set(tokens.includes("all") ? ["d", "o", "p", "s", "u", "v", "x"] : tokens);
  return { ra, rp: Math.min(100, rpNumber), rr };
}

// ---------------------------------------------------------------------------------------------
// Building

function explanation(kind: string, input: FailureReportInput, extra: string): string {
  return (
    `This is an authentication failure report (RFC 6591) about a message received\n` +
    `from ${input.sourceIp} (queue id ${input.queueId}): ${kind}.\n${extra}` +
    `The original message's header section is attached; its body is not.\n`
  );
}

/**
 * What a report says about its failure. afrfMessage() adds the rest, the same for every report:
 * the envelope's fields and the message's.
 */
type FailureSpecific = Pick<AfrfMessage, "subject" | "explanation" | "authFailure" | "reportedDomain" | "identityAlignment" | "dkim">;

function afrfMessage(input: FailureReportInput, envelope: ReportEnvelope, report: FailureSpecific): Buffer {
  return buildAfrfMessage({
    ...report,
    from: envelope.from,
    to: envelope.to,
    date: envelope.date ?? new Date(),
    ...(envelope.messageId ? { messageId: envelope.messageId } : {}),
    userAgent: envelope.userAgent ?? USER_AGENT,
    reportingMta: envelope.reportingMta,
    authenticationResults: formatAuthenticationResults(input.authservId, input.findings),
    queueId: input.queueId,
    sender: input.sender,
    sourceIp: input.sourceIp,
    arrivalDate: input.arrivalDate ?? new Date(),
    disposition: input.disposition,
    headers: input.headers,
  });
}

/**
 * The DMARC failure report about one message for one ruf address, as a complete RFC 5322
 * message; undefined when the record's fo= (and ruf=) ask for none.
 */
export function buildDmarcFailureReport(input: FailureReportInput, envelope: ReportEnvelope): Buffer | undefined {
  const trigger = dmarcFailureTrigger(input);
  if (trigger === undefined) return undefined;
  return dmarcReportMessage(input, trigger, envelope);
}

function dmarcReportMessage(input: FailureReportInput, trigger: DmarcFailureTrigger, envelope: ReportEnvelope): Buffer {
  const d = trigger.dkim;
  return afrfMessage(input, envelope, {
    subject: `DMARC failure report for ${trigger.reportedDomain}: mail from ${input.sourceIp}`,
    explanation: explanation(
      `DMARC for ${trigger.reportedDomain} (policy of ${trigger.policyDomain})`,
      input,
      `Reported because of fo=${trigger.because.join(":")} in the DMARC record.\n`,
    ),
    authFailure: trigger.authFailure,
    reportedDomain: trigger.reportedDomain,
    identityAlignment: trigger.identityAlignment,
    ...(d?.domain
      ? { dkim: { domain: d.domain, ...(d.identity ? { identity: d.identity } : {}), ...(d.selector ? { selector: d.selector } : {}) } }
      : {}),
  });
}

/** The RFC 6651 report about one failed signature (Auth-Failure: signature, bodyhash or revoked). */
export function buildDkimFailureReport(input: FailureReportInput, candidate: DkimReportCandidate, envelope: ReportEnvelope): Buffer {
  const sel = candidate.selector ? ` s=${candidate.selector}` : "";
  return afrfMessage(input, envelope, {
    subject: `DKIM failure report for ${candidate.domain}${sel}: mail from ${input.sourceIp}`,
    explanation: explanation(
      `the DKIM signature d=${candidate.domain}${sel} did not verify (${candidate.finding.result}${candidate.finding.reason ? `: ${candidate.finding.reason}` : ""})`,
      input,
      "The signature asked for failure reports (r=y).\n",
    ),
    authFailure: dkimFailureType(candidate.finding),
    reportedDomain: candidate.domain,
    dkim: {
      domain: candidate.domain,
      ...(candidate.identity ? { identity: candidate.identity } : {}),
      ...(candidate.selector ? { selector: candidate.selector } : {}),
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Rate limiting

/** At most `limit` events per key in any window of `windowMs` (sliding). */
export class RateLimiter {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #events = new Map<string, number[]>();

  constructor(limit: number, windowMs: number, maxKeys = 10_000) {
    this.#limit = limit;
    this.#windowMs = windowMs;
    this.#maxKeys = maxKeys;
  }

  /** Counts an event for the key if it is within the limit; false (and not counted) if not. */
  take(key: string, now: number): boolean {
    const since = now - this.#windowMs;
    let times = this.#events.get(key);
    if (times === undefined) {
      if (this.#events.size >= this.#maxKeys) this.#prune(since);
      // Still full: every key is busy. Refuse rather than grow without bound.
      if (this.#events.size >= this.#maxKeys) return false;
      times = [];
      this.#events.set(key, times);
    }
    while (times.length > 0 && times[0]! <= since) times.shift();
    if (times.length >= this.#limit) return false;
    times.push(now);
    return true;
  }

  #prune(since: number): void {
    for (const [key, times] of this.#events) {
      if (times.length === 0 || times[times.length - 1]! <= since) this.#events.delete(key);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The reporter

export interface FailureReporterOptions {
  readonly logger: Logger;
  /** How reports leave: smtpMailer(...) or sendmailMailer(...). */
  readonly mailer: Mailer;
  /** For the external destination check (ruf=) and _report._domainkey lookups. */
  readonly resolver: DestinationResolver;
  /** From: and envelope sender of every report. */
  readonly from: string;
  /** Our host name, for Reporting-MTA. */
  readonly reportingMta: string;
  /** DMARC failure reports to ruf= (RFC 7489 §7.3). Default false. */
  readonly dmarc?: boolean;
  /** DKIM failure reports to r=y signers (RFC 6651). Default false. */
  readonly dkim?: boolean;
  /** Reports per reported domain in any hour; default 10. */
  readonly perDomainPerHour?: number;
  /** Reports being looked up or sent at once; default 4. */
  readonly maxConcurrent?: number;
  /** Reports waiting for a slot; beyond this, new ones are dropped. Default 100. */
  readonly maxQueued?: number;
  /** Milliseconds, for the rate limit; default Date.now. */
  readonly now?: () => number;
  /** [0, 1), for rp= sampling; default Math.random. */
  readonly random?: () => number;
  readonly userAgent?: string;
}

export const FAILURE_REPORT_DEFAULTS = { perDomainPerHour: 10, maxConcurrent: 4, maxQueued: 100 } as const;

export interface FailureReporterStats {
  /** Report messages the mailer accepted. */
  sent: number;
  /** Report messages the mailer failed to send. */
  failed: number;
  /** Reports not made because the domain's hourly budget was spent. */
  rateLimited: number;
  /** Reports dropped because too many were waiting. */
  dropped: number;
  /** Destinations not used: not authorized, bad URI, size limit, rr=/rp=, no record. */
  skipped: number;
}

type Job = () => Promise<void>;

export class FailureReporter {
  readonly #o: FailureReporterOptions;
  readonly #limiter: RateLimiter;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #maxConcurrent: number;
  readonly #maxQueued: number;
  readonly #queue: Array<{ job: Job; done: () => void }> = [];
  #active = 0;
  #idle: Array<() => void> = [];
  #closed = false;
  readonly stats: FailureReporterStats = { sent: 0, failed: 0, rateLimited: 0, dropped: 0, skipped: 0 };

  constructor(options: FailureReporterOptions) {
    if (!isPlainAddress(options.from)) throw new RangeError(`report sender ${JSON.stringify(options.from)} is not a plain mailbox address`);
    this.#o = options;
    this.#limiter = new RateLimiter(options.perDomainPerHour ?? FAILURE_REPORT_DEFAULTS.perDomainPerHour, 3_600_000);
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#maxConcurrent = options.maxConcurrent ?? FAILURE_REPORT_DEFAULTS.maxConcurrent;
    this.#maxQueued = options.maxQueued ?? FAILURE_REPORT_DEFAULTS.maxQueued;
  }

  get enabled(): boolean {
    return this.#o.dmarc === true || this.#o.dkim === true;
  }

  /**
   * Looks at one verified message and sends whatever failure reports are due. Decides
   * synchronously; the returned promise settles when the reports are sent (or given up) and
   * never rejects. The message path should not await it: `void reporter.consider(input)`.
   */
  consider(input: FailureReportInput): Promise<void> {
    try {
      if (this.#closed || !this.enabled) return Promise.resolve();
      const jobs = this.#plan(input);
      if (jobs.length === 0) return Promise.resolve();
      return Promise.all(jobs.map((job) => this.#schedule(job, input.queueId))).then(() => undefined);
    } catch (err) {
      this.#o.logger.error({ err }, `${input?.queueId ?? "-"}: failure report: internal error; no report`);
      return Promise.resolve();
    }
  }

  /** Stops taking new messages and waits for the reports under way. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#active === 0 && this.#queue.length === 0) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  #plan(input: FailureReportInput): Job[] {
    if (isReportMessage(input.headers)) return [];
    const log = this.#o.logger;
    const qid = input.queueId;
    const jobs: Job[] = [];
    // The report is built later: keep our own copy of what the milter may reuse.
    let snapshot: FailureReportInput | undefined;
    const copy = () =>
      (snapshot ??= { ...input, headers: input.headers.map((h) => ({ name: h.name, value: Buffer.from(h.value) })), arrivalDate: input.arrivalDate ?? new Date() });

    if (this.#o.dmarc === true) {
      const trigger = dmarcFailureTrigger(input);
      if (trigger !== undefined) {
        if (this.#limiter.take(`dmarc:${trigger.policyDomain}`, this.#now())) {
          const msg = copy();
          jobs.push(() => this.#sendDmarc(msg, trigger));
        } else {
          this.stats.rateLimited++;
          log.info({ domain: trigger.policyDomain }, `${qid}: DMARC failure report for ${trigger.policyDomain} not sent: rate limit reached`);
        }
      }
    }
    if (this.#o.dkim === true) {
      for (const candidate of dkimReportCandidates(input)) {
        if (this.#limiter.take(`dkim:${candidate.domain}`, this.#now())) {
          const msg = copy();
          jobs.push(() => this.#sendDkim(msg, candidate));
        } else {
          this.stats.rateLimited++;
          log.info({ domain: candidate.domain }, `${qid}: DKIM failure report for ${candidate.domain} not sent: rate limit reached`);
        }
      }
    }
    return jobs;
  }

  #schedule(job: Job, qid: string): Promise<void> {
    if (this.#active >= this.#maxConcurrent) {
      if (this.#queue.length >= this.#maxQueued) {
        this.stats.dropped++;
        this.#o.logger.warn(`${qid}: failure report dropped: ${this.#queue.length} reports already waiting`);
        return Promise.resolve();
      }
      return new Promise<void>((done) => this.#queue.push({ job, done }));
    }
    return this.#run(job);
  }

  async #run(job: Job): Promise<void> {
    this.#active++;
    try {
      await job();
    } catch (err) {
      this.#o.logger.error({ err }, "failure report: internal error");
    } finally {
      this.#active--;
      const next = this.#queue.shift();
      if (next) void this.#run(next.job).then(next.done);
      else if (this.#active === 0) for (const resolve of this.#idle.splice(0)) resolve();
    }
  }

  async #deliver(qid: string, what: string, dest: ReportDestination, data: Buffer): Promise<void> {
    const log = this.#o.logger;
    if (dest.maxBytes !== undefined && data.length > dest.maxBytes) {
      this.stats.skipped++;
      log.info({ to: dest.address }, `${qid}: ${what} not sent to ${dest.address}: ${data.length} bytes exceed its limit of ${dest.maxBytes}`);
      return;
    }
    try {
      await this.#o.mailer.send({ from: this.#o.from, to: [dest.address], data });
      this.stats.sent++;
      log.info({ to: dest.address, via: this.#o.mailer.description }, `${qid}: ${what} sent to ${dest.address}`);
    } catch (err) {
      this.stats.failed++;
      log.warn({ err, to: dest.address, via: this.#o.mailer.description }, `${qid}: sending the ${what} to ${dest.address} failed: ${(err as Error).message}`);
    }
  }

  async #sendDmarc(input: FailureReportInput, trigger: DmarcFailureTrigger): Promise<void> {
    const log = this.#o.logger;
    const qid = input.queueId;
    const what = `DMARC failure report for ${trigger.reportedDomain}`;
    const decisions = await resolveDestinations(trigger.policyDomain, trigger.ruf, "ruf", this.#o.resolver);
    for (const d of decisions) {
      if (d.outcome !== "send" || d.destination === undefined) {
        this.stats.skipped++;
        log.info({ uri: d.uri }, `${qid}: ${what} not sent to ${d.uri}: ${d.reason}`);
        continue;
      }
      const data = dmarcReportMessage(input, trigger, { from: this.#o.from, to: d.destination.address, reportingMta: this.#o.reportingMta, ...this.#agent() });
      await this.#deliver(qid, what, d.destination, data);
    }
  }

  async #sendDkim(input: FailureReportInput, candidate: DkimReportCandidate): Promise<void> {
    const log = this.#o.logger;
    const qid = input.queueId;
    const what = `DKIM failure report for ${candidate.domain}`;
    const name = `_report._domainkey.${candidate.domain}`;
    let record: DkimReportRecord | undefined;
    try {
      const txt = await this.#o.resolver.resolve(name, "TXT");
      record = txt.map((chunks) => parseDkimReportRecord(chunks.join(""))).find((r) => r !== undefined);
    } catch (err) {
      if (!isNoRecord(err)) {
        this.stats.skipped++;
        log.info({ err }, `${qid}: ${what} not sent: looking up ${name} failed: ${(err as Error).message}`);
        return;
      }
    }
    if (record === undefined) {
      this.stats.skipped++;
      log.info(`${qid}: ${what} not sent: no reporting address (ra=) at ${name}`);
      return;
    }
    if (!record.rr.has(candidate.failureClass)) {
      this.stats.skipped++;
      log.debug(`${qid}: ${what} not sent: rr= does not ask for "${candidate.failureClass}" failures`);
      return;
    }
    if (this.#random() * 100 >= record.rp) {
      this.stats.skipped++;
      log.debug(`${qid}: ${what} not sent: not sampled (rp=${record.rp})`);
      return;
    }
    const address = `${record.ra}@${candidate.domain}`;
    if (!isPlainAddress(address)) {
      this.stats.skipped++;
      log.info(`${qid}: ${what} not sent: ra= of ${name} does not make a plain address`);
      return;
    }
    const data = buildDkimFailureReport(input, candidate, { from: this.#o.from, to: address, reportingMta: this.#o.reportingMta, ...this.#agent() });
    await this.#deliver(qid, what, { uri: `${name} ra=${record.ra}`, address, domain: candidate.domain }, data);
  }

  #agent(): { userAgent?: string } {
    return this.#o.userAgent ? { userAgent: this.#o.userAgent } : {};
  }
}
