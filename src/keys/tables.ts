// opendkim's KeyTable and SigningTable, read from the files an existing installation already has,
// and the lookup that turns an author address into signing requests (opendkim.c
// dkimf_apply_signtable / dkimf_add_signrequest, opendkim.conf(5) KeyTable and SigningTable).

import { resolve as resolvePath } from "node:path";
import { datasetLines, readDatasetFile } from "./dataset.ts";
import { TableError } from "./errors.ts";

/** Where the private key of a KeyTable entry comes from. */
export type KeySource =
  | { readonly kind: "file"; readonly path: string }
  | { readonly kind: "inline"; readonly data: string };

export interface KeyTableEntry {
  readonly name: string;
  /** d= value, or "%" for "the author's domain". */
  readonly domain: string;
  readonly selector: string;
  readonly key: KeySource;
  readonly line: number;
}

export interface KeyTable {
  readonly file: string;
  /** By key name; names are case-sensitive, as in opendkim (its KeyTable is opened without ICASE). */
  readonly entries: ReadonlyMap<string, KeyTableEntry>;
}

export interface SigningTableEntry {
  /** As written in the file. */
  readonly pattern: string;
  /** KeyTable name, or "%" for "the author's domain". */
  readonly keyName: string;
  /** Optional i= value ("%" becomes the author's domain). */
  readonly identity: string | undefined;
  readonly line: number;
}

export interface SigningTable {
  readonly file: string;
  /** "file": exact keys tried in opendkim's fixed order; "refile": wildcard patterns in file order. */
  readonly kind: "file" | "refile";
  readonly entries: readonly SigningTableEntry[];
  /** Plain tables: lower-cased key → entry. Refile tables: compiled patterns in file order. */
  readonly index: ReadonlyMap<string, SigningTableEntry>;
  readonly patterns: readonly { readonly re: RegExp; readonly entry: SigningTableEntry }[];
}

// RFC 6376 §3.5 selectors and d= are sub-domains; "_" is allowed because it is common in practice
// (and mailauth accepts it). U-labels must be written as A-labels (xn--).
const LABEL = "[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?";
const DOMAIN_RE = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);

export function isValidDomainName(name: string): boolean {
  return name.length <= 253 && DOMAIN_RE.test(name);
}

export interface KeyTableOptions {
  /** opendkim's BaseDirectory: relative ("./", "../") key paths are resolved against it. */
  readonly baseDirectory?: string;
}

/**
 * Parses a KeyTable: `name domain:selector:keydata`. The last field takes the rest of the line
 * (so a path may contain ":"); it is a file if it starts with "/", "./" or "../", else inline key
 * data (opendkim accepts base64 DER there: libopendkim decodes keys beginning "MII").
 */
export function parseKeyTable(text: string, file: string, options: KeyTableOptions = {}): KeyTable {
  const entries = new Map<string, KeyTableEntry>();
  for (const { line, key: name, value } of datasetLines(text)) {
    const fail: (reason: string) => never = (reason) => {
      throw new TableError(file, line, reason);
    };
    if (value === undefined) fail(`key "${name}" has no value; expected "${name} domain:selector:/path/to/key"`);
    const v = value;
    const c1 = v.indexOf(":");
    const c2 = c1 === -1 ? -1 : v.indexOf(":", c1 + 1);
    if (c2 === -1) fail(`value "${v}" must have three fields, domain:selector:/path/to/key`);
    const domain = v.slice(0, c1).trim();
    const selector = v.slice(c1 + 1, c2).trim();
    const keyData = v.slice(c2 + 1).trim();
    if (domain === "") fail("the domain field (before the first \":\") is empty");
    if (selector === "") fail("the selector field (between the first and second \":\") is empty");
    if (keyData === "") fail("the key field (after the second \":\") is empty");
    if (domain !== "%" && !isValidDomainName(domain)) {
      fail(`"${domain}" is not a valid signing domain (write "%" for the author's domain, IDNs as xn-- A-labels)`);
    }
    if (!isValidDomainName(selector)) fail(`"${selector}" is not a valid selector`);
    const previous = entries.get(name);
    if (previous !== undefined) {
      // opendkim silently uses the first; which key signs must never be a guess.
      fail(`key name "${name}" is already defined on line ${previous.line}`);
    }
    entries.set(name, { name, domain, selector, key: keySource(keyData, options, fail), line });
  }
  return { file, entries };
}

