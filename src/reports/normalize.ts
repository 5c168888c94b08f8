// Values as the RFC 7489 Appendix C schema enumerates them. Applied when a row is recorded (so
// the database only ever holds schema values) and again when a report is built (so a database
// edited by hand, or written by an older version, still yields a valid report).

import { isIPv4, isIPv6 } from "node:net";
import type { Disposition, DkimResult, SpfResult } from "../auth/results.ts";
import { bytesToIpv4, bytesToIpv6, ipv6ToBytes } from "../dns/ip.ts";

export const DKIM_RESULTS = ["none", "pass", "fail", "policy", "neutral", "temperror", "permerror"] as const;
export const SPF_RESULTS = ["none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"] as const;
export const DISPOSITIONS = ["none", "quarantine", "reject"] as const;
export const POLICY_OVERRIDES = ["forwarded", "sampled_out", "trusted_forwarder", "mailing_list", "local_policy", "other"] as const;

export type PolicyOverride = (typeof POLICY_OVERRIDES)[number];
export type AlignedResult = "pass" | "fail";
export type AlignmentMode = "r" | "s";
export type SpfScope = "mfrom" | "helo";

// Spellings other software (and older specifications) use for the same results. "error" and
// "unknown" are deliberately absent: implementations disagree on which of temperror/permerror
// each one meant, so they fall through to the default below rather than be guessed.
const DKIM_ALIASES: Readonly<Record<string, DkimResult>> = {
  tempfail: "temperror",
  permfail: "permerror",
  hardfail: "fail",
};
const SPF_ALIASES: Readonly<Record<string, SpfResult>> = {
  hardfail: "fail",
  tempfail: "temperror",
  permfail: "permerror",
  "soft-fail": "softfail",
};

function pick<T extends string>(values: readonly T[], aliases: Readonly<Record<string, T>>, raw: string): T | undefined {
  const v = raw.trim().toLowerCase();
  return (values as readonly string[]).includes(v) ? (v as T) : aliases[v];
}

/**
 * A result we cannot interpret is reported as permerror: the evaluation is broken for this
 * message, and "none" or "neutral" would tell the domain owner something we do not know.
 */
export function dkimResult(raw: string): DkimResult {
  return pick(DKIM_RESULTS, DKIM_ALIASES, raw) ?? "permerror";
}

export function spfResult(raw: string): SpfResult {
  return pick(SPF_RESULTS, SPF_ALIASES, raw) ?? "permerror";
}

export function spfScope(raw: string): SpfScope {
  const v = raw.trim().toLowerCase();
  return v === "helo" || v === "ehlo" ? "helo" : "mfrom";
}

/** An unknown disposition cannot have been applied; "none" is what the receiver actually did. */
export function disposition(raw: string): Disposition {
  return pick(DISPOSITIONS, {}, raw) ?? "none";
}

export function policyDisposition(raw: string | null | undefined): Disposition | undefined {
  return raw == null ? undefined : pick(DISPOSITIONS, {}, raw);
}

export function alignedResult(raw: string): AlignedResult {
  return raw.trim().toLowerCase() === "pass" ? "pass" : "fail";
}

export function alignmentMode(raw: string | null | undefined): AlignmentMode | undefined {
  const v = raw?.trim().toLowerCase();
  return v === "r" || v === "s" ? v : undefined;
}

/** Out-of-range pct is what a receiver treats as absent (RFC 7489 §6.3: default 100). */
export function percent(raw: number | null | undefined): number | undefined {
  return typeof raw === "number" && Number.isInteger(raw) && raw >= 0 && raw <= 100 ? raw : undefined;
}

export function override(type: string, comment?: string): { type: PolicyOverride; comment?: string } {
  const v = pick(POLICY_OVERRIDES, {}, type);
  if (v !== undefined) return comment === undefined ? { type: v } : { type: v, comment };
  // Keep what the caller meant: "other" is the schema's slot for reasons it does not list.
  return { type: "other", comment: comment === undefined ? type : `${type}: ${comment}` };
}

/** Domains compare case-insensitively and with or without the root dot; one spelling groups. */
export function domain(raw: string): string {
  const d = raw.trim().toLowerCase();
  return d.endsWith(".") && d.length > 1 ? d.slice(0, -1) : d;
}

/**
 * One spelling per address, so one sender is one report row: IPv4 as it is, IPv4-mapped IPv6 as
 * IPv4 (a dual-stack socket reports IPv4 clients that way), other IPv6 in RFC 5952 form. Text
 * that is no address (a local submission may have none) is kept as it came.
 */
export function sourceIp(raw: string): string {
  const text = raw.trim().replace(/^\[(.*)\]$/, "$1").replace(/^ipv6:/i, "");
  const bare = text.replace(/%.*$/, "");
  if (isIPv4(bare)) return bare;
  if (!isIPv6(bare)) return raw.trim();
  const bytes = ipv6ToBytes(bare);
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return bytesToIpv4(bytes.subarray(12, 16));
  }
  return bytesToIpv6(bytes);
}

/**
 * The address as the RFC 7489 schema's IPAddress pattern accepts it, or undefined for text that
 * is no address. The pattern knows only the full eight-group IPv6 form (no "::"), which every
 * address parser reads, so that is what reports carry.
 */
export function reportSourceIp(raw: string): string | undefined {
  const ip = sourceIp(raw);
  if (isIPv4(ip)) return ip;
  if (!isIPv6(ip)) return undefined;
  const bytes = ipv6ToBytes(ip);
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return words.join(":");
}
