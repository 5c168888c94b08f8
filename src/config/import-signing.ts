// opendkim's signing options (KeyTable and SigningTable or Domain/KeyFile/Selector, the signed
// and over-signed headers, canonicalization, expiry, algorithm) to signing.*.

import { isAbsolute } from "node:path";
import { DEFAULT_SIGNED_HEADERS } from "../auth/sign.ts";
import { parseDatasetSpec, readDatasetFile } from "../keys/dataset.ts";
import { TableError } from "../keys/errors.ts";
import { openKeyTable, openSigningTable } from "../keys/open.ts";
import { parseKeyTable, validateSigningTable, type KeyTable, type SigningTable } from "../keys/tables.ts";
import { parseConfBoolean, parseConfInteger, where, type ConfEntry, type ParsedConf } from "./import-conf.ts";
import type { ImportContext } from "./import-context.ts";

/** opendkim's OmitHeaders default (libopendkim dkim_should_not_signhdrs). */
const DEFAULT_OMITTED_HEADERS = ["Return-Path", "Received", "Comments", "Keywords", "Bcc", "Resent-Bcc", "DKIM-Signature"];

export async function mapSigning(ctx: ImportContext): Promise<void> {
  const dkim = ctx.dkim;
  if (dkim === undefined) return;
  const keyTable = await mapKeyAndSigningTables(ctx, dkim);
  if (!keyTable) await mapSingleKey(ctx, dkim);

  const multi = ctx.take(dkim, "MultipleSignatures");
  if (multi) ctx.set("signing.multipleSignatures", parseConfBoolean(multi.value), ctx.source(multi));

  const safe = ctx.take(dkim, "RequireSafeKeys");
  if (safe) {
    const v = parseConfBoolean(safe.value);
    ctx.set("signing.requireSafeKeys", v, ctx.source(safe));
    if (v === false) ctx.note(where(safe), "RequireSafeKeys is off: key files that others can read are used, as before; turn signing.requireSafeKeys on once the keys are mode 0600");
  }

  const minBits = ctx.take(dkim, "MinimumKeyBits");
  if (minBits) {
    const n = parseConfInteger(minBits.value) ?? 0;
    if (n < 1024) {
      ctx.reject(minBits, "opendkim applies it to signatures it verifies; authmilter's verifier never accepts RSA keys under 1024 bits (RFC 8301), so a lower value has no equivalent");
    } else if (n > 16384) {
      ctx.reject(minBits, `${n} is more than authmilter's largest signing.minimumKeyBits (16384)`);
    } else {
      ctx.set("signing.minimumKeyBits", n, `${ctx.source(minBits)}: opendkim applies it to keys of signatures it verifies, authmilter to its own signing keys`);
      if (n > 1024) {
        ctx.note(where(minBits), `MinimumKeyBits ${n}: authmilter refuses to sign with smaller keys; its verifier accepts keys from 1024 bits (a stricter verification minimum has no equivalent)`);
      }
    }
  }

  await mapAuthor(ctx, dkim);
  await mapSubmissionDaemons(ctx, dkim);
  await mapHeaders(ctx, dkim);

  const canon = ctx.take(dkim, "Canonicalization");
  if (canon) {
    const [h = "", b = "simple"] = canon.value.toLowerCase().split("/", 2);
    const ok = (x: string) => x === "relaxed" || x === "simple";
    if (ok(h) && ok(b)) ctx.set("signing.canonicalization", `${h}/${b}`, ctx.source(canon));
    else ctx.reject(canon, `"${canon.value}" is not relaxed or simple (opendkim refuses it)`);
  } else {
    ctx.note(undefined, "Canonicalization was not set: opendkim signed with simple/simple; authmilter's default relaxed/relaxed applies (it survives header re-folding in transit)");
  }

  const ttl = ctx.take(dkim, "SignatureTTL");
  if (ttl) {
    const n = parseConfInteger(ttl.value) ?? 0;
    if (n > 0 && n <= 366 * 86_400) ctx.set("signing.expire", `${n}s`, ctx.source(ttl));
    else if (n > 366 * 86_400) ctx.reject(ttl, "authmilter's signing.expire is at most 366 days");
    else ctx.comment("signing", `${ctx.source(ttl)}: no expiry, authmilter's default`);
  }

  const alg = ctx.take(dkim, "SignatureAlgorithm");
  if (alg) {
    const v = alg.value.toLowerCase();
    if (v === "rsa-sha256" || v === "ed25519-sha256") {
      ctx.comment("signing", `${ctx.source(alg)}: authmilter picks the algorithm from the key (RSA keys rsa-sha256, Ed25519 keys ed25519-sha256)`);
    } else {
      ctx.reject(alg, v === "rsa-sha1" ? "authmilter never signs with rsa-sha1 (RFC 8301); RSA keys sign with rsa-sha256" : `"${alg.value}" is not a signing algorithm`);
    }
  }
}