function keySource(data: string, options: KeyTableOptions, fail: (reason: string) => never): KeySource {
  if (data.startsWith("/")) return { kind: "file", path: data };
  if (data.startsWith("./") || data.startsWith("../")) {
    return { kind: "file", path: options.baseDirectory === undefined ? data : resolvePath(options.baseDirectory, data) };
  }
  if (data.startsWith("-----")) {
    fail("a PEM key cannot be written on one line; put it in a file and give the path");
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(data)) {
    fail(
      `"${data}" is neither a path (paths must start with "/", "./" or "../") nor base64 key data; ` +
        `for a relative path write "./${data}"`,
    );
  }
  return { kind: "inline", data };
}

/**
 * Parses a SigningTable. `kind` comes from the data-set spec: "file" (plain, "file:/path" or
 * "/path") or "refile" ("refile:/path"). Values are `keyname` or `keyname:identity`.
 */
export function parseSigningTable(text: string, file: string, kind: "file" | "refile"): SigningTable {
  const entries: SigningTableEntry[] = [];
  const index = new Map<string, SigningTableEntry>();
  const patterns: { re: RegExp; entry: SigningTableEntry }[] = [];
  for (const { line, key: pattern, value } of datasetLines(text)) {
    const fail: (reason: string) => never = (reason) => {
      throw new TableError(file, line, reason);
    };
    if (value === undefined) fail(`"${pattern}" has no key name; expected "${pattern} keyname"`);
    const v = value;
    if (/[ \t]/.test(v)) fail(`unexpected whitespace in value "${v}"; expected "keyname" or "keyname:identity"`);
    const colon = v.indexOf(":");
    const keyName = colon === -1 ? v : v.slice(0, colon);
    const identity = colon === -1 || colon === v.length - 1 ? undefined : v.slice(colon + 1);
    if (keyName === "") fail(`empty key name in "${v}"`);
    // opendkim opens the SigningTable with DKIMF_DB_FLAG_ASCIIONLY: a non-ASCII lookup never matches.
    if (/[^\x21-\x7e]/.test(pattern)) fail(`"${pattern}" contains non-ASCII characters and could never match`);
    const entry: SigningTableEntry = { pattern, keyName, identity, line };
    if (kind === "refile") {
      patterns.push({ re: compilePattern(pattern, fail), entry });
    } else {
      checkPlainKey(pattern, fail);
      const k = pattern.toLowerCase();
      const previous = index.get(k);
      if (previous !== undefined) fail(`"${pattern}" is already listed on line ${previous.line}`);
      index.set(k, entry);
    }
    entries.push(entry);
  }
  return { file, kind, entries, index, patterns };
}

function checkPlainKey(key: string, fail: (reason: string) => never): void {
  const at = key.lastIndexOf("@");
  const star = key.indexOf("*");
  // The forms opendkim tries: user@host, host, user@.domain, .domain, user@*, *.
  if (star !== -1 && !(key === "*" || (star === key.length - 1 && at === key.length - 2))) {
    fail(
      `"${key}" uses "*" as a wildcard, but a plain SigningTable is matched literally and this ` +
        `entry would never match; use SigningTable refile:<path> for wildcard patterns`,
    );
  }
  if (at === 0) {
    fail(`"${key}" never matches (opendkim looks up "user@domain"); write "${key.slice(1)}" to match every user of the domain`);
  }
}

// Characters POSIX ERE treats specially that dkimf_mkregexp() passes through unescaped. We treat
// only "*" as a wildcard, so a pattern using them would silently mean something else here.
const ERE_SPECIAL = /[?()[\]{}|^$\\]/;

function compilePattern(pattern: string, fail: (reason: string) => never): RegExp {
  const bad = ERE_SPECIAL.exec(pattern);
  if (bad !== null) {
    fail(
      `pattern "${pattern}" contains "${bad[0]}", which opendkim hands to the regular-expression ` +
        `engine; authmilter supports only "*" as a wildcard, rewrite the pattern with "*"`,
    );
  }
  const body = pattern
    .split("*")
    .map((part) => part.replace(/[.+]/g, "\\$&"))
    .join(".*");
  // REG_ICASE, anchored at both ends, as dkimf_mkregexp() builds it.
  return new RegExp(`^${body}$`, "is");
}

/** Every static key name in the SigningTable must exist in the KeyTable; "%" is checked per message. */
export function validateSigningTable(signing: SigningTable, keys: KeyTable): void {
  for (const entry of signing.entries) {
    if (entry.keyName !== "%" && !keys.entries.has(entry.keyName)) {
      throw new TableError(signing.file, entry.line, `key name "${entry.keyName}" is not defined in KeyTable ${keys.file}`);
    }
  }
}

