// DKIM key records (RFC 6376 §3.6.1, RFC 8463): building them in opendkim-genkey's exact layout,
// reading them back from a zone-file stub or DNS strings, and checking them against a private key
// (the part of opendkim-testkey that needs no DNS).

import { createPublicKey, type KeyObject } from "node:crypto";
import { RecordError } from "./errors.ts";
import type { DkimKeyType, SigningKey } from "./load.ts";

export interface DkimRecordOptions {
  readonly type: DkimKeyType;
  /** Base64 p= value (see SigningKey.publicKey). */
  readonly publicKey: string;
  /** h= value; Debian's opendkim-genkey writes "sha256". null leaves h= out (any hash). */
  readonly hashAlgorithms?: string | null;
  /** n= text (opendkim-genkey -n). */
  readonly note?: string;
  /** s=email (opendkim-genkey -r). */
  readonly restrict?: boolean;
  /** false writes t=s (opendkim-genkey -S); default true. */
  readonly subdomains?: boolean;
  /** t=y (opendkim-genkey -t). */
  readonly testMode?: boolean;
}

export interface DkimTxtRecord {
  /** The character-strings of the TXT record, each at most 255 bytes. */
  readonly strings: readonly string[];
  /** What a verifier sees: the strings concatenated. */
  readonly value: string;
}

// opendkim-genkey puts "p=" plus 250 characters in the second string and 250 in each after.
const CHUNK = 250;
const MAX_STRING = 255;

/** Builds the TXT record exactly as opendkim-genkey lays it out (with k=ed25519 for Ed25519 keys). */
export function buildDkimTxtRecord(options: DkimRecordOptions): DkimTxtRecord {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(options.publicKey)) throw new RecordError("public key must be base64");
  const hash = options.hashAlgorithms === undefined ? "sha256" : options.hashAlgorithms;
  if (hash !== null && !/^[a-z0-9]+(?::[a-z0-9]+)*$/.test(hash)) throw new RecordError(`invalid h= value "${hash}"`);
  if (options.note !== undefined && !/^[\x20-\x3a\x3c-\x7e]*$/.test(options.note)) {
    throw new RecordError("the note must be printable ASCII without \";\"");
  }
  let flags = "";
  if (options.testMode === true) flags = "t=y;";
  if (options.subdomains === false) flags = flags === "t=y;" ? "t=y:s;" : "t=s;";
  if (options.restrict === true) flags += `${flags === "" ? "" : " "}s=email;`;
  if (flags !== "") flags += " ";
  const note = options.note === undefined ? "" : ` n="${options.note}";`;
  const h = hash === null ? "" : ` h=${hash};`;
  const head = `v=DKIM1;${note}${h} k=${options.type}; ${flags}`;

  const strings = [...splitBytes(head)];
  const p = options.publicKey;
  strings.push(`p=${p.slice(0, CHUNK)}`);
  for (let i = CHUNK; i < p.length; i += CHUNK) strings.push(p.slice(i, i + CHUNK));
  return { strings, value: strings.join("") };
}

// Only a long note can push the first string past 255 bytes; the rest is ASCII by construction.
function splitBytes(s: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.length; i += MAX_STRING) out.push(s.slice(i, i + MAX_STRING));
  return out;
}

export interface ZoneEntryOptions {
  readonly selector: string;
  /** Only used in the comment unless appendDomain; opendkim-genkey's default is "localhost". */
  readonly domain: string;
  /** Write "selector._domainkey.domain." (opendkim-genkey -a). */
  readonly appendDomain?: boolean;
}

/** The <selector>.txt content opendkim-genkey writes, byte for byte (tabs, newlines, comment). */
export function formatZoneEntry(record: DkimTxtRecord, options: ZoneEntryOptions): string {
  const name = `${options.selector}._domainkey${options.appendDomain === true ? `.${options.domain}.` : ""}`;
  const quoted = record.strings.map((s) => `"${s.replace(/[\\"]/g, "\\$&")}"`);
  const comment = options.domain === "" ? "" : ` ; ----- DKIM key ${options.selector} for ${options.domain}`;
  return `${name}\tIN\tTXT\t( ${quoted.join("\n\t  ")} ) ${comment}\n`;
}