/** KeyTable + SigningTable. Returns whether a KeyTable is set (then Domain/KeyFile/Selector are ignored). */
async function mapKeyAndSigningTables(ctx: ImportContext, dkim: ParsedConf): Promise<boolean> {
  const kt = ctx.take(dkim, "KeyTable");
  const st = ctx.take(dkim, "SigningTable");
  if (kt === undefined) {
    if (st) ctx.reject(st, 'a SigningTable needs a KeyTable (opendkim refuses to start: "use of SigningTable requires KeyTable")');
    return false;
  }
  for (const name of ["Domain", "KeyFile", "Selector", "SubDomains"]) {
    const e = ctx.peek(dkim, name);
    if (e) ctx.reject(e, "opendkim ignores it because KeyTable is set");
  }
  if (st === undefined) {
    ctx.reject(kt, "a KeyTable without a SigningTable selects no key (opendkim uses it only from a Lua SetupPolicyScript); authmilter needs both");
    return true;
  }
  const ktSpec = tableSpec(ctx, dkim, kt, "file");
  const stSpec = tableSpec(ctx, dkim, st, "refile");
  if (ktSpec === undefined || stSpec === undefined) return true;

  let keys: KeyTable | undefined;
  let signing: SigningTable | undefined;
  try {
    keys = await openKeyTable(ktSpec);
  } catch (err) {
    if (!(err instanceof TableError)) throw err;
    ctx.note(where(kt), `authmilter cannot load this KeyTable yet: ${err.message}. Fix it before starting authmilter`);
  }
  try {
    signing = await openSigningTable(stSpec);
  } catch (err) {
    if (!(err instanceof TableError)) throw err;
    ctx.note(where(st), `authmilter cannot load this SigningTable yet: ${err.message}. Fix it before starting authmilter`);
  }
  if (keys && signing) {
    try {
      validateSigningTable(signing, keys);
    } catch (err) {
      if (!(err instanceof TableError)) throw err;
      ctx.note(where(st), `${err.message}: opendkim fails such messages at signing time, authmilter refuses to start`);
    }
  }
  if (keys) await noteRelativeKeyPaths(ctx, dkim, kt, keys);
  ctx.set("signing.keyTable", ktSpec, `${ctx.source(kt)}${keys ? `: ${keys.entries.size} keys, read as it is` : ""}`);
  ctx.set("signing.signingTable", stSpec, `${ctx.source(st)}${signing ? `: ${signing.entries.length} entries, read as it is` : ""}`);
  return true;
}

/** A KeyTable/SigningTable spec with an absolute path, or undefined (reported) when unusable. */
function tableSpec(ctx: ImportContext, dkim: ParsedConf, entry: ConfEntry, allowed: "file" | "refile"): string | undefined {
  let ds;
  try {
    ds = parseDatasetSpec(entry.value, entry.name);
  } catch (err) {
    if (!(err instanceof TableError)) throw err;
    ctx.reject(entry, err.reason);
    return undefined;
  }
  if (ds.kind === "csl" || (ds.kind === "refile" && allowed === "file")) {
    ctx.reject(entry, `authmilter reads a ${entry.name} from a file only (${allowed === "refile" ? "file:/path, /path or refile:/path" : "file:/path or /path"})`);
    return undefined;
  }
  const path = ctx.abs(dkim, ds.path);
  return ds.kind === "refile" ? `refile:${path}` : path;
}

/** opendkim resolves "./" key paths against BaseDirectory; authmilter against its working directory. */
async function noteRelativeKeyPaths(ctx: ImportContext, dkim: ParsedConf, kt: ConfEntry, keys: KeyTable): Promise<void> {
  const raw = parseKeyTable(await readDatasetFile(keys.file), keys.file);
  const relative = [...raw.entries.values()].filter((e) => e.key.kind === "file" && !isAbsolute(e.key.path));
  if (relative.length === 0) return;
  const base = dkim.get("BaseDirectory")?.value ?? "/";
  const lines = relative.map((e) => `${keys.file}:${e.line}`).join(", ");
  ctx.note(
    where(kt),
    `KeyTable entries with relative key paths (${lines}): opendkim resolves them against ${base === "/" ? "its working directory (/)" : `BaseDirectory ${base}`}, ` +
      `authmilter against its working directory (/ under systemd). Write absolute paths in the KeyTable${base === "/" ? "" : `, or give authmilter WorkingDirectory=${base} in its unit`}`,
  );
}