export interface SigningRequest {
  readonly keyName: string;
  /** d= */
  readonly domain: string;
  /** s= */
  readonly selector: string;
  /** With "%" in a file path replaced by the signing domain, as opendkim does. */
  readonly key: KeySource;
  /** i=, if the SigningTable gave one. */
  readonly identity: string | undefined;
  /** The SigningTable line that selected this key. */
  readonly matched: { readonly file: string; readonly line: number; readonly pattern: string };
}

export interface SigningLookupOptions {
  /** opendkim's MultipleSignatures: every match, in lookup order, instead of the first only. */
  readonly multipleSignatures?: boolean;
}

/**
 * The signing requests for an author (the From: address, or a bare domain).
 *
 * Plain tables try, like opendkim: "user@host", "host", then for each parent "user@.parent" and
 * ".parent" (so ".example.com" matches subdomains of example.com, not example.com itself), then
 * "user@*", then "*"; matching is case-insensitive. With a bare domain the "user@" forms are
 * skipped. Refile tables match "user@host" against each pattern in file order. opendkim's
 * SubDomains setting does not apply to a SigningTable (it belongs to Domain=); subdomains are
 * signed through ".domain" or "*" entries, as in opendkim. "%" is replaced by the author domain
 * lower-cased (opendkim uses it as written, so "Example.COM" would name a different key file).
 * A key selected twice under
 * multipleSignatures is signed with once. Unknown key names throw a TableError for the
 * SigningTable line.
 */
export function findSigningKeys(
  signing: SigningTable,
  keys: KeyTable,
  author: string,
  options: SigningLookupOptions = {},
): SigningRequest[] {
  const at = author.lastIndexOf("@");
  const user = at === -1 ? undefined : author.slice(0, at);
  const domain = (at === -1 ? author : author.slice(at + 1)).toLowerCase().replace(/\.$/, "");
  if (domain === "" || /[^\x21-\x7e]/.test(author)) return [];

  const out: SigningRequest[] = [];
  const seen = new Set<string>();
  const add = (entry: SigningTableEntry): boolean => {
    const request = resolveRequest(entry, signing.file, keys, domain);
    const id = `${request.keyName}\0${request.identity ?? ""}`;
    if (!seen.has(id)) {
      seen.add(id);
      out.push(request);
    }
    return options.multipleSignatures !== true;
  };

  if (signing.kind === "refile") {
    const address = `${user ?? ""}@${domain}`;
    for (const { re, entry } of signing.patterns) {
      if (re.test(address) && add(entry)) break;
    }
    return out;
  }

  const u = user?.toLowerCase();
  const candidates: string[] = [];
  if (u !== undefined) candidates.push(`${u}@${domain}`);
  candidates.push(domain);
  for (let dot = domain.indexOf("."); dot !== -1; dot = domain.indexOf(".", dot + 1)) {
    const parent = domain.slice(dot);
    if (u !== undefined) candidates.push(`${u}@${parent}`);
    candidates.push(parent);
  }
  if (u !== undefined) candidates.push(`${u}@*`);
  candidates.push("*");
  for (const candidate of candidates) {
    const entry = signing.index.get(candidate);
    if (entry !== undefined && add(entry)) break;
  }
  return out;
}

function resolveRequest(entry: SigningTableEntry, file: string, keys: KeyTable, authorDomain: string): SigningRequest {
  const keyName = entry.keyName === "%" ? authorDomain : entry.keyName;
  const k = keys.entries.get(keyName);
  if (k === undefined) {
    throw new TableError(file, entry.line, `key name "${keyName}" is not defined in KeyTable ${keys.file}`);
  }
  const domain = k.domain === "%" ? authorDomain : k.domain;
  const key: KeySource = k.key.kind === "file" ? { kind: "file", path: k.key.path.replaceAll("%", domain) } : k.key;
  return {
    keyName,
    domain,
    selector: k.selector,
    key,
    identity: entry.identity?.replaceAll("%", authorDomain),
    matched: { file, line: entry.line, pattern: entry.pattern },
  };
}

/** Reads and parses a KeyTable file. */
export async function loadKeyTable(path: string, options: KeyTableOptions = {}): Promise<KeyTable> {
  return parseKeyTable(await readDatasetFile(path), path, options);
}

/** Reads and parses a SigningTable file ("refile" for opendkim's refile: form). */
export async function loadSigningTable(path: string, kind: "file" | "refile"): Promise<SigningTable> {
  return parseSigningTable(await readDatasetFile(path), path, kind);
}
