// `authmilter report aggregate`: DMARC aggregate reports from the history database, what
// opendmarc-reports did from MySQL. For now the reports are written as files (--dry-run --out);
// mailing them to the rua= addresses comes later.

import { mkdir, rename, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { buildAggregateReports, type ReportIdentity } from "../reports/aggregate.ts";
import { DEFAULT_HISTORY_PATH, openHistoryReader, type HistoryReader } from "../reports/history.ts";

/** sysexits: the caller can tell a wrong command line from a failure to do the work. */
const EX_USAGE = 64;
const EX_NOT_IMPLEMENTED = 2;

export interface AggregateCommandOptions {
  readonly since?: string;
  readonly until?: string;
  readonly db?: string;
  readonly orgName?: string;
  readonly orgEmail?: string;
  readonly receiver?: string;
  readonly dryRun?: boolean;
  readonly out?: string;
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

export async function runAggregate(opts: AggregateCommandOptions, io: CommandOutput, now: Date = new Date()): Promise<number> {
  if (opts.dryRun !== true) {
    io.err(
      "authmilter: report aggregate: mailing reports is not implemented yet; " +
        "use --dry-run --out DIR to write the report files instead",
    );
    return EX_NOT_IMPLEMENTED;
  }
  let interval: { since: Date; until: Date };
  let identity: ReportIdentity;
  try {
    interval = reportInterval(opts, now);
    identity = identityFrom(opts);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(`authmilter: report aggregate: ${err.message}`);
    return EX_USAGE;
  }
  const dbPath = opts.db ?? DEFAULT_HISTORY_PATH;
  const outDir = opts.out ?? ".";
  let reader: HistoryReader;
  try {
    reader = openHistoryReader(dbPath);
  } catch (err) {
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
    await reader.close();
  }
}

export function registerReport(program: Command): void {
  const report = program.command("report").description("DMARC reports from the history database");
  report
    .command("aggregate")
    .description("build RFC 7489 aggregate reports, one .xml.gz per policy domain that asked for them (rua=)")
    .option("--since <iso>", "start of the interval, inclusive (default: 24 hours before --until)")
    .option("--until <iso>", "end of the interval, exclusive (default: today 00:00 UTC)")
    .option("--db <file>", "history database", DEFAULT_HISTORY_PATH)
    .option("--org-name <name>", "report_metadata org_name: who is reporting (default: this host's name)")
    .option("--org-email <address>", "report_metadata email: where domain owners can reach you (default: postmaster@<host name>)")
    .option("--receiver <domain>", "the receiver domain in file names (default: the domain of --org-email)")
    .option("--dry-run", "write the reports to --out instead of mailing them (mailing is not implemented yet)")
    .option("--out <dir>", "directory for the report files with --dry-run", ".")
    .addHelpText(
      "after",
      `
Times are ISO 8601: a date (UTC midnight) or a date-time with zone, e.g. 2024-05-01 or
2024-05-01T06:00:00+02:00. File names follow RFC 7489 §7.2.1.1:
  receiver!policy-domain!begin!end.xml.gz
Exit status: 0 done, 1 database unreadable, 2 without --dry-run (mailing not implemented yet),
64 bad options.`,
    )
    .action(async (opts: AggregateCommandOptions) => {
      process.exitCode = await runAggregate(opts, {
        out: (line) => console.log(line),
        err: (line) => console.error(line),
      });
    });
}