/** Domain + KeyFile + Selector (+ SubDomains): opendkim's single-key mode, as native entries. */
async function mapSingleKey(ctx: ImportContext, dkim: ParsedConf): Promise<void> {
  const domain = ctx.take(dkim, "Domain");
  const keyFile = ctx.take(dkim, "KeyFile");
  const selector = ctx.take(dkim, "Selector");
  const subdomains = ctx.take(dkim, "SubDomains");
  if (!domain && !keyFile && !selector) {
    if (subdomains) ctx.reject(subdomains, "SubDomains applies to Domain, which is not set");
    if (ctx.get("mode") !== "verify") ctx.note(undefined, "no signing key is configured (no KeyTable, no Domain/KeyFile/Selector): nothing is signed until you add signing.keys (authmilter genkey)");
    return;
  }
  if (!domain || !keyFile || !selector) {
    const missing = [!domain && "Domain", !keyFile && "KeyFile", !selector && "Selector"].filter(Boolean).join(", ");
    for (const e of [domain, keyFile, selector, subdomains]) {
      if (e) ctx.reject(e, `single-key signing needs Domain, KeyFile and Selector together; ${missing} missing, so opendkim signs nothing with it`);
    }
    return;
  }
  const ds = await ctx.tryDataset(dkim, domain);
  if (ds === undefined) return;
  if (ds.kind === "refile") {
    ctx.reject(domain, "a refile: Domain list has no equivalent; write the domains as signing.keys entries");
    return;
  }
  const selBad = ctx.schemaCheck("signing.keys.selector", selector.value);
  if (selBad !== undefined) {
    ctx.reject(selector, selBad);
    return;
  }
  const path = ctx.abs(dkim, keyFile.value);
  const sub = subdomains !== undefined && parseConfBoolean(subdomains.value) === true;
  const entries: Record<string, string>[] = [];
  for (const item of ds.items) {
    const d = item.key.toLowerCase();
    const bad = ctx.schemaCheck("signing.keys.domain", d);
    if (bad !== undefined) {
      ctx.note(item.where, `Domain entry "${item.key}" left out: ${bad}`);
      continue;
    }
    entries.push({ domain: d, selector: selector.value, keyFile: path });
    if (sub && d !== "*") entries.push({ domain: `*.${d}`, signingDomain: d, selector: selector.value, keyFile: path });
  }
  const what = [domain, selector, keyFile, ...(subdomains ? [subdomains] : [])].map((e) => ctx.source(e)).join(", ");
  ctx.set("signing.keys", entries, `${what}${ds.kind === "file" ? `; domains read from ${ds.path}` : ""}`);
  if (sub) {
    ctx.note(where(subdomains!), "SubDomains: mail from a subdomain is signed with d= the listed domain (a \"*.domain\" entry), as in opendkim; authmilter adds no i=@subdomain tag");
  } else if (subdomains) {
    ctx.comment("signing.keys", `${ctx.source(subdomains)}: subdomains are not signed`);
  }
}

async function mapAuthor(ctx: ImportContext, dkim: ParsedConf): Promise<void> {
  const macro = ctx.take(dkim, "SenderMacro");
  const headers = ctx.take(dkim, "SenderHeaders");
  if (macro) {
    const name = macro.value.replace(/^\{(.*)\}$/, "$1");
    if (name === "mail_addr") ctx.set("signing.author", "mailfrom", ctx.source(macro));
    else ctx.reject(macro, `only {mail_addr} (the envelope sender) has an equivalent (signing.author: mailfrom)`);
    if (headers) ctx.reject(headers, "SenderMacro takes precedence");
    return;
  }
  if (!headers) return;
  const ds = await ctx.tryDataset(dkim, headers);
  if (ds === undefined) return;
  const names = ds.items.map((i) => i.key.toLowerCase()).join(",");
  if (names === "from") ctx.set("signing.author", "from", ctx.source(headers));
  else if (names === "sender,from") ctx.set("signing.author", "sender", ctx.source(headers));
  else ctx.reject(headers, 'only "From" and "Sender,From" have an equivalent (signing.author: from or sender)');
}

