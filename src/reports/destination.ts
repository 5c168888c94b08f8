// Where a domain owner wants its reports (rua= and ruf= of its DMARC record), and whether we may
// send them there: RFC 7489 §6.2 (mailto: URIs with an optional "!size" limit) and §7.1
// (Verifying External Destinations). Only mailto: is supported; other schemes are skipped.

import { createRequire } from "node:module";
import { domainToASCII } from "node:url";
import type { DNSResolver } from "mailauth";
import { isNoRecord, type Resolver } from "../dns/index.ts";
import { isPlainAddress } from "./mailer.ts";

export type ReportKind = "rua" | "ruf";

export interface ReportDestination {
  /** The URI as published. */
  readonly uri: string;
  /** The mailbox, with an ASCII (A-label) domain in lower case. */
  readonly address: string;
  /** The address's domain: the "destination host" of §7.1. */
  readonly domain: string;
  /** The "!size" limit in bytes, when the URI had one. */
  readonly maxBytes?: number;
}

export type ParsedUri =
  | { readonly ok: true; readonly destination: ReportDestination }
  | { readonly ok: false; readonly uri: string; readonly reason: string };

const UNITS: Record<string, number> = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** RFC 7489 §6.2: digits and an optional unit k/m/g/t, powers of two. */
export function parseSizeLimit(text: string): number | undefined {
  const m = /^([0-9]{1,15})([kmgt]?)$/i.exec(text);
  if (m === null) return undefined;
  return Number(m[1]) * UNITS[(m[2] ?? "").toLowerCase()]!;
}

function percentDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/**
 * One rua/ruf URI. The address must be a plain ASCII mailbox (a U-label domain is converted):
 * it ends up in RCPT TO and in a To: header, so anything unusual is refused, not escaped.
 */
export function parseReportUri(uri: string): ParsedUri {
  const trimmed = uri.trim();
  const fail = (reason: string): ParsedUri => ({ ok: false, uri: trimmed, reason });
  let rest = trimmed;
  let maxBytes: number | undefined;
  const bang = rest.lastIndexOf("!");
  if (bang >= 0) {
    maxBytes = parseSizeLimit(rest.slice(bang + 1));
    if (maxBytes === undefined) return fail(`bad size limit "${rest.slice(bang + 1)}"`);
    rest = rest.slice(0, bang);
  }
  const colon = rest.indexOf(":");
  const scheme = colon > 0 ? rest.slice(0, colon).toLowerCase() : "";
  if (scheme !== "mailto") return fail(scheme === "" ? "not a URI" : `unsupported scheme "${scheme}:" (only mailto: is)`);
  // mailto:addr?subject=... : header fields of the URI are not ours to add.
  const addrPart = rest.slice(colon + 1).split("?")[0] ?? "";
  if (addrPart.includes(",")) return fail("more than one address in one URI");
  const decoded = percentDecode(addrPart);
  if (decoded === undefined) return fail("bad percent-encoding");
  const at = decoded.lastIndexOf("@");
  if (at <= 0) return fail("no mailbox");
  const unicodeDomain = decoded.slice(at + 1).replace(/\.$/, "");
  const domain = (/^[\x21-\x7e]+$/.test(unicodeDomain) ? unicodeDomain : domainToASCII(unicodeDomain)).toLowerCase();
  const address = `${decoded.slice(0, at)}@${domain}`;
  if (domain === "" || !isPlainAddress(address)) return fail(`${JSON.stringify(decoded)} is not a plain mailbox address`);
  return { ok: true, destination: { uri: trimmed, address, domain, ...(maxBytes !== undefined ? { maxBytes } : {}) } };
}

// --- External destination verification -------------------------------------------------------

// mailauth's DMARC policy discovery (RFC 9989 tree walk), the same one the verifier used to find
// the policy domain: organizational domains here agree with those of the verdict.
interface RecordLookup {
  (name: string): Promise<unknown>;
}
const dmarcRecords = createRequire(import.meta.url)("mailauth/lib/dmarc/get-dmarc-record.js") as {
  getOrgDomain(domain: string, lookup: RecordLookup): Promise<string>;
  createRecordLookup(resolver: DNSResolver, options: { strict: boolean }): RecordLookup;
};

const DMARC1 = /^[vV][ \t]*=[ \t]*DMARC1[ \t]*(?:;|$)/;

export type DestinationOutcome =
  /** Send here. */
  | "send"
  /** Not to be used: the domain owner's choice or mistake (bad URI, not authorized). */
  | "skip"
  /** Could not be decided now (DNS failure); trying again later may send it. */
  | "tempfail";

