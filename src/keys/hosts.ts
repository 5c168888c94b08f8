// opendkim's peer lists: InternalHosts, ExternalIgnoreList, PeerList (often kept in a file named
// /etc/opendkim/TrustedHosts, as Debian guides do). Semantics follow opendkim's util.c dkimf_checkhost() / dkimf_checkip(), which look up
// generated strings in the set; we parse entries up front and compare values instead.

import { isIPv4, isIPv6 } from "node:net";
import { datasetLines, readDatasetFile } from "./dataset.ts";
import { TableError } from "./errors.ts";

export interface HostList {
  readonly source: string;
  /** Lower-cased names; ".example.com" entries keep their leading dot. */
  readonly names: ReadonlyMap<string, Verdict>;
  /** Per family, exact addresses (level "exact") and networks by prefix length. */
  readonly v4: AddressSet;
  readonly v6: AddressSet;
  /** Number of entries read. */
  readonly size: number;
}

interface HostListBuilder {
  source: string;
  names: Map<string, Verdict>;
  v4: AddressSet;
  v6: AddressSet;
  size: number;
}

export interface Verdict {
  positive: boolean;
  negative: boolean;
}

export interface AddressSet {
  /** Keys "exact" and prefix lengths, each mapping a network address to its verdict. */
  readonly levels: Map<"exact" | number, Map<bigint, Verdict>>;
}

/** opendkim's default InternalHosts (opendkim.h DEFINTERNAL). */
export const DEFAULT_INTERNAL_HOSTS: readonly string[] = ["127.0.0.1", "::1"];

/** Parses a host-list file: one entry per line, "#" comments, "!" negation. */
export function parseHostList(text: string, file: string): HostList {
  const list = emptyList(file);
  for (const { line, key, value } of datasetLines(text)) {
    if (value !== undefined) {
      // opendkim would take the first word and silently ignore the rest.
      throw new TableError(file, line, `one entry per line expected, found "${key} ${value}"`);
    }
    addEntry(list, key, (reason) => {
      throw new TableError(file, line, reason);
    });
  }
  return list;
}

/**
 * Builds a host list from inline values (a "csl:" data set or a YAML list); `source` names the
 * setting, and an error's `line` is the 1-based position of the value in the list.
 */
export function hostListFromValues(values: readonly string[], source: string): HostList {
  const list = emptyList(source);
  values.forEach((value, i) => {
    addEntry(list, value.trim(), (reason) => {
      throw new TableError(source, i + 1, reason);
    });
  });
  return list;
}

/**
 * A host list from configuration: inline entries, and opendkim host-list files named as
 * "file:/path" or "/path" (TrustedHosts, InternalHosts, ExternalIgnoreList, IgnoreHosts as
 * they are on disk), all in one list. Errors name the setting's position or the file's line.
 */
export function hostListFromSources(values: readonly string[], source: string, readFile: (path: string) => string): HostList {
  const list = emptyList(source);
  values.forEach((raw, i) => {
    const value = raw.trim();
    const path = value.startsWith("file:") ? value.slice(5) : value.startsWith("/") ? value : undefined;
    if (path === undefined) {
      addEntry(list, value, (reason) => {
        throw new TableError(source, i + 1, reason);
      });
      return;
    }
    let text: string;
    try {
      text = readFile(path);
    } catch (err) {
      throw new TableError(path, undefined, `cannot read the host list (${source} entry ${i + 1}): ${(err as Error).message}`);
    }
    for (const { line, key, value: extra } of datasetLines(text)) {
      if (extra !== undefined) throw new TableError(path, line, `one entry per line expected, found "${key} ${extra}"`);
      addEntry(list, key, (reason) => {
        throw new TableError(path, line, reason);
      });
    }
  });
  return list;
}

export async function loadHostList(path: string): Promise<HostList> {
  return parseHostList(await readDatasetFile(path), path);
}

function emptyList(source: string): HostListBuilder {
  return { source, names: new Map(), v4: { levels: new Map() }, v6: { levels: new Map() }, size: 0 };
}

