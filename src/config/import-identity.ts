// What the milter does and the name it gives its results: opendkim's Mode and the two programs'
// AuthservID, to mode and authservId.

import { where } from "./import-conf.ts";
import type { ImportContext } from "./import-context.ts";

export function mapMode(ctx: ImportContext): void {
  if (ctx.dkim === undefined) {
    ctx.set("mode", "verify", "opendmarc only verifies (no opendkim.conf given)");
    return;
  }
  const e = ctx.take(ctx.dkim, "Mode");
  const value = e?.value ?? "sv";
  if (!/^[sv]+$/.test(value)) {
    if (e) ctx.reject(e, `"${value}" is not a mode (opendkim accepts the letters s and v)`);
    ctx.set("mode", "sign+verify", "opendkim's default (sv)");
    return;
  }
  let mode = value.includes("s") ? (value.includes("v") ? "sign+verify" : "sign") : "verify";
  let comment = e ? ctx.source(e) : "opendkim's default (sv)";
  if (mode === "sign" && ctx.dmarc !== undefined) {
    mode = "sign+verify";
    comment += "; verify too, because opendmarc verified incoming mail";
  }
  ctx.set("mode", mode, comment);
}

export function mapAuthservId(ctx: ImportContext): void {
  const dkimId = ctx.take(ctx.dkim, "AuthservID");
  const dmarcId = ctx.take(ctx.dmarc, "AuthservID");
  const resolveId = (v: string) => (v === "HOSTNAME" ? ctx.hostname : v);
  const chosen = dmarcId ?? dkimId;
  if (dkimId && dmarcId && resolveId(dkimId.value) !== resolveId(dmarcId.value)) {
    ctx.note(
      where(dkimId),
      `AuthservID differs: opendkim ${dkimId.value}, opendmarc ${dmarcId.value}. authmilter writes one Authentication-Results header for DKIM, SPF and DMARC, ` +
        `so it takes opendmarc's (the DMARC verdict is what downstream filters act on); anything that read opendkim's "${dkimId.value}" headers must now read "${resolveId(dmarcId.value)}"`,
    );
  }
  if (chosen === undefined) {
    ctx.note(
      undefined,
      "AuthservID was not set: opendkim and opendmarc used the MTA's name ($myhostname); authmilter uses this machine's host name. Set authservId if the two differ.",
    );
    return;
  }
  if (chosen.value === "HOSTNAME") {
    ctx.comment("mode", `AuthservID HOSTNAME (${where(chosen)}): authmilter's default authservId is already this machine's name`);
    return;
  }
  const bad = ctx.schemaCheck("authservId", chosen.value);
  if (bad !== undefined) {
    ctx.reject(chosen, `authmilter cannot use it: ${bad}`);
    return;
  }
  ctx.set("authservId", chosen.value, ctx.source(chosen));
}

/** The authserv-ids that are ours: Authentication-Results carrying them must never be trusted. */
export function ownAuthservIds(ctx: ImportContext): Set<string> {
  const ids = new Set<string>([ctx.hostname.toLowerCase()]);
  for (const conf of ctx.confs()) {
    const v = conf.get("AuthservID")?.value;
    if (v !== undefined) ids.add((v === "HOSTNAME" ? ctx.hostname : v).toLowerCase());
  }
  const set = ctx.get("authservId");
  if (typeof set === "string") ids.add(set.toLowerCase());
  return ids;
}
