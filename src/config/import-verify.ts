// How incoming mail is judged and what is done with it: the SoftwareHeader and opendmarc's
// trust and SPF options to verify.*, RequiredHeaders and opendmarc's enforcement options to
// policy.*, and opendkim's On-* actions to actions.*.

import { datasetLines, readDatasetFile } from "../keys/dataset.ts";
import { TableError } from "../keys/errors.ts";
import { hostListFromValues, matchesHost } from "../keys/hosts.ts";
import { parseConfBoolean, where, type ConfEntry } from "./import-conf.ts";
import type { Dataset, ImportContext } from "./import-context.ts";
import { readHostList } from "./import-hosts.ts";
import { ownAuthservIds } from "./import-identity.ts";

const ACTION_VALUES: Readonly<Record<string, string>> = {
  a: "accept", accept: "accept", t: "tempfail", tempfail: "tempfail", r: "reject", reject: "reject",
  q: "quarantine", quarantine: "quarantine", d: "discard", discard: "discard",
};

const ON_OPTIONS: readonly (readonly [string, string])[] = [
  ["On-BadSignature", "badSignature"],
  ["On-DNSError", "dnsError"],
  ["On-InternalError", "internalError"],
  ["On-NoSignature", "noSignature"],
  ["On-Security", "securityConcern"],
];

export function mapVerify(ctx: ImportContext): void {
  const dmarc = ctx.dmarc;
  const softs = [ctx.take(ctx.dkim, "SoftwareHeader"), ctx.take(ctx.dkim, "X-Header"), ctx.take(dmarc, "SoftwareHeader")].filter(
    (e): e is ConfEntry => e !== undefined,
  );
  if (softs.length > 0) {
    const on = softs.some((e) => parseConfBoolean(e.value) === true);
    ctx.set("verify.softwareHeader", on, `${softs.map((e) => ctx.source(e)).join("; ")}: one Authmilter-Filter header replaces DKIM-Filter and DMARC-Filter`);
  } else {
    ctx.note(undefined, "SoftwareHeader was not set: opendkim/opendmarc added no DKIM-Filter/DMARC-Filter header; authmilter adds Authmilter-Filter by default (verify.softwareHeader)");
  }
  if (dmarc === undefined) return;

  const own = ownAuthservIds(ctx);
  const trusted = ctx.take(dmarc, "TrustedAuthservIDs");
  const kept: string[] = [];
  if (trusted) {
    const dropped: string[] = [];
    for (const raw of trusted.value.split(",").map((v) => v.trim()).filter((v) => v !== "")) {
      const id = raw === "HOSTNAME" ? ctx.hostname : raw;
      if (own.has(id.toLowerCase())) {
        dropped.push(raw);
        continue;
      }
      const bad = ctx.schemaCheck("verify.trustedAuthservIds", id);
      if (bad !== undefined) ctx.note(where(trusted), `TrustedAuthservIDs entry "${raw}" left out: ${bad}`);
      else if (!kept.includes(id)) kept.push(id);
    }
    if (dropped.length > 0) {
      ctx.note(
        where(trusted),
        `TrustedAuthservIDs: ${dropped.join(", ")} left out: they are this host's own ids (opendmarc read opendkim's results through them). ` +
          `authmilter checks DKIM and SPF itself and removes incoming headers with its own id; trusting them would let senders forge results`,
      );
    }
    if (kept.length > 0) ctx.set("verify.trustedAuthservIds", kept, ctx.source(trusted));
  } else {
    ctx.note(undefined, "TrustedAuthservIDs was not set: opendmarc trusted headers carrying its own AuthservID; authmilter checks DKIM and SPF itself and trusts no upstream header unless verify.trustedAuthservIds lists it");
  }

  const self = ctx.take(dmarc, "SPFSelfValidate");
  if (self && parseConfBoolean(self.value) === true) ctx.set("verify.spfSelfValidate", true, ctx.source(self));
  else if (self && kept.length > 0) ctx.set("verify.spfSelfValidate", false, `${ctx.source(self)}: SPF comes from the trusted upstream headers`);
  else {
    const what = self ? `SPFSelfValidate ${self.value}` : "SPFSelfValidate was not set (opendmarc's default: false)";
    if (self) ctx.set("verify.spfSelfValidate", true, `${ctx.source(self)}: overridden, see the notes`);
    ctx.note(
      self && where(self),
      `${what}: opendmarc took SPF results from headers (a policyd-spf Received-SPF or Authentication-Results of its own host). ` +
        "With no trusted upstream authserv-id left, authmilter checks SPF itself (verify.spfSelfValidate: true); a policyd-spf check in Postfix is no longer needed for DMARC",
    );
  }

  const ignoreSpf = ctx.take(dmarc, "SPFIgnoreResults");
  if (ignoreSpf) ctx.set("verify.spfIgnoreResults", parseConfBoolean(ignoreSpf.value), ctx.source(ignoreSpf));

  const ignoreAuth = ctx.take(dmarc, "IgnoreAuthenticatedClients");
  if (ignoreAuth) ctx.set("verify.ignoreAuthenticatedClients", parseConfBoolean(ignoreAuth.value), ctx.source(ignoreAuth));
  else {
    ctx.note(undefined, "IgnoreAuthenticatedClients was not set: opendmarc checked mail from SASL-authenticated clients too; authmilter's default (verify.ignoreAuthenticatedClients: true) signs such mail and does not verify it, as opendkim did");
  }
}

