// `authmilter report aggregate`: DMARC aggregate reports from the history database, what
// opendmarc-reports did from MySQL: mailed to each policy domain's rua= addresses (RFC 7489
// §7.2, external destinations verified per §7.1) through an SMTP relay or the local sendmail,
// or with --dry-run written to a directory instead.

import { mkdir, rename, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { createResolver, parseServer } from "../dns/index.ts";
import { buildAggregateReports, type GeneratedReport, type ReportIdentity } from "../reports/aggregate.ts";
import { resolveDestinations, type DestinationResolver } from "../reports/destination.ts";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { DEFAULT_HISTORY_PATH, type HistoryReader } from "../reports/history.ts";
import { openHistoryForReading } from "../reports/open-history.ts";
import {
  aggregateReportMail,
  isPlainAddress,
  reportMailer,
  type Mailer,
} from "../reports/mailer.ts";

/** sysexits: the caller can tell a wrong command line from a failure to do the work. */
const EX_USAGE = 64;
/** Some report could not be handed over (relay down or refusing, DNS failure): try again later. */
const EX_TEMPFAIL = 75;

export const DEFAULT_SMTP = "127.0.0.1:25";

export interface AggregateCommandOptions {
  readonly since?: string;
  readonly until?: string;
  readonly db?: string;
  readonly orgName?: string;
  readonly orgEmail?: string;
  readonly receiver?: string;
  readonly dryRun?: boolean;
  readonly out?: string;
  /** Relay host:port; default 127.0.0.1:25. */
  readonly smtp?: string;
  /** sendmail command ("/usr/sbin/sendmail -C /etc/postfix"), instead of SMTP. */
  readonly sendmail?: string;
  /** Envelope sender and From: of the report messages; default the --org-email. */
  readonly from?: string;
  /** DNS servers (ip[:port], comma-separated) for the external destination check; default the system's. */
  readonly dns?: string;
  /** The daemon's configuration file, whose reports.* and dns.servers fill in what is not given. */
  readonly config?: string;
}

/** Flags win; then the configuration's reports section; then the built-in defaults. */
export function withConfigDefaults(opts: AggregateCommandOptions, config: Config): AggregateCommandOptions {
  const r = config.reports;
  const pick = <K extends keyof AggregateCommandOptions>(key: K, value: AggregateCommandOptions[K] | undefined) =>
    opts[key] !== undefined ? {} : value === undefined ? {} : { [key]: value };
  return {
    ...opts,
    ...pick("db", r.history),
    ...pick("orgName", r.aggregate.orgName),
    ...pick("orgEmail", r.aggregate.orgEmail),
    ...pick("receiver", r.aggregate.receiver),
    ...pick("from", r.from),
    ...pick("sendmail", r.sendmail),
    ...pick("smtp", opts.sendmail === undefined && r.sendmail === undefined ? r.smtp : undefined),
    ...pick("dns", config.dns.servers.length > 0 ? config.dns.servers.join(",") : undefined),
  };
}

/** What runAggregate uses to send; built from the options unless given (tests). */
export interface AggregateDependencies {
  readonly mailer?: Mailer;
  readonly resolver?: DestinationResolver & { close(): void };
}

export interface CommandOutput {
  out(line: string): void;
  err(line: string): void;
}

class UsageError extends Error {}

const DAY_MS = 86_400_000;

// A date, or a date and time with an explicit zone: a bare local time would make the report
// interval depend on the TZ of whoever runs the command.
const ISO = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}))?$/;

/** Date.parse rolls 2024-02-30 over into March; a typo must not silently shift the interval. */
function realCalendarDate(value: string): boolean {
  const [y, m, d] = value.slice(0, 10).split("-").map(Number) as [number, number, number];
  return new Date(Date.UTC(y, m - 1, d)).toISOString().startsWith(value.slice(0, 10));
}

function parseTime(option: string, value: string): Date {
  const ms = ISO.test(value) && realCalendarDate(value) ? Date.parse(value) : Number.NaN;
  if (!Number.isFinite(ms)) {
    throw new UsageError(`${option} ${JSON.stringify(value)}: expected an ISO 8601 date (2024-05-01) or date-time with zone (2024-05-01T00:00:00Z)`);
  }
  return new Date(ms);
}

/** Default: the previous UTC day, 00:00 to 00:00, the period RFC 7489 §7.2 asks reporters to use. */
export function reportInterval(opts: { since?: string; until?: string }, now: Date): { since: Date; until: Date } {
  const midnight = Math.floor(now.getTime() / DAY_MS) * DAY_MS;
  const until = opts.until !== undefined ? parseTime("--until", opts.until) : new Date(midnight);
  const since = opts.since !== undefined ? parseTime("--since", opts.since) : new Date(until.getTime() - DAY_MS);
  if (since.getTime() >= until.getTime()) {
    throw new UsageError(`--since (${since.toISOString()}) must be before --until (${until.toISOString()})`);
  }
  return { since, until };
}

