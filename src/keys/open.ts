// Loading tables from the data-set strings an opendkim.conf holds ("refile:/etc/...",
// "/etc/...", "127.0.0.1,::1"), so the config layer can pass settings through unchanged.

import { parseDatasetSpec } from "./dataset.ts";
import { TableError } from "./errors.ts";
import { DEFAULT_INTERNAL_HOSTS, hostListFromValues, loadHostList, type HostList } from "./hosts.ts";
import { loadKeyTable, loadSigningTable, type KeyTable, type KeyTableOptions, type SigningTable } from "./tables.ts";

/** KeyTable: a flat file only ("file:/path" or "/path"). */
export async function openKeyTable(spec: string, options: KeyTableOptions = {}): Promise<KeyTable> {
  const ds = parseDatasetSpec(spec, "KeyTable");
  if (ds.kind !== "file") throw new TableError("KeyTable", undefined, `"${spec}": a KeyTable must be a file (file:/path or /path)`);
  return loadKeyTable(ds.path, options);
}

/** SigningTable: "file:/path" or "/path" (exact keys) or "refile:/path" (wildcard patterns). */
export async function openSigningTable(spec: string): Promise<SigningTable> {
  const ds = parseDatasetSpec(spec, "SigningTable");
  if (ds.kind === "csl") {
    throw new TableError("SigningTable", undefined, `"${spec}": a SigningTable must be a file (file:/path, /path or refile:/path)`);
  }
  return loadSigningTable(ds.path, ds.kind);
}

/**
 * InternalHosts, ExternalIgnoreList, PeerList: a file or an inline list. `setting` names the
 * option in errors. Without a spec, InternalHosts gets opendkim's default (127.0.0.1 and ::1).
 */
export async function openHostList(spec: string | undefined, setting: string): Promise<HostList> {
  if (spec === undefined) {
    return hostListFromValues(setting === "InternalHosts" ? DEFAULT_INTERNAL_HOSTS : [], setting);
  }
  const ds = parseDatasetSpec(spec, setting);
  if (ds.kind === "refile") throw new TableError(setting, undefined, `"${spec}": host lists take no patterns; use file:/path or a list`);
  return ds.kind === "file" ? loadHostList(ds.path) : hostListFromValues(ds.values, setting);
}
