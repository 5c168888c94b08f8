// The daily check behind `authmilter check`: for every domain the configuration signs for, is the
// published DKIM key the private key we sign with, does an SPF record exist and authorize our
// outbound addresses, and is there a valid DMARC record? Everything is looked up through the
// configured resolver, so the answers are the ones the daemon (and receivers) would get.

import { isIP } from "node:net";
import { spf } from "mailauth/lib/spf/index.js";
import type { Config } from "../config/schema.ts";
import { isNoRecord, type Resolver } from "../dns/index.ts";
import { KeyError } from "../keys/errors.ts";
import { loadKeySource, type SigningKey } from "../keys/load.ts";
import { openKeyTable } from "../keys/open.ts";
import { checkKeyAgainstRecord, parseDkimKeyRecord } from "../keys/record.ts";
import type { KeySource } from "../keys/tables.ts";

export type CheckName = "dkim" | "spf" | "dmarc";

/**
 * ok; mismatch (the published key is another key); missing (no record); revoked (empty p=);
 * invalid (a record that receivers cannot use); fail (SPF does not authorize an outbound IP);
 * error (a DNS failure or a key file that cannot be read: the answer is unknown).
 */
export type CheckStatus = "ok" | "mismatch" | "missing" | "revoked" | "invalid" | "fail" | "error";

export interface CheckRow {
  readonly domain: string;
  readonly check: CheckName;
  readonly status: CheckStatus;
  readonly detail: string;
  /** dkim: the selector and where the key came from. */
  readonly selector?: string;
  readonly key?: string;
  /** spf: the outbound address checked. */
  readonly ip?: string;
}

export interface CheckReport {
  /** True when every row is "ok". */
  readonly ok: boolean;
  readonly domains: readonly string[];
  readonly outboundIps: readonly string[];
  readonly rows: readonly CheckRow[];
  /** What was not checked and why (e.g. KeyTable entries for "%"). */
  readonly notes: readonly string[];
}

/** One key the configuration signs with, at a fixed d= and selector. */
export interface SigningTarget {
  readonly domain: string;
  readonly selector: string;
  readonly key: KeySource;
  /** Where the configuration names it. */
  readonly source: string;
}

export const NO_OUTBOUND_IPS = "no outbound IPs configured; SPF only checked for presence";

/**
 * `check.outboundIps` from the configuration, read defensively: the option may not exist in the
 * schema yet. Undefined when absent; entries that are not IP addresses are returned in `invalid`.
 */
export function configuredOutboundIps(config: Config): { ips: string[] | undefined } {
  // The loader has checked each is an IP address; none configured means SPF is checked for presence only.
  const ips = config.check.outboundIps;
  return { ips: ips.length > 0 ? [...ips] : undefined };
}

/** Every (d=, selector, key) the configuration signs with, and notes on what cannot be checked. */
export async function signingTargets(config: Config): Promise<{ targets: SigningTarget[]; notes: string[] }> {
  const targets: SigningTarget[] = [];
  const notes: string[] = [];
  const seen = new Set<string>();
  const add = (t: SigningTarget) => {
    const id = `${t.domain}\0${t.selector}\0${t.key.kind === "file" ? t.key.path : t.key.data}`;
    if (seen.has(id)) return;
    seen.add(id);
    targets.push(t);
  };
  config.signing.keys.forEach((entry, i) => {
    const source = `signing.keys[${i + 1}] (${entry.domain})`;
    const d = entry.signingDomain ?? (entry.domain === "*" ? undefined : entry.domain.replace(/^\*\./, ""));
    if (d === undefined) {
      notes.push(`${source}: signs with d= the author's domain, so there is no fixed domain to check`);
      return;
    }
    add({ domain: normalize(d), selector: entry.selector, key: { kind: "file", path: entry.keyFile }, source });
  });
  if (config.signing.keyTable !== undefined) {
    const table = await openKeyTable(config.signing.keyTable);
    for (const [name, e] of table.entries) {
      const source = `${table.file}:${e.line} (${name})`;
      if (e.domain === "%") {
        notes.push(`${source}: d= is "%" (the author's domain), so there is no fixed domain to check`);
        continue;
      }
      const key: KeySource = e.key.kind === "file" ? { kind: "file", path: e.key.path.replaceAll("%", e.domain) } : e.key;
      add({ domain: normalize(e.domain), selector: e.selector, key, source });
    }
  }
  return { targets, notes };
}

export interface RunChecksOptions {
  readonly resolver: Resolver;
  /** Addresses SPF must authorize; undefined: configuredOutboundIps(config). */
  readonly outboundIps?: readonly string[];
}

