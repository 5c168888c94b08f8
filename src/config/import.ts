// `authmilter import`: turns an opendkim.conf and an opendmarc.conf into one authmilter YAML file
// that behaves the same, following the files they name (KeyTable, SigningTable, host lists), and
// says which options it could not carry over and why.
//
// Rules: a setting the admin wrote is carried over when authmilter has an equivalent. Where
// opendkim/opendmarc's default differs from authmilter's, the YAML keeps the old behaviour when
// the difference would change what happens to mail (rejections, holds) or what the log says
// (SyslogSuccess, LogWhy), and otherwise leaves authmilter's default in place with a note. Paths
// are written absolute (BaseDirectory applied).

import { hostname as osHostname } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { Document, isMap, isScalar, type Pair, type Scalar } from "yaml";
import { DEFAULT_SIGNED_HEADERS } from "../auth/sign.ts";
import { parseServer } from "../dns/client.ts";
import { datasetLines, parseDatasetSpec, readDatasetFile } from "../keys/dataset.ts";
import { TableError } from "../keys/errors.ts";
import { hostListFromValues, matchesHost } from "../keys/hosts.ts";
import { openKeyTable, openSigningTable } from "../keys/open.ts";
import { parseKeyTable, validateSigningTable, type KeyTable, type SigningTable } from "../keys/tables.ts";
import { parseSocketSpec } from "../milter/socket-spec.ts";
import { FACILITIES } from "../ops/syslog.ts";
import { DEFAULT_HISTORY_PATH } from "../reports/history.ts";
import { VERSION } from "../version.ts";
import { ConfReadError, parseConfBoolean, parseConfInteger, readConfFile, where, type ConfEntry, type ParsedConf, type Program } from "./import-conf.ts";
import { OPENDKIM_OPTIONS, OPENDMARC_OPTIONS, unmappedReason } from "./import-options.ts";
import { parseConfig } from "./load.ts";
import { SCHEMA, type Field, type Section } from "./schema.ts";

export { ConfReadError };

export interface ImportOptions {
  /** Path of opendkim.conf. */
  readonly opendkim?: string;
  /** Path of opendmarc.conf. */
  readonly opendmarc?: string;
  /** What "HOSTNAME" stands for (gethostname() of the machine that ran the milters). */
  readonly hostname?: string;
}

/** An option that was not carried over. */
export interface UnmappedOption {
  readonly program: Program;
  readonly option: string;
  readonly value: string;
  /** "file:line" */
  readonly where: string;
  readonly reason: string;
}

/** Something the admin should know about a carried-over setting, a default, or a file read. */
export interface ImportNote {
  readonly where?: string;
  readonly text: string;
}

export interface ImportResult {
  /** The YAML file's text, comments included. */
  readonly yaml: string;
  /** The settings written, as plain data in YAML layout. */
  readonly values: Record<string, unknown>;
  readonly unmapped: readonly UnmappedOption[];
  readonly notes: readonly ImportNote[];
}

export class ImportError extends Error {
  override readonly name = "ImportError";
}

/** opendkim's OmitHeaders default (libopendkim dkim_should_not_signhdrs). */
const DEFAULT_OMITTED_HEADERS = ["Return-Path", "Received", "Comments", "Keywords", "Bcc", "Resent-Bcc", "DKIM-Signature"];

/** Top-level order of the written file, as config/authmilter.example.yaml has it. */
const TOP_ORDER = ["mode", "hostname", "authservId", "internalHosts", "externalIgnoreList", "signing", "verify", "policy", "actions", "limits", "dns", "milter", "log", "reports"];

/** Where syslog(3) sends, as opendkim and opendmarc used it. */
const SYSLOG_SOCKET = "/dev/log";

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

export async function importConfigs(options: ImportOptions): Promise<ImportResult> {
  if (options.opendkim === undefined && options.opendmarc === undefined) {
    throw new ImportError("nothing to import: name opendkim.conf, opendmarc.conf or both");
  }
  const dkim = options.opendkim === undefined ? undefined : await readConfFile(options.opendkim, "opendkim", OPENDKIM_OPTIONS);
  const dmarc = options.opendmarc === undefined ? undefined : await readConfFile(options.opendmarc, "opendmarc", OPENDMARC_OPTIONS);
  const importer = new Importer(dkim, dmarc, options.hostname ?? osHostname());
  await importer.run();
  return importer.result();
}

interface DatasetItem {
  readonly key: string;
  readonly value: string | undefined;
  /** "file:line" of the item, or of the setting for an inline list. */
  readonly where: string;
}

interface Dataset {
  readonly kind: "file" | "refile" | "csl";
  /** For files: the absolute path read. */
  readonly path?: string;
  /** The spec with its path made absolute, as it goes into the YAML. */
  readonly spec: string;
  readonly items: readonly DatasetItem[];
}

class Importer {
  readonly #dkim: ParsedConf | undefined;
  readonly #dmarc: ParsedConf | undefined;
  readonly #hostname: string;
  readonly #values: Record<string, unknown> = {};
  readonly #comments = new Map<string, string[]>();
  readonly #unmapped: UnmappedOption[] = [];
  readonly #notes: ImportNote[] = [];
  /** Settings dealt with (carried over, or explained in a note); the rest are reported unmapped. */
  readonly #handled = new Set<ConfEntry>();
  /** Unmapped options with a reason more specific than the table's. */
  readonly #reasons = new Map<ConfEntry, string>();

  constructor(dkim: ParsedConf | undefined, dmarc: ParsedConf | undefined, hostname: string) {
    this.#dkim = dkim;
    this.#dmarc = dmarc;
    this.#hostname = hostname;
  }

  async run(): Promise<void> {
    for (const conf of this.#confs()) {
      for (const p of conf.problems) this.#note(`${p.file}:${p.line}`, `${p.message}; the line is ignored here`);
      this.#noteDuplicates(conf);
      const base = conf.get("BaseDirectory");
      if (base) {
        this.#handled.add(base);
        this.#note(where(base), `BaseDirectory ${base.value}: relative paths in ${conf.program}'s files are resolved against it; the YAML holds absolute paths`);
      }
    }
    this.#mode();
    this.#authservIds();
    await this.#hostLists();
    await this.#signing();
    this.#verify();
    await this.#policy();
    this.#actions();
    this.#limits();
    this.#dns();
    this.#milter();
    this.#logging();
    this.#history();
    this.#leftovers();
  }

  result(): ImportResult {
    const values = orderTop(this.#values);
    const yaml = this.#render(values);
    // A file we write must load; anything else is a bug in the importer, not the admin's problem.
    parseConfig(yaml, "(imported configuration)");
    return { yaml, values, unmapped: this.#unmapped, notes: this.#notes };
  }

  // ---- helpers ------------------------------------------------------------------------------

  *#confs(): Generator<ParsedConf> {
    if (this.#dkim) yield this.#dkim;
    if (this.#dmarc) yield this.#dmarc;
  }

  /** The setting that applies, marked as dealt with. */
  #take(conf: ParsedConf | undefined, name: string): ConfEntry | undefined {
    const e = conf?.get(name);
    if (e) this.#handled.add(e);
    return e;
  }

  #peek(conf: ParsedConf | undefined, name: string): ConfEntry | undefined {
    return conf?.get(name);
  }

  #set(path: string, value: unknown, comment?: string): void {
    const parts = path.split(".");
    let node = this.#values;
    for (const p of parts.slice(0, -1)) {
      node[p] ??= {};
      node = node[p] as Record<string, unknown>;
    }
    node[parts.at(-1)!] = value;
    if (comment !== undefined) this.#comment(path, comment);
  }