async function mapSubmissionDaemons(ctx: ImportContext, dkim: ParsedConf): Promise<void> {
  const daemons: string[] = [];
  const sources: string[] = [];
  const mta = ctx.take(dkim, "MTA");
  if (mta) {
    const ds = await ctx.tryDataset(dkim, mta);
    if (ds) {
      daemons.push(...ds.items.map((i) => i.key));
      sources.push(ctx.source(mta));
    }
  }
  const macros = ctx.take(dkim, "MacroList");
  if (macros) {
    const ds = await ctx.tryDataset(dkim, macros);
    if (ds) {
      const left: string[] = [];
      for (const item of ds.items) {
        // "name=v1|v2" (inline list) or "name v1|v2" (file)
        const [rawName = "", rawValues] = item.value === undefined ? item.key.split("=", 2) : [item.key, item.value];
        const name = rawName.replace(/^\{(.*)\}$/, "$1");
        const values = (rawValues ?? "").split("|").map((v) => v.trim()).filter((v) => v !== "");
        if (name === "daemon_name" && values.length > 0) daemons.push(...values);
        else if (name === "auth_type" || name === "auth_authen") {
          ctx.comment("signing.submissionDaemons", `MacroList ${item.key}: authmilter already treats SASL-authenticated mail as ours`);
        } else left.push(item.value === undefined ? item.key : `${item.key} ${item.value}`);
      }
      if (left.length > 0) {
        ctx.reject(macros, `only daemon_name with values has an equivalent (signing.submissionDaemons); not carried over: ${left.join(", ")}`);
      } else sources.push(ctx.source(macros));
    }
  }
  if (daemons.length > 0) ctx.set("signing.submissionDaemons", [...new Set(daemons)], sources.join("; "));
}

async function mapHeaders(ctx: ImportContext, dkim: ParsedConf): Promise<void> {
  const signE = ctx.take(dkim, "SignHeaders");
  const omitE = ctx.take(dkim, "OmitHeaders");
  const overE = ctx.take(dkim, "OversignHeaders");
  const names = async (e: ConfEntry): Promise<string[] | undefined> => {
    const ds = await ctx.tryDataset(dkim, e);
    if (ds?.kind === "refile") {
      ctx.reject(e, "a refile: list has no equivalent");
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
    const src = [signE, omitE].filter((e): e is ConfEntry => e !== undefined).map((e) => ctx.source(e)).join("; ");
    if (bad.length > 0) ctx.note(where((signE ?? omitE)!), `left out of signing.headers, not header field names: ${bad.join(", ")}`);
    const isDefault = headers.length === DEFAULT_SIGNED_HEADERS.length && headers.every((h, i) => lower(h) === lower(DEFAULT_SIGNED_HEADERS[i]!));
    if (isDefault) ctx.comment("signing", `${src}: authmilter's built-in list`);
    else {
      ctx.set("signing.headers", headers, `${src}${dropped.length > 0 ? `; OmitHeaders removed ${dropped.join(", ")}` : ""}`);
      if (signList?.includes("*")) ctx.note(where(signE!), `SignHeaders "*" stands for the built-in list; authmilter's (opendkim's plus RFC 6376 §5.4.1 and List-Unsubscribe-Post) was used`);
    }
  }
  if (overE) {
    const list = await names(overE);
    if (list === undefined) return;
    const usable = list.filter((h) => /^[\x21-\x39\x3b-\x7e]+$/.test(h) && !/^[*+-]/.test(h) && lower(h) !== "dkim-signature");
    const skipped = list.filter((h) => !usable.includes(h));
    if (skipped.length > 0) ctx.note(where(overE), `left out of signing.oversign: ${skipped.join(", ")} (not a header field name authmilter can over-sign)`);
    ctx.set("signing.oversign", usable, ctx.source(overE));
  } else {
    ctx.note(undefined, "OversignHeaders was not set: opendkim over-signed nothing; authmilter's default over-signs From, Reply-To, Subject, Date, To, Cc and Message-ID");
  }
}

/** opendkim's "*" list syntax: "*" is the default list, "+name" adds, "-name" removes; otherwise the list itself. */
function expandDelta(list: readonly string[], base: readonly string[]): string[] {
  if (!list.includes("*")) return [...list];
  const remove = new Set(list.filter((x) => x.startsWith("-")).map((x) => x.slice(1).toLowerCase()));
  return [...base.filter((h) => !remove.has(h.toLowerCase())), ...list.filter((x) => x.startsWith("+")).map((x) => x.slice(1))];
}