export interface DestinationDecision {
  /** The URI as published (for a replaced destination: the one it replaced). */
  readonly uri: string;
  readonly outcome: DestinationOutcome;
  /** Set when outcome is "send". */
  readonly destination?: ReportDestination;
  /** Why not, or how it was authorized: for the log. */
  readonly reason: string;
}

export type DestinationResolver = Pick<Resolver, "resolve" | "mailauth">;

function asciiDomain(domain: string): string {
  const d = domain.replace(/\.$/, "").toLowerCase();
  return /^[\x21-\x7e]*$/.test(d) ? d : domainToASCII(d) || d;
}

function tagValue(record: string, tag: string): string | undefined {
  for (const part of record.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim().toLowerCase() === tag) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * The addresses to send one report to, from the URIs the policy domain published: parsed,
 * de-duplicated, and for a destination outside the policy domain's organizational domain
 * authorized by a "v=DMARC1" TXT record at <policy-domain>._report._dmarc.<destination>
 * (RFC 7489 §7.1), whose own rua=/ruf= replaces the destination when it names the same host.
 */
export async function resolveDestinations(
  policyDomain: string,
  uris: readonly string[],
  kind: ReportKind,
  resolver: DestinationResolver,
): Promise<DestinationDecision[]> {
  const policy = asciiDomain(policyDomain);
  const lookup = dmarcRecords.createRecordLookup(resolver.mailauth, { strict: true });
  const orgCache = new Map<string, Promise<string>>();
  const orgDomain = (domain: string) => {
    let org = orgCache.get(domain);
    if (org === undefined) {
      org = dmarcRecords.getOrgDomain(domain, lookup);
      orgCache.set(domain, org);
    }
    return org;
  };

  const decisions: DestinationDecision[] = [];
  const seen = new Set<string>();
  const add = (decision: DestinationDecision) => {
    const key = decision.destination?.address.toLowerCase();
    if (key !== undefined) {
      if (seen.has(key)) return;
      seen.add(key);
    }
    decisions.push(decision);
  };

  for (const uri of uris) {
    const parsed = parseReportUri(uri);
    if (!parsed.ok) {
      add({ uri: parsed.uri, outcome: "skip", reason: parsed.reason });
      continue;
    }
    const dest = parsed.destination;
    if (dest.domain === policy) {
      add({ uri: dest.uri, outcome: "send", destination: dest, reason: "the policy domain's own address" });
      continue;
    }
    let sameOrg: boolean;
    try {
      const [a, b] = await Promise.all([orgDomain(policy), orgDomain(dest.domain)]);
      sameOrg = a === b;
    } catch (err) {
      add({ uri: dest.uri, outcome: "tempfail", reason: `cannot determine organizational domains: ${(err as Error).message}` });
      continue;
    }
    if (sameOrg) {
      add({ uri: dest.uri, outcome: "send", destination: dest, reason: "within the policy domain's organizational domain" });
      continue;
    }
    const name = `${policy}._report._dmarc.${dest.domain}`;
    let records: string[];
    try {
      records = (await resolver.resolve(name, "TXT")).map((chunks) => chunks.join("").trim()).filter((r) => DMARC1.test(r));
    } catch (err) {
      if (isNoRecord(err) || (err as { code?: unknown }).code === "EBADNAME") records = [];
      else {
        add({ uri: dest.uri, outcome: "tempfail", reason: `external destination check ${name} TXT failed: ${(err as Error).message}` });
        continue;
      }
    }
    if (records.length === 0) {
      add({ uri: dest.uri, outcome: "skip", reason: `external destination not authorized: no "v=DMARC1" TXT record at ${name}` });
      continue;
    }
    // §7.1 step 8: the Report Receiver may name other addresses, on the same host only.
    const override = records.map((r) => tagValue(r, kind)).find((v) => v !== undefined && v !== "");
    const replacements = (override ?? "")
      .split(",")
      .filter((u) => u.trim() !== "")
      .map(parseReportUri)
      .flatMap((p) => (p.ok && p.destination.domain === dest.domain ? [p.destination] : []));
    if (replacements.length === 0) {
      add({ uri: dest.uri, outcome: "send", destination: dest, reason: `authorized by ${name}` });
    } else {
      for (const replacement of replacements) {
        add({ uri: dest.uri, outcome: "send", destination: replacement, reason: `authorized by ${name}, which names ${replacement.uri}` });
      }
    }
  }
  return decisions;
}