  #get(path: string): unknown {
    let node: unknown = this.#values;
    for (const p of path.split(".")) node = (node as Record<string, unknown> | undefined)?.[p];
    return node;
  }

  #comment(path: string, text: string): void {
    const list = this.#comments.get(path) ?? [];
    list.push(text);
    this.#comments.set(path, list);
  }

  #note(whereText: string | undefined, text: string): void {
    this.#notes.push(whereText === undefined ? { text } : { where: whereText, text });
  }

  /** Marks a setting as not carried over, with a reason specific to this file. */
  #reject(entry: ConfEntry, reason: string): void {
    this.#handled.delete(entry);
    this.#reasons.set(entry, reason);
  }

  #source(e: ConfEntry): string {
    return `${e.name} ${e.value} (${where(e)})`;
  }

  #noteDuplicates(conf: ParsedConf): void {
    const seen = new Map<string, ConfEntry[]>();
    for (const e of conf.entries) {
      const k = e.name.toLowerCase();
      seen.set(k, [...(seen.get(k) ?? []), e]);
    }
    for (const list of seen.values()) {
      if (list.length < 2) continue;
      const last = list.at(-1)!;
      for (const e of list.slice(0, -1)) this.#handled.add(e);
      this.#note(where(last), `${last.name} is set ${list.length} times (${list.map((e) => `line ${e.line}`).join(", ")}); the last one applies, as in ${conf.program}`);
    }
  }

  /** A path as the program opens it: relative paths are relative to BaseDirectory (else "/"). */
  #abs(conf: ParsedConf, path: string): string {
    if (isAbsolute(path)) return path;
    const base = conf.get("BaseDirectory")?.value ?? "/";
    return resolve(isAbsolute(base) ? base : resolve("/", base), path);
  }

  /** Reads a data-set setting ("file:", "refile:", a path or an inline list). */
  async #dataset(conf: ParsedConf, entry: ConfEntry): Promise<Dataset> {
    const ds = parseDatasetSpec(entry.value, entry.name);
    if (ds.kind === "csl") {
      return { kind: "csl", spec: entry.value, items: ds.values.map((v) => ({ key: v, value: undefined, where: where(entry) })) };
    }
    const path = this.#abs(conf, ds.path);
    const text = await readDatasetFile(path);
    const spec = ds.kind === "refile" ? `refile:${path}` : path;
    return { kind: ds.kind, path, spec, items: datasetLines(text).map((l) => ({ key: l.key, value: l.value, where: `${path}:${l.line}` })) };
  }

  /** A data set, or undefined (with the setting reported) when it cannot be read. */
  async #tryDataset(conf: ParsedConf, entry: ConfEntry): Promise<Dataset | undefined> {
    try {
      return await this.#dataset(conf, entry);
    } catch (err) {
      if (!(err instanceof TableError)) throw err;
      this.#reject(entry, `cannot be read: ${err.message}`);
      return undefined;
    }
  }

  /** Runs the schema's own check on a value; returns the reason it fails, if it does. */
  #schemaCheck(path: string, value: string): string | undefined {
    const field = fieldAt(path);
    const type = field?.type;
    const check = type && (type.kind === "string" || type.kind === "list") ? type.check : undefined;
    try {
      check?.(value);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  // ---- mode, authserv-id --------------------------------------------------------------------

  #mode(): void {
    if (this.#dkim === undefined) {
      this.#set("mode", "verify", "opendmarc only verifies (no opendkim.conf given)");
      return;
    }
    const e = this.#take(this.#dkim, "Mode");
    const value = e?.value ?? "sv";
    if (!/^[sv]+$/.test(value)) {
      if (e) this.#reject(e, `"${value}" is not a mode (opendkim accepts the letters s and v)`);
      this.#set("mode", "sign+verify", "opendkim's default (sv)");
      return;
    }
    let mode = value.includes("s") ? (value.includes("v") ? "sign+verify" : "sign") : "verify";
    let comment = e ? this.#source(e) : "opendkim's default (sv)";
    if (mode === "sign" && this.#dmarc !== undefined) {
      mode = "sign+verify";
      comment += "; verify too, because opendmarc verified incoming mail";
    }
    this.#set("mode", mode, comment);
  }

  #authservIds(): void {
    const dkimId = this.#take(this.#dkim, "AuthservID");
    const dmarcId = this.#take(this.#dmarc, "AuthservID");
    const resolveId = (v: string) => (v === "HOSTNAME" ? this.#hostname : v);
    const chosen = dmarcId ?? dkimId;
    if (dkimId && dmarcId && resolveId(dkimId.value) !== resolveId(dmarcId.value)) {
      this.#note(
        where(dkimId),
        `AuthservID differs: opendkim ${dkimId.value}, opendmarc ${dmarcId.value}. authmilter writes one Authentication-Results header for DKIM, SPF and DMARC, ` +
          `so it takes opendmarc's (the DMARC verdict is what downstream filters act on); anything that read opendkim's "${dkimId.value}" headers must now read "${resolveId(dmarcId.value)}"`,
      );
    }
    if (chosen === undefined) {
      this.#note(
        undefined,
        "AuthservID was not set: opendkim and opendmarc used the MTA's name ($myhostname); authmilter uses this machine's host name. Set authservId if the two differ.",
      );
      return;
    }
    if (chosen.value === "HOSTNAME") {
      this.#comment("mode", `AuthservID HOSTNAME (${where(chosen)}): authmilter's default authservId is already this machine's name`);
      return;
    }
    const bad = this.#schemaCheck("authservId", chosen.value);
    if (bad !== undefined) {
      this.#reject(chosen, `authmilter cannot use it: ${bad}`);
      return;
    }
    this.#set("authservId", chosen.value, this.#source(chosen));
  }

  /** The authserv-ids that are ours: Authentication-Results carrying them must never be trusted. */
  #ownIds(): Set<string> {
    const ids = new Set<string>([this.#hostname.toLowerCase()]);
    for (const conf of this.#confs()) {
      const v = conf.get("AuthservID")?.value;
      if (v !== undefined) ids.add((v === "HOSTNAME" ? this.#hostname : v).toLowerCase());
    }
    const set = this.#get("authservId");
    if (typeof set === "string") ids.add(set.toLowerCase());
    return ids;
  }

  // ---- host lists ---------------------------------------------------------------------------

  /** Reads a host list and returns the entries authmilter accepts, noting any it drops. */
  async #hostEntries(conf: ParsedConf, entry: ConfEntry, setting: string, dataset?: Dataset): Promise<{ values: string[]; from: string } | undefined> {
    const ds = dataset ?? (await this.#tryDataset(conf, entry));
    if (ds === undefined) return undefined;
    const values: string[] = [];
    for (const item of ds.items) {
      if (item.value !== undefined) {
        this.#note(item.where, `"${item.key} ${item.value}": ${conf.program} reads only the first word of a host-list line; "${item.value}" is ignored`);
      }
      let value = item.key;
      if (ds.kind === "refile" && value.includes("*")) {
        // opendkim matches the host name, its parents (".example.com") and the address strings
        // against the patterns; "*.example.com" then means what ".example.com" means here.
        const m = /^(!?)\*(\.[^*]+)$/.exec(value);
        if (m === null) {
          this.#note(item.where, `${entry.name} pattern "${value}" left out of ${setting}: only "*.domain" patterns have an equivalent (".domain")`);
          continue;
        }
        value = `${m[1]}${m[2]}`;
        this.#note(item.where, `${entry.name} pattern "${item.key}" written as "${value}" (the host and every subdomain's host, as the pattern matched)`);
      }
      try {
        hostListFromValues([value], setting);
        values.push(value);
      } catch (err) {
        if (!(err instanceof TableError)) throw err;
        this.#note(item.where, `${entry.name} entry "${item.key}" left out of ${setting}: ${err.reason}`);
      }
    }
    const from = ds.path !== undefined ? `${values.length} entries inlined from ${ds.path}` : `${values.length} entries`;
    return { values, from };
  }

  async #hostLists(): Promise<void> {
    const dkim = this.#dkim;
    if (dkim === undefined) return;
    const internal = this.#take(dkim, "InternalHosts");
    if (internal) {
      const list = await this.#hostEntries(dkim, internal, "internalHosts");
      if (list) this.#set("internalHosts", list.values, `${this.#source(internal)}: ${list.from}`);
    }
    const external = this.#take(dkim, "ExternalIgnoreList");
    if (external) {
      const list = await this.#hostEntries(dkim, external, "externalIgnoreList");
      if (list) this.#set("externalIgnoreList", list.values, `${this.#source(external)}: ${list.from}`);
    }
    const peers = this.#peek(dkim, "PeerList");
    if (peers) {
      const list = await this.#hostEntries(dkim, peers, "PeerList");
      if (list) {
        this.#reject(
          peers,
          `no equivalent: authmilter has no list of clients it leaves alone entirely. If these hosts are your own relays, add them to internalHosts ` +
            `(their mail is signed, not verified); if they are upstream filters, list their authserv-id in verify.trustedAuthservIds. ` +
            `Entries (${list.values.length}): ${list.values.join(", ")}`,
        );
      }
    }
  }

  // ---- signing ------------------------------------------------------------------------------

  async #signing(): Promise<void> {
    const dkim = this.#dkim;
    if (dkim === undefined) return;
    const keyTable = await this.#tables(dkim);
    if (!keyTable) await this.#singleKey(dkim);

    const multi = this.#take(dkim, "MultipleSignatures");
    if (multi) this.#set("signing.multipleSignatures", parseConfBoolean(multi.value), this.#source(multi));

    const safe = this.#take(dkim, "RequireSafeKeys");
    if (safe) {
      const v = parseConfBoolean(safe.value);
      this.#set("signing.requireSafeKeys", v, this.#source(safe));
      if (v === false) this.#note(where(safe), "RequireSafeKeys is off: key files that others can read are used, as before; turn signing.requireSafeKeys on once the keys are mode 0600");
    }

    const minBits = this.#take(dkim, "MinimumKeyBits");
    if (minBits) {
      const n = parseConfInteger(minBits.value) ?? 0;
      if (n < 1024) {
        this.#reject(minBits, "opendkim applies it to signatures it verifies; authmilter's verifier never accepts RSA keys under 1024 bits (RFC 8301), so a lower value has no equivalent");
      } else if (n > 16384) {
        this.#reject(minBits, `${n} is more than authmilter's largest signing.minimumKeyBits (16384)`);
      } else {
        this.#set("signing.minimumKeyBits", n, `${this.#source(minBits)}: opendkim applies it to keys of signatures it verifies, authmilter to its own signing keys`);
        if (n > 1024) {
          this.#note(where(minBits), `MinimumKeyBits ${n}: authmilter refuses to sign with smaller keys; its verifier accepts keys from 1024 bits (a stricter verification minimum has no equivalent)`);
        }
      }
    }

    await this.#author(dkim);
    await this.#submissionDaemons(dkim);
    await this.#headers(dkim);

    const canon = this.#take(dkim, "Canonicalization");
    if (canon) {
      const [h = "", b = "simple"] = canon.value.toLowerCase().split("/", 2);
      const ok = (x: string) => x === "relaxed" || x === "simple";
      if (ok(h) && ok(b)) this.#set("signing.canonicalization", `${h}/${b}`, this.#source(canon));
      else this.#reject(canon, `"${canon.value}" is not relaxed or simple (opendkim refuses it)`);
    } else {
      this.#note(undefined, "Canonicalization was not set: opendkim signed with simple/simple; authmilter's default relaxed/relaxed applies (it survives header re-folding in transit)");
    }

    const ttl = this.#take(dkim, "SignatureTTL");
    if (ttl) {
      const n = parseConfInteger(ttl.value) ?? 0;
      if (n > 0 && n <= 366 * 86_400) this.#set("signing.expire", `${n}s`, this.#source(ttl));
      else if (n > 366 * 86_400) this.#reject(ttl, "authmilter's signing.expire is at most 366 days");
      else this.#comment("signing", `${this.#source(ttl)}: no expiry, authmilter's default`);
    }

    const alg = this.#take(dkim, "SignatureAlgorithm");
    if (alg) {
      const v = alg.value.toLowerCase();
      if (v === "rsa-sha256" || v === "ed25519-sha256") {
        this.#comment("signing", `${this.#source(alg)}: authmilter picks the algorithm from the key (RSA keys rsa-sha256, Ed25519 keys ed25519-sha256)`);
      } else {
        this.#reject(alg, v === "rsa-sha1" ? "authmilter never signs with rsa-sha1 (RFC 8301); RSA keys sign with rsa-sha256" : `"${alg.value}" is not a signing algorithm`);
      }
    }
  }

  /** KeyTable + SigningTable. Returns whether a KeyTable is set (then Domain/KeyFile/Selector are ignored). */
  async #tables(dkim: ParsedConf): Promise<boolean> {
    const kt = this.#take(dkim, "KeyTable");
    const st = this.#take(dkim, "SigningTable");
    if (kt === undefined) {
      if (st) this.#reject(st, 'a SigningTable needs a KeyTable (opendkim refuses to start: "use of SigningTable requires KeyTable")');
      return false;
    }
    for (const name of ["Domain", "KeyFile", "Selector", "SubDomains"]) {
      const e = this.#peek(dkim, name);
      if (e) this.#reject(e, "opendkim ignores it because KeyTable is set");
    }
    if (st === undefined) {
      this.#reject(kt, "a KeyTable without a SigningTable selects no key (opendkim uses it only from a Lua SetupPolicyScript); authmilter needs both");
      return true;
    }
    const ktSpec = this.#tableSpec(dkim, kt, "file");
    const stSpec = this.#tableSpec(dkim, st, "refile");
    if (ktSpec === undefined || stSpec === undefined) return true;

    let keys: KeyTable | undefined;
    let signing: SigningTable | undefined;
    try {
      keys = await openKeyTable(ktSpec);
    } catch (err) {
      if (!(err instanceof TableError)) throw err;
      this.#note(where(kt), `authmilter cannot load this KeyTable yet: ${err.message}. Fix it before starting authmilter`);
    }
    try {
      signing = await openSigningTable(stSpec);
    } catch (err) {
      if (!(err instanceof TableError)) throw err;
      this.#note(where(st), `authmilter cannot load this SigningTable yet: ${err.message}. Fix it before starting authmilter`);
    }
    if (keys && signing) {
      try {
        validateSigningTable(signing, keys);
      } catch (err) {
        if (!(err instanceof TableError)) throw err;
        this.#note(where(st), `${err.message}: opendkim fails such messages at signing time, authmilter refuses to start`);
      }
    }
    if (keys) await this.#relativeKeyPaths(dkim, kt, keys);
    this.#set("signing.keyTable", ktSpec, `${this.#source(kt)}${keys ? `: ${keys.entries.size} keys, read as it is` : ""}`);
    this.#set("signing.signingTable", stSpec, `${this.#source(st)}${signing ? `: ${signing.entries.length} entries, read as it is` : ""}`);
    return true;
  }

  /** A KeyTable/SigningTable spec with an absolute path, or undefined (reported) when unusable. */
  #tableSpec(dkim: ParsedConf, entry: ConfEntry, allowed: "file" | "refile"): string | undefined {
    let ds;
    try {
      ds = parseDatasetSpec(entry.value, entry.name);
    } catch (err) {
      if (!(err instanceof TableError)) throw err;
      this.#reject(entry, err.reason);
      return undefined;
    }
    if (ds.kind === "csl" || (ds.kind === "refile" && allowed === "file")) {
      this.#reject(entry, `authmilter reads a ${entry.name} from a file only (${allowed === "refile" ? "file:/path, /path or refile:/path" : "file:/path or /path"})`);
      return undefined;
    }
    const path = this.#abs(dkim, ds.path);
    return ds.kind === "refile" ? `refile:${path}` : path;
  }

  /** opendkim resolves "./" key paths against BaseDirectory; authmilter against its working directory. */
  async #relativeKeyPaths(dkim: ParsedConf, kt: ConfEntry, keys: KeyTable): Promise<void> {
    const raw = parseKeyTable(await readDatasetFile(keys.file), keys.file);
    const relative = [...raw.entries.values()].filter((e) => e.key.kind === "file" && !isAbsolute(e.key.path));
    if (relative.length === 0) return;
    const base = dkim.get("BaseDirectory")?.value ?? "/";
    const lines = relative.map((e) => `${keys.file}:${e.line}`).join(", ");
    this.#note(
      where(kt),
      `KeyTable entries with relative key paths (${lines}): opendkim resolves them against ${base === "/" ? "its working directory (/)" : `BaseDirectory ${base}`}, ` +
        `authmilter against its working directory (/ under systemd). Write absolute paths in the KeyTable${base === "/" ? "" : `, or give authmilter WorkingDirectory=${base} in its unit`}`,
    );
  }

  /** Domain + KeyFile + Selector (+ SubDomains): opendkim's single-key mode, as native entries. */
  async #singleKey(dkim: ParsedConf): Promise<void> {
    const domain = this.#take(dkim, "Domain");
    const keyFile = this.#take(dkim, "KeyFile");
    const selector = this.#take(dkim, "Selector");
    const subdomains = this.#take(dkim, "SubDomains");
    if (!domain && !keyFile && !selector) {
      if (subdomains) this.#reject(subdomains, "SubDomains applies to Domain, which is not set");
      if (this.#get("mode") !== "verify") this.#note(undefined, "no signing key is configured (no KeyTable, no Domain/KeyFile/Selector): nothing is signed until you add signing.keys (authmilter genkey)");
      return;
    }
    if (!domain || !keyFile || !selector) {
      const missing = [!domain && "Domain", !keyFile && "KeyFile", !selector && "Selector"].filter(Boolean).join(", ");
      for (const e of [domain, keyFile, selector, subdomains]) {
        if (e) this.#reject(e, `single-key signing needs Domain, KeyFile and Selector together; ${missing} missing, so opendkim signs nothing with it`);
      }
      return;
    }
    const ds = await this.#tryDataset(dkim, domain);
    if (ds === undefined) return;
    if (ds.kind === "refile") {
      this.#reject(domain, "a refile: Domain list has no equivalent; write the domains as signing.keys entries");
      return;
    }
    const selBad = this.#schemaCheck("signing.keys.selector", selector.value);
    if (selBad !== undefined) {
      this.#reject(selector, selBad);
      return;
    }
    const path = this.#abs(dkim, keyFile.value);
    const sub = subdomains !== undefined && parseConfBoolean(subdomains.value) === true;
    const entries: Record<string, string>[] = [];
    for (const item of ds.items) {
      const d = item.key.toLowerCase();
      const bad = this.#schemaCheck("signing.keys.domain", d);
      if (bad !== undefined) {
        this.#note(item.where, `Domain entry "${item.key}" left out: ${bad}`);
        continue;
      }
      entries.push({ domain: d, selector: selector.value, keyFile: path });
      if (sub && d !== "*") entries.push({ domain: `*.${d}`, signingDomain: d, selector: selector.value, keyFile: path });
    }
    const what = [domain, selector, keyFile, ...(subdomains ? [subdomains] : [])].map((e) => this.#source(e)).join(", ");
    this.#set("signing.keys", entries, `${what}${ds.kind === "file" ? `; domains read from ${ds.path}` : ""}`);
    if (sub) {
      this.#note(where(subdomains!), "SubDomains: mail from a subdomain is signed with d= the listed domain (a \"*.domain\" entry), as in opendkim; authmilter adds no i=@subdomain tag");
    } else if (subdomains) {
      this.#comment("signing.keys", `${this.#source(subdomains)}: subdomains are not signed`);
    }
  }

  async #author(dkim: ParsedConf): Promise<void> {
    const macro = this.#take(dkim, "SenderMacro");
    const headers = this.#take(dkim, "SenderHeaders");
    if (macro) {
      const name = macro.value.replace(/^\{(.*)\}$/, "$1");
      if (name === "mail_addr") this.#set("signing.author", "mailfrom", this.#source(macro));
      else this.#reject(macro, `only {mail_addr} (the envelope sender) has an equivalent (signing.author: mailfrom)`);
      if (headers) this.#reject(headers, "SenderMacro takes precedence");
      return;
    }
    if (!headers) return;
    const ds = await this.#tryDataset(dkim, headers);
    if (ds === undefined) return;
    const names = ds.items.map((i) => i.key.toLowerCase()).join(",");
    if (names === "from") this.#set("signing.author", "from", this.#source(headers));
    else if (names === "sender,from") this.#set("signing.author", "sender", this.#source(headers));
    else this.#reject(headers, 'only "From" and "Sender,From" have an equivalent (signing.author: from or sender)');
  }

  async #submissionDaemons(dkim: ParsedConf): Promise<void> {
    const daemons: string[] = [];
    const sources: string[] = [];
    const mta = this.#take(dkim, "MTA");
    if (mta) {
      const ds = await this.#tryDataset(dkim, mta);
      if (ds) {
        daemons.push(...ds.items.map((i) => i.key));
        sources.push(this.#source(mta));
      }
    }
    const macros = this.#take(dkim, "MacroList");
    if (macros) {
      const ds = await this.#tryDataset(dkim, macros);
      if (ds) {
        const left: string[] = [];
        for (const item of ds.items) {
          // "name=v1|v2" (inline list) or "name v1|v2" (file)
          const [rawName = "", rawValues] = item.value === undefined ? item.key.split("=", 2) : [item.key, item.value];
          const name = rawName.replace(/^\{(.*)\}$/, "$1");
          const values = (rawValues ?? "").split("|").map((v) => v.trim()).filter((v) => v !== "");
          if (name === "daemon_name" && values.length > 0) daemons.push(...values);
          else if (name === "auth_type" || name === "auth_authen") {
            this.#comment("signing.submissionDaemons", `MacroList ${item.key}: authmilter already treats SASL-authenticated mail as ours`);
          } else left.push(item.value === undefined ? item.key : `${item.key} ${item.value}`);
        }
        if (left.length > 0) {
          this.#reject(macros, `only daemon_name with values has an equivalent (signing.submissionDaemons); not carried over: ${left.join(", ")}`);
        } else sources.push(this.#source(macros));
      }
    }
    if (daemons.length > 0) this.#set("signing.submissionDaemons", [...new Set(daemons)], sources.join("; "));
  }

  async #headers(dkim: ParsedConf): Promise<void> {
    const signE = this.#take(dkim, "SignHeaders");
    const omitE = this.#take(dkim, "OmitHeaders");
    const overE = this.#take(dkim, "OversignHeaders");
    const names = async (e: ConfEntry): Promise<string[] | undefined> => {
      const ds = await this.#tryDataset(dkim, e);
      if (ds?.kind === "refile") {
        this.#reject(e, "a refile: list has no equivalent");
        return undefined;
      }
      return ds?.items.map((i) => i.key);
    };
    const lower = (s: string) => s.toLowerCase();
    if (signE || omitE) {
      const signList = signE ? await names(signE) : undefined;
      const omitList = omitE ? await names(omitE) : undefined;
      if ((signE && !signList) || (omitE && !omitList)) return;
      const sign = signList ? expandDelta(signList, DEFAULT_SIGNED_HEADERS) : [...DEFAULT_SIGNED_HEADERS];
      const omit = new Set((omitList ? expandDelta(omitList, DEFAULT_OMITTED_HEADERS) : DEFAULT_OMITTED_HEADERS).map(lower));
      const dropped = sign.filter((h) => omit.has(lower(h)));
      let headers = sign.filter((h) => !omit.has(lower(h)) && lower(h) !== "dkim-signature");
      headers = headers.filter((h, i) => headers.findIndex((x) => lower(x) === lower(h)) === i);
      const bad = headers.filter((h) => !/^[\x21-\x39\x3b-\x7e]+$/.test(h));
      headers = headers.filter((h) => !bad.includes(h));
      const src = [signE, omitE].filter((e): e is ConfEntry => e !== undefined).map((e) => this.#source(e)).join("; ");
      if (bad.length > 0) this.#note(where((signE ?? omitE)!), `left out of signing.headers, not header field names: ${bad.join(", ")}`);
      const isDefault = headers.length === DEFAULT_SIGNED_HEADERS.length && headers.every((h, i) => lower(h) === lower(DEFAULT_SIGNED_HEADERS[i]!));
      if (isDefault) this.#comment("signing", `${src}: authmilter's built-in list`);
      else {
        this.#set("signing.headers", headers, `${src}${dropped.length > 0 ? `; OmitHeaders removed ${dropped.join(", ")}` : ""}`);
        if (signList?.includes("*")) this.#note(where(signE!), `SignHeaders "*" stands for the built-in list; authmilter's (opendkim's plus RFC 6376 §5.4.1 and List-Unsubscribe-Post) was used`);
      }
    }
    if (overE) {
      const list = await names(overE);
      if (list === undefined) return;
      const usable = list.filter((h) => /^[\x21-\x39\x3b-\x7e]+$/.test(h) && !/^[*+-]/.test(h) && lower(h) !== "dkim-signature");
      const skipped = list.filter((h) => !usable.includes(h));
      if (skipped.length > 0) this.#note(where(overE), `left out of signing.oversign: ${skipped.join(", ")} (not a header field name authmilter can over-sign)`);
      this.#set("signing.oversign", usable, this.#source(overE));
    } else {
      this.#note(undefined, "OversignHeaders was not set: opendkim over-signed nothing; authmilter's default over-signs From, Reply-To, Subject, Date, To, Cc and Message-ID");
    }
  }

  // ---- verify -------------------------------------------------------------------------------

  #verify(): void {
    const dmarc = this.#dmarc;
    const softs = [this.#take(this.#dkim, "SoftwareHeader"), this.#take(this.#dkim, "X-Header"), this.#take(dmarc, "SoftwareHeader")].filter(
      (e): e is ConfEntry => e !== undefined,
    );
    if (softs.length > 0) {
      const on = softs.some((e) => parseConfBoolean(e.value) === true);
      this.#set("verify.softwareHeader", on, `${softs.map((e) => this.#source(e)).join("; ")}: one Authmilter-Filter header replaces DKIM-Filter and DMARC-Filter`);
    } else {
      this.#note(undefined, "SoftwareHeader was not set: opendkim/opendmarc added no DKIM-Filter/DMARC-Filter header; authmilter adds Authmilter-Filter by default (verify.softwareHeader)");
    }
    if (dmarc === undefined) return;

    const own = this.#ownIds();
    const trusted = this.#take(dmarc, "TrustedAuthservIDs");
    const kept: string[] = [];
    if (trusted) {
      const dropped: string[] = [];
      for (const raw of trusted.value.split(",").map((v) => v.trim()).filter((v) => v !== "")) {
        const id = raw === "HOSTNAME" ? this.#hostname : raw;
        if (own.has(id.toLowerCase())) {
          dropped.push(raw);
          continue;
        }
        const bad = this.#schemaCheck("verify.trustedAuthservIds", id);
        if (bad !== undefined) this.#note(where(trusted), `TrustedAuthservIDs entry "${raw}" left out: ${bad}`);
        else if (!kept.includes(id)) kept.push(id);
      }
      if (dropped.length > 0) {
        this.#note(
          where(trusted),
          `TrustedAuthservIDs: ${dropped.join(", ")} left out: they are this host's own ids (opendmarc read opendkim's results through them). ` +
            `authmilter checks DKIM and SPF itself and removes incoming headers with its own id; trusting them would let senders forge results`,
        );
      }
      if (kept.length > 0) this.#set("verify.trustedAuthservIds", kept, this.#source(trusted));
    } else {
      this.#note(undefined, "TrustedAuthservIDs was not set: opendmarc trusted headers carrying its own AuthservID; authmilter checks DKIM and SPF itself and trusts no upstream header unless verify.trustedAuthservIds lists it");
    }

    const self = this.#take(dmarc, "SPFSelfValidate");
    if (self && parseConfBoolean(self.value) === true) this.#set("verify.spfSelfValidate", true, this.#source(self));
    else if (self && kept.length > 0) this.#set("verify.spfSelfValidate", false, `${this.#source(self)}: SPF comes from the trusted upstream headers`);
    else {
      const what = self ? `SPFSelfValidate ${self.value}` : "SPFSelfValidate was not set (opendmarc's default: false)";
      if (self) this.#set("verify.spfSelfValidate", true, `${this.#source(self)}: overridden, see the notes`);
      this.#note(
        self && where(self),
        `${what}: opendmarc took SPF results from headers (a policyd-spf Received-SPF or Authentication-Results of its own host). ` +
          "With no trusted upstream authserv-id left, authmilter checks SPF itself (verify.spfSelfValidate: true); a policyd-spf check in Postfix is no longer needed for DMARC",
      );
    }

    const ignoreSpf = this.#take(dmarc, "SPFIgnoreResults");
    if (ignoreSpf) this.#set("verify.spfIgnoreResults", parseConfBoolean(ignoreSpf.value), this.#source(ignoreSpf));

    const ignoreAuth = this.#take(dmarc, "IgnoreAuthenticatedClients");
    if (ignoreAuth) this.#set("verify.ignoreAuthenticatedClients", parseConfBoolean(ignoreAuth.value), this.#source(ignoreAuth));
    else {
      this.#note(undefined, "IgnoreAuthenticatedClients was not set: opendmarc checked mail from SASL-authenticated clients too; authmilter's default (verify.ignoreAuthenticatedClients: true) signs such mail and does not verify it, as opendkim did");
    }
  }

  // ---- policy -------------------------------------------------------------------------------

  async #policy(): Promise<void> {
    const reqs = [this.#take(this.#dkim, "RequiredHeaders"), this.#take(this.#dmarc, "RequiredHeaders")].filter((e): e is ConfEntry => e !== undefined);
    if (reqs.length > 0) {
      this.#set("policy.requiredHeaders", reqs.some((e) => parseConfBoolean(e.value) === true), reqs.map((e) => this.#source(e)).join("; "));
    } else {
      this.#set("policy.requiredHeaders", false, "RequiredHeaders was not set: opendkim and opendmarc do not check header field counts. authmilter's default is true (550 5.7.1 for mail that breaks RFC 5322 §3.6); consider it");
    }

    const dmarc = this.#dmarc;
    if (dmarc === undefined) return;
    const reject = this.#take(dmarc, "RejectFailures");
    const enforce = reject !== undefined && parseConfBoolean(reject.value) === true;
    if (reject) this.#set("policy.dmarc.enforce", enforce, this.#source(reject));

    const hold = this.#take(dmarc, "HoldQuarantinedMessages");
    if (hold) this.#set("policy.dmarc.quarantine", parseConfBoolean(hold.value) ? "hold" : "mark", this.#source(hold));
    else if (enforce) this.#set("policy.dmarc.quarantine", "mark", "HoldQuarantinedMessages was not set: opendmarc delivered p=quarantine failures (no hold); authmilter's default is hold");

    const ignoreFrom = this.#take(dmarc, "IgnoreMailFrom");
    if (ignoreFrom) {
      const domains = ignoreFrom.value.split(",").map((v) => v.trim().toLowerCase()).filter((v) => v !== "");
      this.#set("policy.dmarc.ignoreDomains", domains, `${this.#source(ignoreFrom)}: opendmarc skipped these domains entirely; authmilter still reports DMARC for them and never acts on it`);
    }

    const ignoreHosts = this.#take(dmarc, "IgnoreHosts");
    if (ignoreHosts) {
      const path = this.#abs(dmarc, ignoreHosts.value);
      let ds: Dataset | undefined;
      try {
        ds = { kind: "file", path, spec: path, items: datasetLines(await readDatasetFile(path)).map((l) => ({ key: l.key, value: l.value, where: `${path}:${l.line}` })) };
      } catch (err) {
        if (!(err instanceof TableError)) throw err;
        this.#reject(ignoreHosts, `cannot be read: ${err.message}`);
      }
      const list = ds && (await this.#hostEntries(dmarc, ignoreHosts, "policy.dmarc.ignoreHosts", ds));
      if (list) {
        this.#set(
          "policy.dmarc.ignoreHosts",
          list.values,
          `${this.#source(ignoreHosts)}: ${list.from}. opendmarc skipped these clients entirely; authmilter still verifies their mail and never acts on DMARC for it`,
        );
      }
    } else if (enforce) {
      const internal = hostListFromValues((this.#get("internalHosts") as string[] | undefined) ?? ["127.0.0.1", "::1"], "internalHosts");
      if (!matchesHost(internal, "127.0.0.1")) {
        this.#set("policy.dmarc.ignoreHosts", ["127.0.0.1"], "IgnoreHosts was not set: opendmarc's default ignores 127.0.0.1");
      }
    }
  }

  // ---- actions, limits, dns, milter ---------------------------------------------------------

  #actions(): void {
    const dkim = this.#dkim;
    if (dkim === undefined) return;
    const apply = (e: ConfEntry, target: string): void => {
      const action = ACTION_VALUES[e.value.toLowerCase()];
      if (action === undefined) {
        this.#reject(e, `"${e.value}" is not an action (opendkim refuses it)`);
      } else if (action === "discard") {
        this.#reject(e, "authmilter never discards mail silently; use reject (5xx) or quarantine (hold)");
      } else if (target === "internalError" && action === "quarantine") {
        this.#reject(e, "actions.internalError can be tempfail, accept or reject");
      } else {
        this.#set(`actions.${target}`, action, this.#source(e));
      }
    };
    const def = this.#take(dkim, "On-Default");
    for (const [name, target] of ON_OPTIONS) {
      const e = this.#take(dkim, name);
      if (e) apply(e, target);
      else if (def) apply(def, target);
    }
  }

  #limits(): void {
    const dkim = this.#dkim;
    const max = this.#take(dkim, "MaximumSignaturesToVerify");
    if (max) {
      const n = parseConfInteger(max.value) ?? 0;
      if (n >= 1 && n <= 100) this.#set("limits.maxSignatures", n, this.#source(max));
      else this.#reject(max, "authmilter's limits.maxSignatures is 1..100");
    } else if (dkim) {
      this.#note(undefined, "MaximumSignaturesToVerify was not set: opendkim verified 3 signatures per message; authmilter's default (limits.maxSignatures) is 5");
    }
    const hdr = this.#take(dkim, "MaximumHeaders");
    if (hdr) {
      const n = parseConfInteger(hdr.value) ?? 0;
      if (n >= 1024 && n <= 1 << 30) this.#set("limits.maxHeaderSize", n, this.#source(hdr));
      else if (n === 0) this.#reject(hdr, "0 (no limit) has no equivalent: authmilter always limits the header block (limits.maxHeaderSize, default 1 MiB)");
      else this.#reject(hdr, `authmilter's limits.maxHeaderSize is 1024..${1 << 30}`);
    }
  }

  #dns(): void {
    const ns = this.#take(this.#dkim, "Nameservers");
    if (ns) {
      const servers: string[] = [];
      for (const s of ns.value.split(",").map((v) => v.trim()).filter((v) => v !== "")) {
        try {
          parseServer(s);
          servers.push(s);
        } catch (err) {
          this.#note(where(ns), `Nameservers entry "${s}" left out: ${(err as Error).message}`);
        }
      }
      if (servers.length > 0) this.#set("dns.servers", servers, this.#source(ns));
    }
    const timeouts = [this.#take(this.#dkim, "DNSTimeout"), this.#take(this.#dmarc, "DNSTimeout")].filter((e): e is ConfEntry => e !== undefined);
    const t = timeouts[0];
    if (t) {
      const n = parseConfInteger(t.value) ?? 0;
      if (timeouts.length > 1 && parseConfInteger(timeouts[1]!.value) !== n) {
        this.#note(where(timeouts[1]!), `DNSTimeout differs between the files; opendkim's (${t.value}) is used`);
      }
      if (n >= 1 && n <= 60) {
        this.#set("dns.timeout", `${n}s`, `${timeouts.map((e) => this.#source(e)).join("; ")}: per attempt in authmilter (dns.tries rounds over the servers)`);
      } else {
        for (const e of timeouts) this.#reject(e, n === 0 ? "0 (wait forever) has no equivalent; authmilter's dns.timeout is at most 60s" : "authmilter's dns.timeout is 1..60 seconds");
      }
    }
  }

  #milter(): void {
    const dkimSock = this.#take(this.#dkim, "Socket");
    const dmarcSock = this.#take(this.#dmarc, "Socket");
    const chosen = dkimSock ?? dmarcSock;
    if (chosen === undefined) {
      this.#note(undefined, "no Socket was set: authmilter listens on its default, inet:8891@127.0.0.1 (Postfix: inet:127.0.0.1:8891)");
      return;
    }
    const conf = chosen.program === "opendkim" ? this.#dkim! : this.#dmarc!;
    try {
      parseSocketSpec(chosen.value);
    } catch (err) {
      this.#reject(chosen, `authmilter cannot use it: ${(err as Error).message}`);
      return;
    }
    const chroot = chosen.value.startsWith("local:") || chosen.value.startsWith("unix:") || chosen.value.startsWith("/") ? " (relative to /var/spool/postfix when smtpd runs chrooted)" : "";
    this.#set("milter.socket", chosen.value, `${this.#source(chosen)}; in main.cf: ${postfixMilter(chosen.value)}${chroot}`);
    if (dkimSock && dmarcSock) {
      this.#note(
        where(dmarcSock),
        `two sockets: opendkim's ${dkimSock.value} and opendmarc's ${dmarcSock.value}. authmilter replaces both with one, and keeps opendkim's because Postfix already ` +
          `sends mail to it. Remove ${postfixMilter(dmarcSock.value)} from smtpd_milters and non_smtpd_milters in main.cf`,
      );
    }
    const spec = parseSocketSpec(chosen.value);
    if (spec.kind === "unix" && !spec.path.startsWith("/run/authmilter/")) {
      this.#note(
        where(chosen),
        `the socket ${spec.path} is outside /run/authmilter (the unit's RuntimeDirectory), so the authmilter user may not be able to create it. ` +
          "Either give it a directory it can write, or move to local:/run/authmilter/authmilter.sock and change main.cf to match",
      );
    }
    if (spec.kind === "tcp" && (spec.host === "0.0.0.0" || spec.host === "::")) {
      this.#note(where(chosen), `${chosen.value} listens on every interface, as it did; unless Postfix runs on another host, restrict it to inet:${spec.port}@127.0.0.1`);
    }
    const umask = this.#take(conf, "UMask");
    if (umask) {
      const n = parseConfInteger(umask.value) ?? 0;
      if (n >= 0 && n <= 0o7777) {
        this.#set("milter.socketUmask", `0${n.toString(8).padStart(3, "0")}`.slice(-4), `${this.#source(umask)}${/^0/.test(umask.value) ? "" : ` (read as the decimal number ${n}, as ${conf.program} does)`}`);
      } else this.#reject(umask, "not a file mode mask");
    }
    const other = chosen.program === "opendkim" ? this.#dmarc : this.#dkim;
    const otherUmask = this.#take(other, "UMask");
    if (otherUmask) this.#reject(otherUmask, `it applied to ${otherUmask.program}'s socket, which authmilter's single socket replaces`);
  }

  // ---- log, reports -------------------------------------------------------------------------

  #logging(): void {
    const dkim = this.#dkim;
    const dmarc = this.#dmarc;
    const syslogs = [this.#take(dkim, "Syslog"), this.#take(dmarc, "Syslog")].filter((e): e is ConfEntry => e !== undefined);
    const on = syslogs.filter((e) => parseConfBoolean(e.value) === true);
    const facilities = [this.#take(dkim, "SyslogFacility"), this.#take(dmarc, "SyslogFacility")].filter((e): e is ConfEntry => e !== undefined);
    const logs = (program: Program) => on.some((e) => e.program === program);

    if (on.length === 0) {
      if (syslogs.length > 0) this.#comment("log", `${syslogs.map((e) => this.#source(e)).join("; ")}: no syslog, authmilter's default (log.syslog unset)`);
    } else {
      const quiet = on.length === 1 ? (on[0]!.program === "opendkim" ? dmarc : dkim) : undefined;
      this.#set(
        "log.syslog",
        SYSLOG_SOCKET,
        `${on.map((e) => this.#source(e)).join("; ")}: syslog(3) wrote to ${SYSLOG_SOCKET}` +
          `${quiet ? `; ${quiet.program} did not log there, but authmilter has one log, so its DKIM, SPF and DMARC lines all go there` : ""}. ` +
          "log.stdout stays true (JSON lines on standard output, journald under systemd); set it to false to log to syslog only, as before",
      );
    }

    // authmilter logs with one facility: that of the first program (opendkim, then opendmarc)
    // that logged with one authmilter has; the others are reported.
    for (const f of facilities) {
      if (!logs(f.program)) this.#reject(f, `${f.program} did not log to syslog (Syslog not on), so it had no effect; log.facility applies to log.syslog only`);
    }
    const effective = on.map((e) => {
      const entry = facilities.find((f) => f.program === e.program);
      return { program: e.program, entry, value: (entry?.value ?? "mail").toLowerCase() };
    });
    const usable = (v: string) => (FACILITIES as readonly string[]).includes(v);
    const chosen = effective.find((f) => usable(f.value));
    const facility = chosen?.value ?? "mail";
    const same = effective.flatMap((f) => (f.value === facility && f.entry ? [f.entry] : []));
    if (same.length > 0) this.#set("log.facility", facility, same.map((e) => this.#source(e)).join("; "));
    for (const f of effective) {
      if (f === chosen || f.value === facility) continue;
      const what = chosen ? `log.facility is ${facility} (${chosen.program}'s${chosen.entry ? "" : ", its default"})` : `log.facility stays ${facility}`;
      if (f.entry === undefined) {
        this.#note(chosen?.entry && where(chosen.entry), `${f.program} logged with facility mail (its default); authmilter logs with one facility and ${what}: adjust the syslog.conf rules that select mail`);
      } else if (!usable(f.value)) {
        this.#reject(f.entry, `"${f.entry.value}" is not a facility authmilter logs with (${FACILITIES.join(", ")}); ${what}: adjust the syslog.conf rules that select ${f.value}`);
      } else {
        this.#reject(f.entry, `authmilter logs with one facility and ${what}: adjust the syslog.conf rules that select ${f.value}`);
      }
    }

    if (dkim !== undefined) {
      const success = this.#take(dkim, "SyslogSuccess");
      const successOn = success !== undefined && parseConfBoolean(success.value) === true;
      if (success) this.#set("log.success", successOn, this.#source(success));
      else {
        this.#set(
          "log.success",
          false,
          "SyslogSuccess was not set: opendkim did not log successful signing and verification; authmilter's default is true (at info); false logs them at debug",
        );
      }
      const why = this.#take(dkim, "LogWhy");
      if (why) this.#set("log.why", parseConfBoolean(why.value) === true, this.#source(why));
      else {
        this.#set("log.why", false, "LogWhy was not set: opendkim did not log why it signed or verified a message; authmilter's default is true (at info); false logs it at debug");
      }
      const results = this.#peek(dkim, "LogResults");
      if (results && parseConfBoolean(results.value) === true && !successOn) {
        this.#reject(
          results,
          `${unmappedReason("opendkim", "LogResults")}. LogResults logged passing signatures too: set log.success: true to keep them at info (it also logs successful signing and passing SPF/DMARC)`,
        );
      }
      if (!successOn && logs("opendmarc")) {
        this.#note(
          success && where(success),
          "log.success is false: authmilter logs DMARC results that pass at debug, where opendmarc logged every DMARC result; set log.success: true to keep them at info (it also logs DKIM and SPF passes)",
        );
      }
    } else if (dmarc !== undefined) {
      this.#set("log.why", false, "opendmarc did not log why a message was or was not verified; authmilter's default is true (at info); false logs it at debug");
      this.#comment("log.why", "log.success stays true (the default): opendmarc logged every DMARC result, passes included");
    }
  }

  #history(): void {
    const file = this.#take(this.#dmarc, "HistoryFile");
    if (file === undefined) return;
    this.#set("reports.history", DEFAULT_HISTORY_PATH, `${this.#source(file)}: authmilter's own DMARC history (SQLite, in the unit's StateDirectory)`);
    this.#note(
      where(file),
      `HistoryFile ${file.value}: opendmarc's text history is not imported (authmilter's store is a different format); authmilter records from now on in ${DEFAULT_HISTORY_PATH} ` +
        "(reports.history; rows are kept for reports.retention, 180 days by default), and the aggregate reports are built from it with `authmilter report aggregate`. " +
        "Send the reports still due from the old file with opendmarc-import and opendmarc-reports before you retire them",
    );
  }

  #leftovers(): void {
    for (const conf of this.#confs()) {
      const known = conf.program === "opendkim" ? OPENDKIM_OPTIONS : OPENDMARC_OPTIONS;
      for (const e of conf.entries) {
        if (this.#handled.has(e)) continue;
        let reason = this.#reasons.get(e) ?? unmappedReason(conf.program, e.name);
        if (reason === undefined && !known.has(e.name)) {
          reason =
            conf.program === "opendmarc" && e.name.toLowerCase() === "ignoredomains"
              ? `not an opendmarc option (opendmarc refuses to start: "unrecognized parameter"); its option for this is IgnoreMailFrom (policy.dmarc.ignoreDomains)`
              : `not an ${conf.program} option (${conf.program} refuses to start: "unrecognized parameter")`;
        }
        this.#unmapped.push({ program: conf.program, option: e.name, value: e.value, where: where(e), reason: reason ?? "not carried over" });
      }
    }
  }

  // ---- output -------------------------------------------------------------------------------

  #render(values: Record<string, unknown>): string {
    const doc = new Document(values);
    const header: string[] = [
      ` authmilter configuration written by \`authmilter import\` (authmilter ${VERSION}) from:`,
      ...(this.#dkim ? [`   opendkim:  ${this.#dkim.file}`] : []),
      ...(this.#dmarc ? [`   opendmarc: ${this.#dmarc.file}`] : []),
      " Each setting names the option and line it came from; everything else keeps authmilter's",
      " default (config/authmilter.example.yaml documents every option). Check the file with:",
      "   authmilter config check --config <this file>",
      "",
      ` Not carried over (${this.#unmapped.length}):`,
      ...(this.#unmapped.length === 0 ? ["   (none)"] : this.#unmapped.flatMap((u) => [`   ${u.where}: ${u.option} ${u.value}`, `       ${u.reason}`])),
      "",
      ` Notes (${this.#notes.length}):`,
      ...(this.#notes.length === 0 ? ["   (none)"] : this.#notes.map((n) => `   - ${n.where ? `${n.where}: ` : ""}${n.text}`)),
    ];
    doc.commentBefore = header.join("\n");
    if (!isMap(doc.contents)) return doc.toString({ lineWidth: 0 });
    for (const [path, lines] of this.#comments) {
      // A comment for a section that ended up empty goes to the nearest key that exists.
      const parts = path.split(".");
      let pair: Pair | undefined;
      while (pair === undefined && parts.length > 0) {
        pair = findPair(doc, parts.join("."));
        parts.pop();
      }
      pair ??= doc.contents.items[0] as Pair | undefined;
      if (pair === undefined) continue;
      const key = pair.key as Scalar;
      const text = lines.map((l) => ` ${l}`).join("\n");
      key.commentBefore = key.commentBefore ? `${key.commentBefore}\n${text}` : text;
    }
    return doc.toString({ lineWidth: 0 });
  }
}

/** opendkim's "*" list syntax: "*" is the default list, "+name" adds, "-name" removes; otherwise the list itself. */
function expandDelta(list: readonly string[], base: readonly string[]): string[] {
  if (!list.includes("*")) return [...list];
  const remove = new Set(list.filter((x) => x.startsWith("-")).map((x) => x.slice(1).toLowerCase()));
  return [...base.filter((h) => !remove.has(h.toLowerCase())), ...list.filter((x) => x.startsWith("+")).map((x) => x.slice(1))];
}

/** The Postfix main.cf form of an opendkim socket spec. */
export function postfixMilter(spec: string): string {
  try {
    const s = parseSocketSpec(spec);
    if (s.kind === "unix") return `unix:${s.path}`;
    const host = s.host === "0.0.0.0" || s.host === "::" ? "localhost" : s.host;
    return host.includes(":") ? `inet:[${host}]:${s.port}` : `inet:${host}:${s.port}`;
  } catch {
    return spec;
  }
}

function orderTop(values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of TOP_ORDER) {
    const v = values[key];
    if (v === undefined) continue;
    const section = SCHEMA[key];
    out[key] = section !== undefined && !isFieldEntry(section) && isPlainObject(v) ? orderLike(section, v) : v;
  }
  return out;
}

function orderLike(section: Section, values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(section)) {
    const v = values[key];
    if (v === undefined) continue;
    const sub = section[key]!;
    out[key] = !isFieldEntry(sub) && isPlainObject(v) ? orderLike(sub, v) : v;
  }
  return out;
}

function isFieldEntry(entry: Section | Field): entry is Field {
  return "type" in entry && "target" in entry && typeof (entry as Field).doc === "string";
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The schema field at a dotted path; "signing.keys.domain" reaches into the entries' item. */
function fieldAt(path: string): Field | undefined {
  let node: Section | Field | undefined = SCHEMA;
  for (const part of path.split(".")) {
    if (node === undefined) return undefined;
    if (isFieldEntry(node)) node = node.type.kind === "entries" ? node.type.item[part] : undefined;
    else node = node[part];
  }
  return node !== undefined && isFieldEntry(node) ? node : undefined;
}

function findPair(doc: Document, path: string): Pair | undefined {
  let node: unknown = doc.contents;
  let pair: Pair | undefined;
  for (const part of path.split(".")) {
    if (!isMap(node)) return undefined;
    pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === part) as Pair | undefined;
    if (pair === undefined) return undefined;
    node = pair.value;
  }
  return pair;
}