export async function runChecks(config: Config, options: RunChecksOptions): Promise<CheckReport> {
  const { targets, notes } = await signingTargets(config);
  const fromConfig = configuredOutboundIps(config);
  const ips = [...(options.outboundIps ?? fromConfig.ips ?? [])];
  if (ips.length === 0) notes.push(NO_OUTBOUND_IPS);
  const domains = [...new Set(targets.map((t) => t.domain))];
  const { resolver } = options;

  const keyCache = new Map<string, Promise<SigningKey>>();
  const loadKey = (t: SigningTarget): Promise<SigningKey> => {
    const id = t.key.kind === "file" ? t.key.path : `${t.source}`;
    let p = keyCache.get(id);
    if (p === undefined) {
      // Unsafe modes and small keys are `config check`'s business; this checks the match.
      p = loadKeySource(t.key, { requireSafeKeys: false, minimumKeyBits: 0, origin: t.source });
      keyCache.set(id, p);
    }
    return p;
  };

  const dkimRows = await Promise.all(targets.map((t) => checkDkim(t, loadKey, resolver)));
  const perDomain = await Promise.all(
    domains.map(async (d) => {
      const [spfRows, dmarcRow] = await Promise.all([checkSpf(d, ips, resolver, config.hostname), checkDmarc(d, resolver)]);
      return { d, spfRows, dmarcRow };
    }),
  );
  const rows: CheckRow[] = [];
  for (const { d, spfRows, dmarcRow } of perDomain) {
    rows.push(...dkimRows.filter((r) => r.domain === d), ...spfRows, dmarcRow);
  }
  return { ok: rows.every((r) => r.status === "ok"), domains, outboundIps: ips, rows, notes };
}

// ---- DKIM ---------------------------------------------------------------------------------

async function checkDkim(t: SigningTarget, loadKey: (t: SigningTarget) => Promise<SigningKey>, resolver: Resolver): Promise<CheckRow> {
  const name = `${t.selector}._domainkey.${t.domain}`;
  const keyName = t.key.kind === "file" ? t.key.path : `inline key (${t.source})`;
  const row = (status: CheckStatus, detail: string): CheckRow => ({ domain: t.domain, check: "dkim", status, detail, selector: t.selector, key: keyName });
  let key: SigningKey;
  try {
    key = await loadKey(t);
  } catch (err) {
    if (err instanceof KeyError) return row("error", `${t.source}: ${err.message}`);
    throw err;
  }
  let records: string[][];
  try {
    records = await resolver.resolve(name, "TXT");
  } catch (err) {
    if (isNoRecord(err)) return row("missing", `no TXT record at ${name}; publish the key (authmilter genkey writes the record)`);
    return row("error", `DNS lookup of ${name} failed (${errorCode(err)})`);
  }
  const dkim = records.map((r) => r.join("")).filter((r) => r.trimStart().startsWith("v=DKIM1") || /(^|;)\s*p=/.test(r));
  if (dkim.length === 0) return row("missing", `the TXT records at ${name} are not DKIM key records`);
  if (dkim.length > 1) return row("invalid", `${dkim.length} key records at ${name}; verifiers pick one unpredictably, publish exactly one`);
  const txt = dkim[0]!;
  try {
    if (parseDkimKeyRecord(txt).revoked) return row("revoked", `${name} has an empty p= (key revoked); the signatures made with ${keyName} fail`);
  } catch {
    // checkKeyAgainstRecord reports the syntax error below
  }
  const result = checkKeyAgainstRecord(key, txt);
  const warnings = result.warnings.length > 0 ? `; warning: ${result.warnings.join("; ")}` : "";
  if (result.ok) {
    const what = key.type === "rsa" ? `${key.bits}-bit RSA` : "Ed25519";
    return row("ok", `${name} matches ${keyName} (${what})${warnings}`);
  }
  const status: CheckStatus = result.reason.startsWith("public key mismatch") || result.reason.startsWith("record says k=") ? "mismatch" : "invalid";
  return row(status, `${name}: ${result.reason}${warnings}`);
}

// ---- SPF ----------------------------------------------------------------------------------

interface MailauthSpfResult {
  status: { result: string; comment?: string };
}