function identityFrom(opts: AggregateCommandOptions): ReportIdentity {
  const host = hostname();
  const email = opts.orgEmail ?? `postmaster@${host}`;
  const at = email.lastIndexOf("@");
  const receiver = opts.receiver ?? (at > 0 ? email.slice(at + 1) : host);
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(receiver)) {
    throw new UsageError(`receiver domain ${JSON.stringify(receiver)} is not a host name; give --receiver or an --org-email with a domain`);
  }
  return { orgName: opts.orgName ?? host, email, receiver };
}

interface Sending {
  readonly from: string;
  readonly mailer: Mailer;
  readonly resolver: DestinationResolver & { close(): void };
}

function sendingFrom(opts: AggregateCommandOptions, identity: ReportIdentity, deps: AggregateDependencies): Sending {
  const from = opts.from ?? identity.email;
  if (!isPlainAddress(from)) {
    throw new UsageError(`report sender ${JSON.stringify(from)} is not a plain mailbox address; give --from or --org-email`);
  }
  if (opts.smtp !== undefined && opts.sendmail !== undefined) throw new UsageError("give --smtp or --sendmail, not both");
  let mailer = deps.mailer;
  if (mailer === undefined) {
    try {
      mailer = reportMailer({ smtp: opts.smtp ?? DEFAULT_SMTP, ...(opts.sendmail === undefined ? {} : { sendmail: opts.sendmail }) }, identity.receiver);
    } catch (err) {
      throw new UsageError(`${opts.sendmail !== undefined ? "--sendmail" : "--smtp"}: ${(err as Error).message}`);
    }
  }
  let resolver = deps.resolver;
  if (resolver === undefined) {
    const servers = opts.dns === undefined ? [] : opts.dns.split(",").map((s) => s.trim()).filter((s) => s !== "");
    try {
      servers.forEach(parseServer);
    } catch (err) {
      throw new UsageError(`--dns: ${(err as Error).message}`);
    }
    resolver = createResolver(servers.length > 0 ? { servers } : {});
  }
  return { from, mailer, resolver };
}

export async function runAggregate(
  opts: AggregateCommandOptions,
  io: CommandOutput,
  now: Date = new Date(),
  deps: AggregateDependencies = {},
): Promise<number> {
  let interval: { since: Date; until: Date };
  let identity: ReportIdentity;
  let sending: Sending | undefined;
  try {
    interval = reportInterval(opts, now);
    identity = identityFrom(opts);
    if (opts.dryRun !== true) sending = sendingFrom(opts, identity, deps);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(`authmilter: report aggregate: ${err.message}`);
    return EX_USAGE;
  }
  const dbPath = opts.db ?? DEFAULT_HISTORY_PATH;
  const outDir = opts.out ?? ".";
  let reader: HistoryReader;
  try {
    reader = await openHistoryForReading(dbPath);
  } catch (err) {
    sending?.resolver.close();
    io.err(`authmilter: report aggregate: cannot read history database ${dbPath}: ${(err as Error).message}`);
    return 1;
  }
  try {
    const reports = buildAggregateReports(reader, interval, identity);
    const range = `${interval.since.toISOString()} to ${interval.until.toISOString()}`;
    if (reports.length === 0) {
      io.out(`no aggregate reports due for ${range}`);
      return 0;
    }
    if (sending !== undefined) return await mailReports(reports, identity, sending, io, range);
    await mkdir(outDir, { recursive: true });
    for (const r of reports) {
      const path = join(outDir, r.filename);
      // Whole files only: whatever later picks reports up from the directory never sees half of one.
      const partial = `${path}.partial`;
      await writeFile(partial, r.data);
      await rename(partial, path);
      const skipped = r.report.skipped > 0 ? `, ${r.report.skipped} without client address left out` : "";
      io.out(`${path}: ${r.report.messages} message(s) in ${r.report.records.length} record(s)${skipped}; rua=${r.report.rua.join(",")}`);
    }
    io.out(`${reports.length} aggregate report(s) for ${range} written to ${outDir} (dry run: nothing mailed)`);
    return 0;
  } finally {
    sending?.resolver.close();
    await reader.close();
  }
}

/**
 * Each report to each of its rua= addresses: one message per address, so a size limit or a
 * refusal at one does not affect the others. Returns the exit status.
 */
