// Verifying one incoming message with mailauth's pieces, composed as a milter needs them:
// SPF starts at MAIL FROM, DKIM reads the message as it arrives, ARC and DMARC run at the end.
//
// What is held in memory: the header fields (DKIM needs them to pick the signed ones) and one
// running body hash per distinct (canonicalisation, hash, l=) — not the body.

import { isIP } from "node:net";
import type { DNSResolver } from "mailauth";
import { arc } from "mailauth/lib/arc/index.js";
import { evaluateDmarc } from "mailauth/lib/dmarc/index.js";
import { spf } from "mailauth/lib/spf/index.js";
import type { UpstreamResult } from "./authres.ts";
import { DkimVerification } from "./dkim-verifier.ts";
import { wireForm, type HeaderField } from "./header-field.ts";
import type { ArcFinding, DkimFinding, DkimResult, DmarcFinding, Findings, SpfFinding, SpfResult } from "./results.ts";

export interface VerifyOptions {
  readonly resolver: DNSResolver;
  /** Our name, used in SPF's explanations. */
  readonly authservId: string;
  readonly clientAddress: string;
  readonly helo: string;
  /** MAIL FROM without angle brackets; "" for the null sender. */
  readonly sender: string;
  readonly spfSelfValidate: boolean;
  readonly spfIgnoreResults: boolean;
  /** DKIM signatures verified; later ones are not shown to the verifier at all. */
  readonly maxSignatures: number;
}

export interface Verification {
  readonly findings: Findings;
  /** Our own SPF checks (MAIL FROM and HELO identities), for the log. */
  readonly spfChecks: readonly SpfFinding[];
  /** Where the SPF result DMARC used came from. */
  readonly spfSource: "self" | "trusted" | "none";
  readonly dmarcPolicy?: {
    readonly p?: string;
    /** The policy mailauth applied: p, sp or np, weakened by t=y (RFC 9989). */
    readonly applied?: string;
    /** RFC 7489 pct=, which RFC 9989 dropped and mailauth no longer applies. */
    readonly pct?: number;
  };
  /** Signatures beyond maxSignatures, not verified. */
  readonly skippedSignatures: number;
  /** The DMARC record that applied and what aligned, for the history store's reports. */
  readonly dmarcRecord?: {
    readonly policyDomain: string;
    readonly record: string;
    readonly dkimAligned: boolean;
    readonly spfAligned: boolean;
  };
}

// mailauth reports problems with the key record as "neutral"; RFC 6376 §6.1.2 calls them
// PERMFAIL, which RFC 8601 reports as permerror (what opendkim and the issue expect).
const KEY_PROBLEMS = new Set([
  "no key",
  "unknown key version",
  "unknown key type",
  "invalid public key",
  "inappropriate hash algorithm",
  "key not for email",
  "inappropriate key algorithm",
  "domain mismatch",
]);

interface MailauthSpf {
  domain?: string;
  status: { result: string; smtp?: { mailfrom?: string; helo?: string } };
}

export class MessageVerifier {
  readonly #opts: VerifyOptions;
  readonly #dkim: DkimVerification;
  readonly #spf: Promise<SpfFinding[]>;

  constructor(options: VerifyOptions) {
    this.#opts = options;
    this.#dkim = new DkimVerification(options.resolver);
    this.#spf = options.spfSelfValidate ? this.#checkSpf() : Promise.resolve([]);
    // Awaited in finish(); until then a rejection must not count as unhandled.
    this.#spf.catch(() => {});
  }

  #signatures = 0;