export async function mapPolicy(ctx: ImportContext): Promise<void> {
  const reqs = [ctx.take(ctx.dkim, "RequiredHeaders"), ctx.take(ctx.dmarc, "RequiredHeaders")].filter((e): e is ConfEntry => e !== undefined);
  if (reqs.length > 0) {
    ctx.set("policy.requiredHeaders", reqs.some((e) => parseConfBoolean(e.value) === true), reqs.map((e) => ctx.source(e)).join("; "));
  } else {
    ctx.set("policy.requiredHeaders", false, "RequiredHeaders was not set: opendkim and opendmarc do not check header field counts. authmilter's default is true (550 5.7.1 for mail that breaks RFC 5322 §3.6); consider it");
  }

  const dmarc = ctx.dmarc;
  if (dmarc === undefined) return;
  const reject = ctx.take(dmarc, "RejectFailures");
  const enforce = reject !== undefined && parseConfBoolean(reject.value) === true;
  if (reject) ctx.set("policy.dmarc.enforce", enforce, ctx.source(reject));

  const hold = ctx.take(dmarc, "HoldQuarantinedMessages");
  if (hold) ctx.set("policy.dmarc.quarantine", parseConfBoolean(hold.value) ? "hold" : "mark", ctx.source(hold));
  else if (enforce) ctx.set("policy.dmarc.quarantine", "mark", "HoldQuarantinedMessages was not set: opendmarc delivered p=quarantine failures (no hold); authmilter's default is hold");

  const ignoreFrom = ctx.take(dmarc, "IgnoreMailFrom");
  if (ignoreFrom) {
    const domains = ignoreFrom.value.split(",").map((v) => v.trim().toLowerCase()).filter((v) => v !== "");
    ctx.set("policy.dmarc.ignoreDomains", domains, `${ctx.source(ignoreFrom)}: opendmarc skipped these domains entirely; authmilter still reports DMARC for them and never acts on it`);
  }

  const ignoreHosts = ctx.take(dmarc, "IgnoreHosts");
  if (ignoreHosts) {
    const path = ctx.abs(dmarc, ignoreHosts.value);
    let ds: Dataset | undefined;
    try {
      ds = { kind: "file", path, spec: path, items: datasetLines(await readDatasetFile(path)).map((l) => ({ key: l.key, value: l.value, where: `${path}:${l.line}` })) };
    } catch (err) {
      if (!(err instanceof TableError)) throw err;
      ctx.reject(ignoreHosts, `cannot be read: ${err.message}`);
    }
    const list = ds && (await readHostList(ctx, dmarc, ignoreHosts, "policy.dmarc.ignoreHosts", ds));
    if (list) {
      ctx.set(
        "policy.dmarc.ignoreHosts",
        list.values,
        `${ctx.source(ignoreHosts)}: ${list.from}. opendmarc skipped these clients entirely; authmilter still verifies their mail and never acts on DMARC for it`,
      );
    }
  } else if (enforce) {
    const internal = hostListFromValues((ctx.get("internalHosts") as string[] | undefined) ?? ["127.0.0.1", "::1"], "internalHosts");
    if (!matchesHost(internal, "127.0.0.1")) {
      ctx.set("policy.dmarc.ignoreHosts", ["127.0.0.1"], "IgnoreHosts was not set: opendmarc's default ignores 127.0.0.1");
    }
  }
}

export function mapActions(ctx: ImportContext): void {
  const dkim = ctx.dkim;
  if (dkim === undefined) return;
  const apply = (e: ConfEntry, target: string): void => {
    const action = ACTION_VALUES[e.value.toLowerCase()];
    if (action === undefined) {
      ctx.reject(e, `"${e.value}" is not an action (opendkim refuses it)`);
    } else if (action === "discard") {
      ctx.reject(e, "authmilter never discards mail silently; use reject (5xx) or quarantine (hold)");
    } else if (target === "internalError" && action === "quarantine") {
      ctx.reject(e, "actions.internalError can be tempfail, accept or reject");
    } else {
      ctx.set(`actions.${target}`, action, ctx.source(e));
    }
  };
  const def = ctx.take(dkim, "On-Default");
  for (const [name, target] of ON_OPTIONS) {
    const e = ctx.take(dkim, name);
    if (e) apply(e, target);
    else if (def) apply(def, target);
  }
}