async function mailReports(
  reports: readonly GeneratedReport[],
  identity: ReportIdentity,
  sending: Sending,
  io: CommandOutput,
  range: string,
): Promise<number> {
  let sent = 0;
  let skipped = 0;
  let failed = 0;
  for (const r of reports) {
    const decisions = await resolveDestinations(r.report.policyDomain, r.report.rua, "rua", sending.resolver);
    for (const d of decisions) {
      if (d.outcome === "skip") {
        skipped++;
        io.out(`${r.filename}: not sent to ${d.uri}: ${d.reason}`);
        continue;
      }
      if (d.outcome === "tempfail" || d.destination === undefined) {
        failed++;
        io.err(`authmilter: report aggregate: ${r.filename}: not sent to ${d.uri}: ${d.reason}`);
        continue;
      }
      const to = d.destination.address;
      const data = aggregateReportMail(r, identity, { from: sending.from, to });
      if (d.destination.maxBytes !== undefined && data.length > d.destination.maxBytes) {
        skipped++;
        io.out(`${r.filename}: not sent to ${d.uri}: the message has ${data.length} bytes, over the address's limit of ${d.destination.maxBytes}`);
        continue;
      }
      try {
        await sending.mailer.send({ from: sending.from, to: [to], data });
        sent++;
        io.out(`${r.filename}: sent to ${to} via ${sending.mailer.description} (${data.length} bytes; ${r.report.messages} message(s) in ${r.report.records.length} record(s))`);
      } catch (err) {
        failed++;
        io.err(`authmilter: report aggregate: ${r.filename}: sending to ${to} via ${sending.mailer.description} failed: ${(err as Error).message}`);
      }
    }
  }
  io.out(`${reports.length} aggregate report(s) for ${range}: ${sent} message(s) sent, ${skipped} destination(s) skipped, ${failed} failed`);
  return failed > 0 ? EX_TEMPFAIL : 0;
}

export function registerReport(program: Command): void {
  const report = program.command("report").description("DMARC reports from the history database");
  report
    .command("aggregate")
    .description("build RFC 7489 aggregate reports, one .xml.gz per policy domain that asked for them (rua=)")
    .option("--since <iso>", "start of the interval, inclusive (default: 24 hours before --until)")
    .option("--until <iso>", "end of the interval, exclusive (default: today 00:00 UTC)")
    .option("-c, --config <file>", "read reports.* and dns.servers from this configuration (default: /etc/authmilter/authmilter.yaml when present)")
    .option("--db <file>", `history database (default: reports.history, else ${DEFAULT_HISTORY_PATH})`)
    .option("--org-name <name>", "report_metadata org_name: who is reporting (default: this host's name)")
    .option("--org-email <address>", "report_metadata email: where domain owners can reach you (default: postmaster@<host name>)")
    .option("--receiver <domain>", "the receiver domain in file names (default: the domain of --org-email)")
    .option("--dry-run", "write the reports to --out instead of mailing them")
    .option("--out <dir>", "directory for the report files with --dry-run", ".")
    .option("--smtp <host:port>", `mail the reports through this SMTP relay (default: ${DEFAULT_SMTP})`)
    .option("--sendmail <command>", "mail the reports with this sendmail command instead, e.g. \"/usr/sbin/sendmail\"")
    .option("--from <address>", "envelope sender and From: of the report messages (default: the --org-email)")
    .option("--dns <servers>", "DNS servers for the external destination check, ip[:port][,...] (default: the system's)")
    .addHelpText(
      "after",
      `
Times are ISO 8601: a date (UTC midnight) or a date-time with zone, e.g. 2024-05-01 or
2024-05-01T06:00:00+02:00. File names follow RFC 7489 §7.2.1.1:
  receiver!policy-domain!begin!end.xml.gz
Without --dry-run each report is mailed to every mailto: address of the policy domain's rua=,
one message per address (Subject "Report Domain: ... Submitter: ... Report-ID: <...>", the
.xml.gz attached). An address with a "!size" limit smaller than the message is skipped. An
address outside the policy domain's organizational domain is used only when
<policy-domain>._report._dmarc.<address-domain> has a "v=DMARC1" TXT record (RFC 7489 §7.1).
The --sendmail command is split at spaces (no shell) and gets -i -f FROM -- RCPT appended.
Exit status: 0 done (every report sent or skipped for the domain owner's reasons, as logged),
1 database unreadable, 64 bad options, 75 some report could not be sent (relay down or
refusing, DNS failure): run again later; the same interval gives the same Report-ID, so a
receiver can discard the copies that did arrive.`,
    )
    .action(async (opts: AggregateCommandOptions) => {
      process.exitCode = await runAggregate(withConfigDefaults(opts, loadConfig(opts.config).config), {
        out: (line) => console.log(line),
        err: (line) => console.error(line),
      });
    });
}
