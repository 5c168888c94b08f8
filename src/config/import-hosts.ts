// Host lists: opendkim's InternalHosts, ExternalIgnoreList and PeerList, and the reading of a
// host-list file into the entries authmilter accepts (opendmarc's IgnoreHosts uses it too).

import { TableError } from "../keys/errors.ts";
import { hostListFromValues } from "../keys/hosts.ts";
import type { ConfEntry, ParsedConf } from "./import-conf.ts";
import type { Dataset, ImportContext } from "./import-context.ts";

/** Reads a host list and returns the entries authmilter accepts, noting any it drops. */
export async function readHostList(ctx: ImportContext, conf: ParsedConf, entry: ConfEntry, setting: string, dataset?: Dataset): Promise<{ values: string[]; from: string } | undefined> {
  const ds = dataset ?? (await ctx.tryDataset(conf, entry));
  if (ds === undefined) return undefined;
  const values: string[] = [];
  for (const item of ds.items) {
    if (item.value !== undefined) {
      ctx.note(item.where, `"${item.key} ${item.value}": ${conf.program} reads only the first word of a host-list line; "${item.value}" is ignored`);
    }
    let value = item.key;
    if (ds.kind === "refile" && value.includes("*")) {
      // opendkim matches the host name, its parents (".example.com") and the address strings
      // against the patterns; "*.example.com" then means what ".example.com" means here.
      const m = /^(!?)\*(\.[^*]+)$/.exec(value);
      if (m === null) {
        ctx.note(item.where, `${entry.name} pattern "${value}" left out of ${setting}: only "*.domain" patterns have an equivalent (".domain")`);
        continue;
      }
      value = `${m[1]}${m[2]}`;
      ctx.note(item.where, `${entry.name} pattern "${item.key}" written as "${value}" (the host and every subdomain's host, as the pattern matched)`);
    }
    try {
      hostListFromValues([value], setting);
      values.push(value);
    } catch (err) {
      if (!(err instanceof TableError)) throw err;
      ctx.note(item.where, `${entry.name} entry "${item.key}" left out of ${setting}: ${err.reason}`);
    }
  }
  const from = ds.path !== undefined ? `${values.length} entries inlined from ${ds.path}` : `${values.length} entries`;
  return { values, from };
}

export async function mapHostLists(ctx: ImportContext): Promise<void> {
  const dkim = ctx.dkim;
  if (dkim === undefined) return;
  const internal = ctx.take(dkim, "InternalHosts");
  if (internal) {
    const list = await readHostList(ctx, dkim, internal, "internalHosts");
    if (list) ctx.set("internalHosts", list.values, `${ctx.source(internal)}: ${list.from}`);
  }
  const external = ctx.take(dkim, "ExternalIgnoreList");
  if (external) {
    const list = await readHostList(ctx, dkim, external, "externalIgnoreList");
    if (list) ctx.set("externalIgnoreList", list.values, `${ctx.source(external)}: ${list.from}`);
  }
  const peers = ctx.peek(dkim, "PeerList");
  if (peers) {
    const list = await readHostList(ctx, dkim, peers, "PeerList");
    if (list) {
      ctx.reject(
        peers,
        `no equivalent: authmilter has no list of clients it leaves alone entirely. If these hosts are your own relays, add them to internalHosts ` +
          `(their mail is signed, not verified); if they are upstream filters, list their authserv-id in verify.trustedAuthservIds. ` +
          `Entries (${list.values.length}): ${list.values.join(", ")}`,
      );
    }
  }
}