async function checkSpf(domain: string, ips: readonly string[], resolver: Resolver, hostname: string): Promise<CheckRow[]> {
  const row = (status: CheckStatus, detail: string, ip?: string): CheckRow => ({ domain, check: "spf", status, detail, ...(ip !== undefined && { ip }) });
  let records: string[][];
  try {
    records = await resolver.resolve(domain, "TXT");
  } catch (err) {
    if (isNoRecord(err)) return [row("missing", `no SPF record: no TXT record at ${domain}`)];
    return [row("error", `DNS lookup of ${domain} TXT failed (${errorCode(err)})`)];
  }
  // RFC 7208 §4.5: "v=spf1" followed by a space or the end, case-insensitively.
  const spfRecords = records.map((r) => r.join("")).filter((r) => /^v=spf1( |$)/i.test(r));
  if (spfRecords.length === 0) return [row("missing", `no SPF record (v=spf1) among the TXT records at ${domain}`)];
  if (spfRecords.length > 1) return [row("invalid", `${spfRecords.length} SPF records at ${domain}; receivers return permerror (RFC 7208 §4.5), publish exactly one`)];
  const record = spfRecords[0]!;
  if (ips.length === 0) return [row("ok", `"${shorten(record)}" present; ${NO_OUTBOUND_IPS}`)];

  return Promise.all(
    ips.map(async (ip) => {
      let r: MailauthSpfResult;
      try {
        r = (await spf({ ip, sender: `postmaster@${domain}`, helo: hostname, mta: hostname, resolver: resolver.mailauth, strict: true })) as MailauthSpfResult;
      } catch (err) {
        return row("error", `SPF evaluation for ${ip} failed: ${(err as Error).message}`, ip);
      }
      const result = r.status.result;
      const why = r.status.comment ? ` (${r.status.comment})` : "";
      if (result === "pass") return row("ok", `${ip} authorized: pass`, ip);
      if (result === "permerror") return row("invalid", `${ip}: permerror${why}: receivers cannot use the record "${shorten(record)}"`, ip);
      if (result === "temperror") return row("error", `${ip}: temperror${why}: a DNS lookup the record needs failed`, ip);
      return row("fail", `${ip} not authorized: ${result}${why}; add it to "${shorten(record)}"`, ip);
    }),
  );
}

// ---- DMARC --------------------------------------------------------------------------------

const POLICIES = new Set(["none", "quarantine", "reject"]);

async function checkDmarc(domain: string, resolver: Resolver): Promise<CheckRow> {
  const row = (status: CheckStatus, detail: string): CheckRow => ({ domain, check: "dmarc", status, detail });
  const own = await lookupDmarc(domain, resolver);
  if (own.kind === "error") return row("error", own.detail);
  if (own.kind === "multiple") return row("invalid", own.detail);
  if (own.kind === "found") {
    const v = validateDmarcRecord(own.record);
    return v.ok ? row("ok", `_dmarc.${domain}: ${v.summary}`) : row("invalid", `_dmarc.${domain}: ${v.reason}`);
  }
  // No record of its own: the policy of a parent (organizational) domain applies to a subdomain.
  const labels = domain.split(".");
  while (labels.length > 2) {
    labels.shift();
    const parent = labels.join(".");
    const up = await lookupDmarc(parent, resolver);
    if (up.kind === "error") return row("error", `no record at _dmarc.${domain}; ${up.detail}`);
    if (up.kind === "multiple") return row("invalid", `no record at _dmarc.${domain}; the parent's ${up.detail}`);
    if (up.kind === "found") {
      const v = validateDmarcRecord(up.record);
      return v.ok
        ? row("ok", `no record at _dmarc.${domain}; _dmarc.${parent} applies: ${v.summary}`)
        : row("invalid", `no record at _dmarc.${domain}; the record at _dmarc.${parent} that would apply is invalid: ${v.reason}`);
    }
  }
  return row("missing", `no DMARC record at _dmarc.${domain}${domain.split(".").length > 2 ? " or a parent domain" : ""}`);
}

type DmarcLookup = { kind: "found"; record: string } | { kind: "none" } | { kind: "multiple"; detail: string } | { kind: "error"; detail: string };

async function lookupDmarc(domain: string, resolver: Resolver): Promise<DmarcLookup> {
  const name = `_dmarc.${domain}`;
  let records: string[][];
  try {
    records = await resolver.resolve(name, "TXT");
  } catch (err) {
    if (isNoRecord(err)) return { kind: "none" };
    return { kind: "error", detail: `DNS lookup of ${name} failed (${errorCode(err)})` };
  }
  // Records that do not start with v=DMARC1 are not DMARC records (RFC 7489 §6.6.3).
  const found = records.map((r) => r.join("").trim()).filter((r) => /^v\s*=\s*DMARC1\s*(;|$)/i.test(r));
  if (found.length === 0) return { kind: "none" };
  if (found.length > 1) return { kind: "multiple", detail: `${found.length} DMARC records at ${name}; receivers ignore them all (RFC 7489 §6.6.3), publish exactly one` };
  return { kind: "found", record: found[0]! };
}