const NAME_RE = /^\.?[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$/;

function addEntry(list: HostListBuilder, raw: string, fail: (reason: string) => never): void {
  const negative = raw.startsWith("!");
  const entry = negative ? raw.slice(1) : raw;
  if (entry === "") fail(`empty entry "${raw}"`);

  const ip = parseAddressEntry(entry, fail);
  if (ip !== undefined) {
    const set = ip.family === 4 ? list.v4 : list.v6;
    const level = ip.prefix ?? "exact";
    let nets = set.levels.get(level);
    if (nets === undefined) {
      nets = new Map();
      set.levels.set(level, nets);
    }
    mark(nets, ip.value, negative);
  } else {
    const name = entry.toLowerCase();
    if (name.includes("*")) fail(`"${entry}": wildcards are not supported in host lists; write ".${name.replace(/^[*.]+/, "")}" to match all subdomains`);
    if (!NAME_RE.test(name)) fail(`"${entry}" is neither an IP address, a CIDR block nor a host name`);
    mark(list.names, name, negative);
  }
  list.size++;
}

function mark<K>(map: Map<K, Verdict>, key: K, negative: boolean): void {
  const v = map.get(key) ?? { positive: false, negative: false };
  if (negative) v.negative = true;
  else v.positive = true;
  map.set(key, v);
}

interface AddressEntry {
  readonly family: 4 | 6;
  readonly value: bigint;
  readonly prefix: number | undefined;
}

function parseAddressEntry(entry: string, fail: (reason: string) => never): AddressEntry | undefined {
  // "[192.0.2.1]" and "[192.0.2.0]/24" are accepted by opendkim as well as the bare forms.
  const m = /^\[([^\]]*)\](\/.*)?$/.exec(entry);
  const addrText = m !== null ? (m[1] ?? "") : entry.split("/")[0] ?? "";
  const slash = m !== null ? m[2] : entry.includes("/") ? entry.slice(entry.indexOf("/")) : undefined;
  const looksLikeIp = m !== null || slash !== undefined || entry.includes(":") || /^[0-9.]+$/.test(entry);
  if (!looksLikeIp) return undefined;

  const family = isIPv4(addrText) ? 4 : isIPv6(addrText) && !addrText.includes("%") ? 6 : 0;
  if (family === 0) {
    if (/^[0-9.]+$/.test(addrText)) {
      fail(`"${entry}" is not a full dotted-quad address (opendkim compares the text "a.b.c.d", so short forms never match)`);
    }
    fail(`"${entry}" is not a valid IP address or CIDR block`);
  }
  const fam = family as 4 | 6;
  const value = addressToBigint(addrText, fam);
  if (slash === undefined) return { family: fam, value, prefix: undefined };
  const bitsText = slash.slice(1);
  const max = fam === 4 ? 32 : 128;
  const prefix = Number(bitsText);
  if (!/^[0-9]{1,3}$/.test(bitsText) || prefix > max) fail(`"${entry}": prefix length must be 0..${max}`);
  const network = value & mask(prefix, fam);
  if (network !== value) {
    // opendkim looks up the masked network address; an entry with host bits set never matches.
    fail(`"${entry}" has host bits set and would never match; write ${bigintToAddress(network, fam)}/${prefix}`);
  }
  return { family: fam, value: network, prefix };
}

function mask(prefix: number, family: 4 | 6): bigint {
  const width = family === 4 ? 32n : 128n;
  if (prefix === 0) return 0n;
  return ((1n << width) - 1n) ^ ((1n << (width - BigInt(prefix))) - 1n);
}

function addressToBigint(text: string, family: 4 | 6): bigint {
  if (family === 4) {
    return text.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
  }
  let t = text;
  // An embedded dotted quad ("::ffff:192.0.2.1") becomes two hextets.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  if (v4 !== null && v4[1] !== undefined) {
    const n = addressToBigint(v4[1], 4);
    t = t.slice(0, v4.index) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head = "", tail] = t.split("::");
  const hs = head === "" ? [] : head.split(":");
  const ts = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? hs : [...hs, ...Array<string>(8 - hs.length - ts.length).fill("0"), ...ts];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function bigintToAddress(value: bigint, family: 4 | 6): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => ((value >> s) & 0xffn).toString()).join(".");
  }
  const groups: string[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(((value >> s) & 0xffffn).toString(16));
  // Compress the longest run of zero groups (RFC 5952), which is the form opendkim expects.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  if (best === -1) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

/**
 * Whether a client is in the list, with opendkim's semantics:
 * - The host name (skipped if absent or a "[address]" literal, which Postfix sends when reverse
 *   DNS failed) is tried whole, then each parent as ".parent"; at each step "!entry" means no and
 *   "entry" means yes. So "example.com" matches only that host, ".example.com" its subdomains.
 * - If the name gave no "yes", the address is tried: exact, then every network from the longest
 *   prefix to /0; at each step a negative entry means no, a positive one yes. "10.1.1.1" beats
 *   "!10.0.0.0/8", and "!10.1.0.0/16" beats "10.0.0.0/8".
 * - Like opendkim (host check || IP check), a "!name" entry does not stop an address match.
 * - An IPv4-mapped IPv6 address ("::ffff:192.0.2.1") is tried as IPv6, then as IPv4.
 * `ip` that is not an address (a UNIX socket path, "unknown") takes part in no match.
 */
export function matchesHost(list: HostList, ip: string | undefined, hostname?: string): boolean {
  if (hostname !== undefined && hostname !== "" && !hostname.startsWith("[")) {
    const host = hostname.toLowerCase().replace(/\.$/, "");
    for (let p: string | undefined = host; p !== undefined; ) {
      const v = list.names.get(p);
      if (v?.negative === true) break;
      if (v?.positive === true) return true;
      const dot: number = p.indexOf(".", p.startsWith(".") ? 1 : 0);
      p = dot === -1 ? undefined : p.slice(dot);
    }
  }
  if (ip === undefined) return false;
  const addr = ip.replace(/^\[(.*)\]$/, "$1").replace(/^IPv6:/i, "");
  if (isIPv4(addr)) return checkAddress(list.v4, addressToBigint(addr, 4), 4) === true;
  if (!isIPv6(addr)) return false;
  const bare = addr.replace(/%.*$/, "");
  const value = addressToBigint(bare, 6);
  const v6 = checkAddress(list.v6, value, 6);
  if (v6 !== undefined) return v6;
  if (value >> 32n === 0xffffn) return checkAddress(list.v4, value & 0xffffffffn, 4) === true;
  return false;
}

/** true/false when an entry decided, undefined when none applied. */
function checkAddress(set: AddressSet, value: bigint, family: 4 | 6): boolean | undefined {
  if (set.levels.size === 0) return undefined;
  const decide = (v: Verdict | undefined): boolean | undefined => (v === undefined ? undefined : !v.negative);
  const exact = decide(set.levels.get("exact")?.get(value));
  if (exact !== undefined) return exact;
  for (let prefix = family === 4 ? 32 : 128; prefix >= 0; prefix--) {
    const nets = set.levels.get(prefix);
    if (nets === undefined) continue;
    const d = decide(nets.get(value & mask(prefix, family)));
    if (d !== undefined) return d;
  }
  return undefined;
}
