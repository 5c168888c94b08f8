// What the milters recorded: their syslog options to log.*, and opendmarc's per-message
// HistoryFile to authmilter's DMARC history (reports.history).

import { FACILITIES } from "../ops/syslog.ts";
import { DEFAULT_HISTORY_PATH } from "../reports/history.ts";
import { parseConfBoolean, where, type ConfEntry, type Program } from "./import-conf.ts";
import type { ImportContext } from "./import-context.ts";
import { unmappedReason } from "./import-options.ts";

/** Where syslog(3) sends, as opendkim and opendmarc used it. */
const SYSLOG_SOCKET = "/dev/log";

export function mapLogging(ctx: ImportContext): void {
  const dkim = ctx.dkim;
  const dmarc = ctx.dmarc;
  const syslogs = [ctx.take(dkim, "Syslog"), ctx.take(dmarc, "Syslog")].filter((e): e is ConfEntry => e !== undefined);
  const on = syslogs.filter((e) => parseConfBoolean(e.value) === true);
  const facilities = [ctx.take(dkim, "SyslogFacility"), ctx.take(dmarc, "SyslogFacility")].filter((e): e is ConfEntry => e !== undefined);
  const logs = (program: Program) => on.some((e) => e.program === program);

  if (on.length === 0) {
    if (syslogs.length > 0) ctx.comment("log", `${syslogs.map((e) => ctx.source(e)).join("; ")}: no syslog, authmilter's default (log.syslog unset)`);
  } else {
    const quiet = on.length === 1 ? (on[0]!.program === "opendkim" ? dmarc : dkim) : undefined;
    ctx.set(
      "log.syslog",
      SYSLOG_SOCKET,
      `${on.map((e) => ctx.source(e)).join("; ")}: syslog(3) wrote to ${SYSLOG_SOCKET}` +
        `${quiet ? `; ${quiet.program} did not log there, but authmilter has one log, so its DKIM, SPF and DMARC lines all go there` : ""}. ` +
        "log.stdout stays true (JSON lines on standard output, journald under systemd); set it to false to log to syslog only, as before",
    );
  }

  // authmilter logs with one facility: that of the first program (opendkim, then opendmarc)
  // that logged with one authmilter has; the others are reported.
  for (const f of facilities) {
    if (!logs(f.program)) ctx.reject(f, `${f.program} did not log to syslog (Syslog not on), so it had no effect; log.facility applies to log.syslog only`);
  }
  const effective = on.map((e) => {
    const entry = facilities.find((f) => f.program === e.program);
    return { program: e.program, entry, value: (entry?.value ?? "mail").toLowerCase() };
  });
  const usable = (v: string) => (FACILITIES as readonly string[]).includes(v);
  const chosen = effective.find((f) => usable(f.value));
  const facility = chosen?.value ?? "mail";
  const same = effective.flatMap((f) => (f.value === facility && f.entry ? [f.entry] : []));
  if (same.length > 0) ctx.set("log.facility", facility, same.map((e) => ctx.source(e)).join("; "));
  for (const f of effective) {
    if (f === chosen || f.value === facility) continue;
    const what = chosen ? `log.facility is ${facility} (${chosen.program}'s${chosen.entry ? "" : ", its default"})` : `log.facility stays ${facility}`;
    if (f.entry === undefined) {
      ctx.note(chosen?.entry && where(chosen.entry), `${f.program} logged with facility mail (its default); authmilter logs with one facility and ${what}: adjust the syslog.conf rules that select mail`);
    } else if (!usable(f.value)) {
      ctx.reject(f.entry, `"${f.entry.value}" is not a facility authmilter logs with (${FACILITIES.join(", ")}); ${what}: adjust the syslog.conf rules that select ${f.value}`);
    } else {
      ctx.reject(f.entry, `authmilter logs with one facility and ${what}: adjust the syslog.conf rules that select ${f.value}`);
    }
  }

  if (dkim !== undefined) {
    const success = ctx.take(dkim, "SyslogSuccess");
    const successOn = success !== undefined && parseConfBoolean(success.value) === true;
    if (success) ctx.set("log.success", successOn, ctx.source(success));
    else {
      ctx.set(
        "log.success",
        false,
        "SyslogSuccess was not set: opendkim did not log successful signing and verification; authmilter's default is true (at info); false logs them at debug",
      );
    }
    const why = ctx.take(dkim, "LogWhy");
    if (why) ctx.set("log.why", parseConfBoolean(why.value) === true, ctx.source(why));
    else {
      ctx.set("log.why", false, "LogWhy was not set: opendkim did not log why it signed or verified a message; authmilter's default is true (at info); false logs it at debug");
    }
    const results = ctx.peek(dkim, "LogResults");
    if (results && parseConfBoolean(results.value) === true && !successOn) {
      ctx.reject(
        results,
        `${unmappedReason("opendkim", "LogResults")}. LogResults logged passing signatures too: set log.success: true to keep them at info (it also logs successful signing and passing SPF/DMARC)`,
      );
    }
    if (!successOn && logs("opendmarc")) {
      ctx.note(
        success && where(success),
        "log.success is false: authmilter logs DMARC results that pass at debug, where opendmarc logged every DMARC result; set log.success: true to keep them at info (it also logs DKIM and SPF passes)",
      );
    }
  } else if (dmarc !== undefined) {
    ctx.set("log.why", false, "opendmarc did not log why a message was or was not verified; authmilter's default is true (at info); false logs it at debug");
    ctx.comment("log.why", "log.success stays true (the default): opendmarc logged every DMARC result, passes included");
  }
}

export function mapHistory(ctx: ImportContext): void {
  const file = ctx.take(ctx.dmarc, "HistoryFile");
  if (file === undefined) return;
  ctx.set("reports.history", DEFAULT_HISTORY_PATH, `${ctx.source(file)}: authmilter's own DMARC history (SQLite, in the unit's StateDirectory)`);
  ctx.note(
    where(file),
    `HistoryFile ${file.value}: opendmarc's text history is not imported (authmilter's store is a different format); authmilter records from now on in ${DEFAULT_HISTORY_PATH} ` +
      "(reports.history; rows are kept for reports.retention, 180 days by default), and the aggregate reports are built from it with `authmilter report aggregate`. " +
      "Send the reports still due from the old file with opendmarc-import and opendmarc-reports before you retire them",
  );
}