  header(field: HeaderField): void {
    // Every signature seen is verified (200 on 1 MB cost > 1 s): only the first few are shown.
    if (field.name.toLowerCase() === "dkim-signature" && ++this.#signatures > this.#opts.maxSignatures) return;
    this.#dkim.header(wireForm(field));
  }

  endOfHeaders(): Promise<void> {
    return this.#dkim.endOfHeaders();
  }

  body(chunk: Buffer): void {
    this.#dkim.body(chunk);
  }

  /** Stops hashing: the message will not be judged. */
  abort(): void {
    this.#dkim.abort();
  }

  async finish(trusted: readonly UpstreamResult[]): Promise<Verification> {
    const [dkimResult, spfChecks] = await Promise.all([this.#dkim.finish(), this.#spf]);
    const dkimRows = dkimResult.results as MailauthDkimRow[];
    const dkim = dkimRows.map(dkimFinding);

    const upstreamSpf = this.#opts.spfIgnoreResults ? undefined : trustedSpf(trusted);
    const spfForDmarc = upstreamSpf ?? spfChecks[0];
    const spfSource = upstreamSpf ? "trusted" : spfChecks[0] ? "self" : "none";

    // mailauth's typings call the chain optional; its own authenticate() passes it as it is.
    const arcResult = await arc(dkimResult.arc as Parameters<typeof arc>[0], { resolver: this.#opts.resolver, strict: true, ip: this.#opts.clientAddress });
    const arcFinding: ArcFinding = { result: arcStatus(arcResult?.status?.result) };

    const dkimPassDomains = [
      ...dkimRows
        .filter((r) => r.status?.result === "pass" && r.signingDomain)
        .map((r) => ({ id: r.id, domain: r.signingDomain!, aligned: r.status.aligned, underSized: r.status.underSized })),
      ...trusted.filter((r) => r.method === "dkim" && r.result === "pass" && r.properties.get("header.d")).map((r) => ({ domain: r.properties.get("header.d")! })),
    ];
    let dmarc: DmarcFinding | undefined;
    let dmarcPolicy: Verification["dmarcPolicy"];
    let dmarcRecord: Verification["dmarcRecord"];
    if (dkimResult.headerFrom) {
      const evaluation = await evaluateDmarc({
        headerFrom: dkimResult.headerFrom,
        fromFields: dkimResult.fromFields,
        // The first check is MAIL FROM's identity; for the null sender that is postmaster@HELO
        // (RFC 7208 §2.4), which RFC 7489 §4.1 lets DMARC use.
        spfDomains: spfForDmarc?.result === "pass" ? [spfForDmarc.domain] : [],
        dkimDomains: dkimPassDomains,
        arcResult,
        resolver: this.#opts.resolver,
        strict: true,
      });
      const r = evaluation.response;
      if (r) {
        dmarc = {
          result: r.status.result as DmarcFinding["result"],
          headerFrom: r.status.header?.from,
          policy: r.p?.toUpperCase(),
          // Verification only reports; applying the policy is the policy layer's decision.
          disposition: "none",
        };
        const pct = /(?:^|;)\s*pct\s*=\s*([0-9]{1,3})\s*(?:;|$)/i.exec(r.rr ?? "")?.[1];
        dmarcPolicy = { p: r.p, applied: r.policy, ...(pct === undefined ? {} : { pct: Number(pct) }) };
        if (r.rr && r.policyDomain) {
          dmarcRecord = { policyDomain: r.policyDomain, record: r.rr, dkimAligned: Boolean(r.alignment?.dkim?.result), spfAligned: Boolean(r.alignment?.spf?.result) };
        }
      } else {
        dmarc = { result: "permerror", reason: evaluation.reason ?? "no author domain", disposition: "none" };
      }
    }
    return {
      findings: { dkim, spf: spfChecks, ...(dmarc ? { dmarc } : {}), arc: arcFinding },
      spfChecks,
      spfSource,
      skippedSignatures: Math.max(0, this.#signatures - this.#opts.maxSignatures),
      ...(dmarcPolicy ? { dmarcPolicy } : {}),
      ...(dmarcRecord ? { dmarcRecord } : {}),
    };
  }

  /** The MAIL FROM identity (HELO when the sender is null), then the HELO identity on its own. */
  async #checkSpf(): Promise<SpfFinding[]> {
    const { resolver, clientAddress, helo, sender, authservId } = this.#opts;
    // RFC 7208 §2.3: a HELO that is an address literal has no SPF identity.
    const heloName = isIP(helo) || /^\[.*\]$/.test(helo) ? "" : helo;
    const base = { ip: clientAddress, helo: heloName || `[${clientAddress}]`, mta: authservId, resolver, strict: true };
    const checks: Array<Promise<MailauthSpf | undefined>> = [
      sender || heloName ? (spf({ ...base, sender }) as Promise<MailauthSpf>) : Promise.resolve(undefined),
    ];
    if (sender && heloName) checks.push(spf({ ...base, sender: `postmaster@${heloName}` }) as Promise<MailauthSpf>);
    const results = await Promise.all(checks);
    const findings: SpfFinding[] = [];
    for (const [i, r] of results.entries()) {
      if (!r) continue;
      const identity = i === 0 && sender ? "mailfrom" : "helo";
      findings.push({ result: r.status.result as SpfResult, identity, domain: identity === "mailfrom" ? (r.domain ?? "") : heloName });
    }
    return findings;
  }
}

interface MailauthDkimRow {
  id?: string;
  signingDomain?: string;
  selector?: string;
  algo?: string;
  modulusLength?: number;
  status: {
    result: string;
    comment?: string;
    aligned?: string | false;
    underSized?: number;
    header?: { d?: string; i?: string; s?: string; a?: string; b?: string };
  };
}

function dkimFinding(row: MailauthDkimRow): DkimFinding {
  const s = row.status;
  if (s.result === "none") return { result: "none" };
  let result = s.result as DkimResult;
  if (result === "neutral" && s.comment && KEY_PROBLEMS.has(s.comment)) result = "permerror";
  const h = s.header ?? {};
  return {
    result,
    ...(s.comment ? { reason: s.comment } : {}),
    ...(row.modulusLength ? { keyBits: row.modulusLength } : {}),
    ...(h.d ? { domain: h.d } : {}),
    ...(h.i ? { identity: h.i } : {}),
    ...(h.s ? { selector: h.s } : {}),
    ...(h.a ? { algorithm: h.a } : {}),
    ...(h.b ? { signaturePrefix: h.b } : {}),
  };
}

function arcStatus(result: string | undefined): ArcFinding["result"] {
  return result === "pass" || result === "fail" ? result : "none";
}

/** SPF from a trusted upstream A-R, as opendmarc takes it: the MAIL FROM result first. */
function trustedSpf(trusted: readonly UpstreamResult[]): SpfFinding | undefined {
  const spfResults = trusted.filter((r) => r.method === "spf");
  const mailfrom = spfResults.find((r) => r.properties.has("smtp.mailfrom"));
  const chosen = mailfrom ?? spfResults.find((r) => r.properties.has("smtp.helo"));
  if (!chosen) return undefined;
  const identity = mailfrom ? "mailfrom" : "helo";
  const value = chosen.properties.get(`smtp.${identity}`)!;
  return { result: chosen.result as SpfResult, identity, domain: value.includes("@") ? value.slice(value.lastIndexOf("@") + 1) : value };
}
