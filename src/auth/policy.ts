// What to do with a message once it is verified: DMARC enforcement, RequiredHeaders, and the
// failure actions opendkim calls On-DNSError, On-BadSignature, On-NoSignature, On-Security.

import type { FinalDecision } from "../milter/handler.ts";
import type { Disposition, Findings } from "./results.ts";

export type Action = "accept" | "tempfail" | "reject" | "quarantine";

export interface FailureActions {
  readonly dnsError: Action;
  readonly internalError: Action;
  readonly badSignature: Action;
  readonly noSignature: Action;
  readonly securityConcern: Action;
}

export interface DmarcEnforcement {
  /** Off: report only (opendmarc's RejectFailures false). */
  readonly enforce: boolean;
  /** p=quarantine failures: Postfix's hold queue, or only dis=quarantine in the header. */
  readonly quarantine: "hold" | "mark";
  /** Author domains never enforced (opendmarc IgnoreDomains). */
  readonly ignoreDomains: readonly string[];
}

export interface PolicyInput {
  readonly findings: Findings;
  /** The policy mailauth applied (p, sp or np, after RFC 9989 t=y), and the record's pct=. */
  readonly dmarcPolicy?: { readonly applied?: string; readonly pct?: number };
  /** The client is in IgnoreHosts. */
  readonly hostExempt: boolean;
  readonly brokenHeaderRule?: string;
  readonly securityConcern?: string;
  readonly timedOut?: string;
}

export interface Verdict {
  readonly decision: FinalDecision;
  readonly quarantine?: string;
  readonly disposition: Disposition;
  /** Why, for the log; undefined when the message simply goes on. */
  readonly why?: string;
}

const GO_ON: FinalDecision = { kind: "continue" };

export function decide(input: PolicyInput, dmarc: DmarcEnforcement, actions: FailureActions, random: () => number): Verdict {
  if (input.timedOut) return apply(actions.dnsError, input.timedOut, "none");
  if (input.securityConcern) return apply(actions.securityConcern, input.securityConcern, "none");
  if (input.brokenHeaderRule) return { ...reject(input.brokenHeaderRule), disposition: "none", why: `RequiredHeaders: ${input.brokenHeaderRule}` };

  const disposition = dmarcDisposition(input, dmarc, random);
  const from = input.findings.dmarc?.headerFrom ?? "the author domain";
  if (disposition === "reject") {
    return { ...reject(`rejected by the DMARC policy of ${from}`), disposition, why: `DMARC policy of ${from}: reject` };
  }
  if (disposition === "quarantine" && dmarc.quarantine === "hold") {
    return { decision: GO_ON, quarantine: `DMARC policy of ${from}`, disposition, why: `DMARC policy of ${from}: quarantine (held)` };
  }

  const { dkim, spf } = input.findings;
  const dmarcResult = input.findings.dmarc?.result;
  // A DNS failure matters when the verdict hangs on it: DMARC itself, or a DMARC that did not pass.
  const dnsFailed =
    dmarcResult === "temperror" ||
    (dmarcResult !== "pass" && (dkim.some((d) => d.result === "temperror") || spf.some((s) => s.result === "temperror")));
  if (dnsFailed) return apply(actions.dnsError, "a DNS lookup failed", disposition);
  if (dkim.some((d) => d.result === "fail") && !dkim.some((d) => d.result === "pass")) {
    return apply(actions.badSignature, "DKIM signature did not verify", disposition);
  }
  if (dkim.length === 0 || dkim.every((d) => d.result === "none")) return apply(actions.noSignature, "no DKIM signature", disposition);
  return { decision: GO_ON, disposition };
}

/** The disposition DMARC asks for, after sampling and exemptions; "none" unless enforced. */
function dmarcDisposition(input: PolicyInput, dmarc: DmarcEnforcement, random: () => number): Disposition {
  const finding = input.findings.dmarc;
  if (!dmarc.enforce || finding?.result !== "fail" || input.hostExempt) return "none";
  const from = (finding.headerFrom ?? "").toLowerCase();
  if (dmarc.ignoreDomains.some((d) => d.toLowerCase() === from)) return "none";
  let policy = input.dmarcPolicy?.applied;
  if (policy !== "reject" && policy !== "quarantine") return "none";
  // RFC 7489 §6.6.4: a message outside the pct= sample gets the next weaker policy.
  const pct = input.dmarcPolicy?.pct;
  if (pct !== undefined && pct < 100 && random() * 100 >= pct) policy = policy === "reject" ? "quarantine" : "none";
  return policy as Disposition;
}

function apply(action: Action, why: string, disposition: Disposition): Verdict {
  switch (action) {
    case "accept":
      return { decision: GO_ON, disposition };
    case "quarantine":
      return { decision: GO_ON, quarantine: why, disposition, why: `${why}: held` };
    case "reject":
      return { ...reject(why), disposition, why: `${why}: rejected` };
    case "tempfail":
      return {
        decision: { kind: "replycode", code: "451", status: "4.7.1", text: `authmilter: ${why}; try again later` },
        disposition,
        why: `${why}: tempfail`,
      };
  }
}

function reject(why: string): { decision: FinalDecision } {
  return { decision: { kind: "replycode", code: "550", status: "5.7.1", text: why } };
}

/** The same actions as milter decisions, for failures outside verification (handler errors). */
export function actionDecision(action: Action): FinalDecision {
  return action === "accept" || action === "quarantine" ? GO_ON : { kind: action };
}