export interface ZoneEntry {
  readonly name: string;
  readonly strings: readonly string[];
}

/**
 * Reads a zone-file TXT entry such as opendkim-genkey's .txt file: owner name, optional TTL
 * and class, "TXT", then quoted strings, optionally in parentheses across lines; ";" starts a
 * comment outside quotes; \" \\ and \DDD escapes are decoded.
 */
export function parseZoneEntry(text: string): ZoneEntry {
  const tokens: { text: string; quoted: boolean }[] = [];
  for (let i = 0; i < text.length; ) {
    const c = text[i] ?? "";
    if (c === ";") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (/\s/.test(c) || c === "(" || c === ")") {
      i++;
    } else if (c === '"') {
      let s = "";
      i++;
      for (;;) {
        if (i >= text.length) throw new RecordError("unterminated quoted string");
        const d = text[i] ?? "";
        if (d === '"') break;
        if (d === "\\") {
          const ddd = /^[0-9]{3}/.exec(text.slice(i + 1, i + 4));
          if (ddd !== null) {
            s += String.fromCharCode(Number(ddd[0]));
            i += 4;
          } else {
            s += text[i + 1] ?? "";
            i += 2;
          }
          continue;
        }
        s += d;
        i++;
      }
      i++;
      tokens.push({ text: s, quoted: true });
    } else {
      let s = "";
      while (i < text.length && !/[\s;()"]/.test(text[i] ?? "")) s += text[i++];
      tokens.push({ text: s, quoted: false });
    }
  }
  const first = tokens[0];
  const txt = tokens.findIndex((t) => !t.quoted && t.text.toUpperCase() === "TXT");
  if (first === undefined || first.quoted || txt < 1) throw new RecordError("no \"name ... TXT\" entry found");
  const rest = tokens.slice(txt + 1);
  if (rest.length === 0) throw new RecordError("TXT entry has no strings");
  const unquoted = rest.find((t) => !t.quoted);
  if (unquoted !== undefined) throw new RecordError(`unexpected "${unquoted.text}" after TXT; only quoted strings are read`);
  return { name: first.text, strings: rest.map((t) => t.text) };
}

export interface DkimKeyRecord {
  /** Tag → value as published (whitespace around values removed). */
  readonly tags: ReadonlyMap<string, string>;
  readonly version: string | undefined;
  /** k=, default "rsa". */
  readonly keyType: string;
  /** h=, undefined when any hash is allowed. */
  readonly hashAlgorithms: readonly string[] | undefined;
  /** s=, default ["*"]. */
  readonly services: readonly string[];
  /** t= flags ("y" testing, "s" no subdomains). */
  readonly flags: readonly string[];
  /** p= with whitespace removed; "" when revoked. */
  readonly publicKey: string;
  readonly revoked: boolean;
}

/** Parses a key record (strings as returned by DNS, or already joined) per RFC 6376 §3.2 and §3.6.1. */
export function parseDkimKeyRecord(txt: string | readonly string[]): DkimKeyRecord {
  const value = typeof txt === "string" ? txt : txt.join("");
  const tags = new Map<string, string>();
  const order: string[] = [];
  const parts = value.split(";");
  parts.forEach((part, i) => {
    if (part.trim() === "") {
      if (i === parts.length - 1) return; // a trailing ";" is allowed
      throw new RecordError(`empty tag in "${value}"`);
    }
    const eq = part.indexOf("=");
    if (eq === -1) throw new RecordError(`"${part.trim()}" is not tag=value`);
    const name = part.slice(0, eq).trim();
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(name)) throw new RecordError(`invalid tag name "${name}"`);
    // RFC 6376 §3.2: a duplicated tag makes the whole tag-list invalid.
    if (tags.has(name)) throw new RecordError(`tag "${name}" appears twice`);
    tags.set(name, part.slice(eq + 1).trim());
    order.push(name);
  });
  const version = tags.get("v");
  if (version !== undefined && (version !== "DKIM1" || order[0] !== "v")) {
    throw new RecordError(version !== "DKIM1" ? `v=${version} is not DKIM1` : "v=DKIM1 must be the first tag");
  }
  const p = tags.get("p");
  if (p === undefined) throw new RecordError("no p= tag");
  const publicKey = p.replace(/\s+/g, "");
  if (publicKey !== "" && !/^[A-Za-z0-9+/]+={0,2}$/.test(publicKey)) throw new RecordError("p= is not base64");
  const list = (v: string | undefined): string[] | undefined =>
    v?.split(":").map((s) => s.trim().toLowerCase()).filter((s) => s !== "");
  return {
    tags,
    version,
    keyType: (tags.get("k") ?? "rsa").trim().toLowerCase(),
    hashAlgorithms: list(tags.get("h")),
    services: list(tags.get("s")) ?? ["*"],
    flags: list(tags.get("t")) ?? [],
    publicKey,
    revoked: publicKey === "",
  };
}

export type KeyRecordCheck =
  | { readonly ok: true; readonly reason: string; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly reason: string; readonly warnings: readonly string[] };

/** Whether a published record is the public half of `key` and usable for its signatures. */
export function checkKeyAgainstRecord(key: Pick<SigningKey, "type" | "privateKey">, txt: string | readonly string[]): KeyRecordCheck {
  const warnings: string[] = [];
  const fail = (reason: string): KeyRecordCheck => ({ ok: false, reason, warnings });
  let record: DkimKeyRecord;
  try {
    record = parseDkimKeyRecord(txt);
  } catch (err) {
    return fail(`record syntax: ${(err as Error).message}`);
  }
  if (record.flags.includes("y")) warnings.push("t=y: the domain is testing DKIM; verifiers may treat failures as unsigned");
  if (record.revoked) return fail("key revoked: the record has an empty p= (RFC 6376 §3.6.1)");
  if (record.keyType !== "rsa" && record.keyType !== "ed25519") return fail(`unknown key type k=${record.keyType}`);
  if (record.keyType !== key.type) return fail(`record says k=${record.keyType} but the private key is ${key.type}`);
  if (record.hashAlgorithms !== undefined && !record.hashAlgorithms.includes("sha256")) {
    return fail(`record allows h=${record.hashAlgorithms.join(":")} only, but signatures use sha256`);
  }
  if (!record.services.includes("*") && !record.services.includes("email")) {
    return fail(`record is for s=${record.services.join(":")}, not email`);
  }
  let published: KeyObject;
  try {
    published = publishedKey(record.publicKey, record.keyType);
  } catch (err) {
    return fail(`p= is not a valid ${record.keyType} public key (${(err as Error).message})`);
  }
  const mine = createPublicKey(key.privateKey).export({ type: "spki", format: "der" });
  const theirs = published.export({ type: "spki", format: "der" });
  if (!mine.equals(theirs)) {
    return fail(`public key mismatch: p= is not the public half of this private key (published ${describe(published)}, private ${describe(key.privateKey)})`);
  }
  return { ok: true, reason: "key OK", warnings };
}

function publishedKey(p: string, keyType: string): KeyObject {
  const der = Buffer.from(p, "base64");
  if (keyType === "ed25519") {
    // RFC 8463 §4.2: the bare 32-byte key, not a SubjectPublicKeyInfo.
    if (der.length !== 32) throw new Error(`Ed25519 p= must be 32 bytes, got ${der.length}`);
    return createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), der]), format: "der", type: "spki" });
  }
  // RFC 6376 says RSAPublicKey; SubjectPublicKeyInfo is what opendkim-genkey and everyone publish.
  try {
    return createPublicKey({ key: der, format: "der", type: "spki" });
  } catch {
    return createPublicKey({ key: der, format: "der", type: "pkcs1" });
  }
}

function describe(key: KeyObject): string {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  return bits === undefined ? String(key.asymmetricKeyType) : `${bits}-bit ${String(key.asymmetricKeyType)}`;
}