/** Checks a DMARC record's syntax and values (RFC 7489 §6.3, RFC 9989 §4.7). */
export function validateDmarcRecord(record: string): { ok: true; summary: string } | { ok: false; reason: string } {
  const fail = (reason: string) => ({ ok: false as const, reason });
  const tags = new Map<string, string>();
  const parts = record.split(";").map((p) => p.trim());
  for (const [i, part] of parts.entries()) {
    if (part === "") {
      if (i === parts.length - 1) continue;
      return fail("an empty tag (\";;\")");
    }
    const eq = part.indexOf("=");
    if (eq === -1) return fail(`"${part}" is not tag=value`);
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(name)) return fail(`"${name}" is not a tag name`);
    if (tags.size === 0 && (name.toLowerCase() !== "v" || value !== "DMARC1")) return fail("the record must start with v=DMARC1");
    if (tags.has(name)) return fail(`tag ${name}= appears twice (the whole record is then invalid)`);
    tags.set(name, value);
  }
  const lower = (t: string) => tags.get(t)?.toLowerCase();
  const p = lower("p");
  if (p === undefined) return fail("no p= tag (RFC 7489 receivers ignore the record; RFC 9989 ones apply p=none only if rua= is valid)");
  if (!POLICIES.has(p)) return fail(`p=${tags.get("p")} is not none, quarantine or reject`);
  for (const t of ["sp", "np"]) {
    const v = lower(t);
    if (v !== undefined && !POLICIES.has(v)) return fail(`${t}=${tags.get(t)} is not none, quarantine or reject`);
  }
  for (const t of ["adkim", "aspf"]) {
    const v = lower(t);
    if (v !== undefined && v !== "r" && v !== "s") return fail(`${t}=${tags.get(t)} is not r or s`);
  }
  const pct = tags.get("pct");
  if (pct !== undefined && !(/^[0-9]{1,3}$/.test(pct) && Number(pct) <= 100)) return fail(`pct=${pct} is not a whole number from 0 to 100`);
  const ri = tags.get("ri");
  if (ri !== undefined && !/^[0-9]+$/.test(ri)) return fail(`ri=${ri} is not a number of seconds`);
  const fo = lower("fo");
  if (fo !== undefined && !/^[01ds](\s*:\s*[01ds])*$/.test(fo)) return fail(`fo=${tags.get("fo")} is not a list of 0, 1, d and s`);
  const t = lower("t");
  if (t !== undefined && t !== "y" && t !== "n") return fail(`t=${tags.get("t")} is not y or n`);
  for (const tag of ["rua", "ruf"]) {
    const v = tags.get(tag);
    if (v === undefined) continue;
    for (const uri of v.split(",").map((u) => u.trim())) {
      if (!/^[A-Za-z][A-Za-z0-9+.-]*:[^\s,!]+(![0-9]+[kmgt]?)?$/i.test(uri)) return fail(`${tag}= "${uri}" is not a URI (write mailto:address)`);
    }
  }
  const summary = ["p", "sp", "np", "adkim", "aspf", "pct", "t", "rua"]
    .filter((k) => tags.has(k))
    .map((k) => `${k}=${tags.get(k)}`)
    .join(" ");
  return { ok: true, summary };
}

// ---- output -------------------------------------------------------------------------------

/** A readable table: DOMAIN, CHECK, STATUS, DETAIL, then the notes and a summary line. */
export function formatReport(report: CheckReport): string {
  const header = ["DOMAIN", "CHECK", "STATUS", "DETAIL"] as const;
  const cells = report.rows.map((r) => [r.domain, r.check === "dkim" && r.selector ? `dkim ${r.selector}` : r.check, r.status, r.detail]);
  const widths = [0, 1, 2].map((i) => Math.max(header[i]!.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]) => [0, 1, 2].map((i) => c[i]!.padEnd(widths[i]!)).join("  ") + "  " + c[3];
  const out = [line(header), ...cells.map(line)];
  for (const n of report.notes) out.push(`note: ${n}`);
  const problems = report.rows.filter((r) => r.status !== "ok").length;
  out.push(problems === 0 ? `all ${report.rows.length} checks OK` : `${problems} of ${report.rows.length} checks found problems`);
  return out.join("\n") + "\n";
}

function normalize(domain: string): string {
  return domain.toLowerCase().replace(/\.$/, "");
}

function shorten(s: string): string {
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : (err as Error).message;
}
