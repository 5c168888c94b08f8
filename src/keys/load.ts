// Loading DKIM private keys the way opendkim does (dkimf_loadkey, dkimf_securefile,
// dkim_privkey_load), checked before use: the process that holds private keys trusts little.

import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { open, realpath, stat } from "node:fs/promises";
import type { Stats } from "node:fs";
import { dirname } from "node:path";
import { userInfo } from "node:os";
import { KeyError } from "./errors.ts";
import type { KeySource } from "./tables.ts";

export type DkimKeyType = "rsa" | "ed25519";
export type DkimAlgorithm = "rsa-sha256" | "ed25519-sha256";

export interface SigningKey {
  readonly type: DkimKeyType;
  readonly algorithm: DkimAlgorithm;
  /** RSA modulus length; 256 for Ed25519. */
  readonly bits: number;
  /** PKCS#8 PEM: mailauth re-parses a PEM string per message and rejects a KeyObject. */
  readonly privateKeyPem: string;
  readonly privateKey: KeyObject;
  /** The p= value to publish: base64 SubjectPublicKeyInfo for RSA, the raw 32 bytes for Ed25519 (RFC 8463). */
  readonly publicKey: string;
  /** The path, or a description of inline key data. */
  readonly source: string;
  /** Problems tolerated because requireSafeKeys is false (opendkim logs these as warnings). */
  readonly warnings: readonly string[];
}

export interface LoadKeyOptions {
  /** opendkim's RequireSafeKeys; default true. */
  readonly requireSafeKeys?: boolean;
  /** Smallest RSA key accepted for signing; default 1024 (RFC 8301 §3.2). 0 accepts any size. */
  readonly minimumKeyBits?: number;
}

export const DEFAULT_MINIMUM_KEY_BITS = 1024;

// opendkim reads key files into a MAXBUFRSZ (64 KiB) buffer; a 4096-bit PEM is about 3.3 KiB.
const MAX_KEY_FILE_BYTES = 65536;

/** Opens, checks and parses a private key file. */
export async function loadKeyFile(path: string, options: LoadKeyOptions = {}): Promise<SigningKey> {
  const minimumKeyBits = checkMinimumKeyBits(path, options.minimumKeyBits);
  let handle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    throw openError(path, err);
  }
  try {
    // Checked on the open descriptor, so the file judged is the file read.
    const st = await handle.stat();
    if (!st.isFile()) throw new KeyError(path, "not-a-file", `key file ${path} is not a regular file`);
    if (st.size > MAX_KEY_FILE_BYTES) {
      throw new KeyError(path, "invalid", `key file ${path} is ${st.size} bytes, too large to be a private key`);
    }
    const problems = await safetyProblems(path, st);
    const requireSafeKeys = options.requireSafeKeys ?? true;
    const first = problems[0];
    if (requireSafeKeys && first !== undefined) throw first;
    const data = await handle.readFile();
    const key = parsePrivateKey(data, path, { minimumKeyBits });
    return { ...key, warnings: problems.map((p) => `${p.message} (tolerated: requireSafeKeys is false)`) };
  } finally {
    await handle.close();
  }
}

/** Loads the key a KeyTable entry names; `origin` describes inline data, e.g. "KeyTable /etc/x:3". */
export async function loadKeySource(src: KeySource, options: LoadKeyOptions & { readonly origin?: string } = {}): Promise<SigningKey> {
  if (src.kind === "file") return loadKeyFile(src.path, options);
  const source = `inline key in ${options.origin ?? "KeyTable"}`;
  return parsePrivateKey(src.data, source, { minimumKeyBits: checkMinimumKeyBits(source, options.minimumKeyBits) });
}

function checkMinimumKeyBits(source: string, value: number | undefined): number {
  const v = value ?? DEFAULT_MINIMUM_KEY_BITS;
  if (!Number.isInteger(v) || v < 0) {
    throw new KeyError(source, "invalid-option", `minimumKeyBits must be a whole number ≥ 0, got ${String(value)}`);
  }
  return v;
}

function openError(path: string, err: unknown): KeyError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new KeyError(path, "not-found", `key file ${path} does not exist`, { cause: err });
  if (code === "EACCES") {
    return new KeyError(
      path,
      "unreadable",
      `key file ${path} cannot be read by ${whoAmI()}; the key must be owned by the user authmilter runs as: run chown ${userName()} ${path}`,
      { cause: err },
    );
  }
  return new KeyError(path, "unreadable", `key file ${path} cannot be opened (${code ?? String(err)})`, { cause: err });
}

function euid(): number | undefined {
  return typeof process.geteuid === "function" ? process.geteuid() : undefined;
}

function userName(): string {
  try {
    return userInfo().username;
  } catch {
    return String(euid() ?? "");
  }
}

function whoAmI(): string {
  const uid = euid();
  return uid === undefined ? "this user" : `uid ${uid} (${userName()})`;
}

/**
 * What opendkim's dkimf_securefile() would object to, as errors with the fix. Stricter than
 * opendkim in one respect: opendkim allows group read/write when nobody but the running user
 * and root is in the file's group; we cannot enumerate group members reliably (NSS), so any
 * group access is refused.
 */
async function safetyProblems(path: string, st: Stats): Promise<KeyError[]> {
  const me = euid();
  if (me === undefined) return []; // no POSIX ownership on this platform
  const problems: KeyError[] = [];
  if (st.uid !== me && st.uid !== 0) {
    problems.push(
      new KeyError(
        path,
        "unsafe-owner",
        `key file ${path} is owned by uid ${st.uid}, not by the user authmilter runs as (${whoAmI()}) or root; ` +
          `run chown ${userName()} ${path}`,
      ),
    );
  }
  const access = describeAccess(st.mode & 0o066);
  if (access !== undefined) {
    problems.push(
      new KeyError(
        path,
        "unsafe-mode",
        `key file ${path} is ${access} (mode ${(st.mode & 0o7777).toString(8).padStart(4, "0")}); run chmod 600 ${path}`,
      ),
    );
  }
  // A directory others can write to lets them replace the key with their own.
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    return problems;
  }
  const target = await stat(real);
  if (target.ino !== st.ino || target.dev !== st.dev) {
    problems.push(new KeyError(path, "unsafe-directory", `key file ${path} changed while it was being checked; try again`));
    return problems;
  }
  for (let dir = dirname(real); ; dir = dirname(dir)) {
    const ds = await stat(dir);
    const sticky = (ds.mode & 0o1000) !== 0;
    if (!sticky && (ds.mode & 0o022) !== 0) {
      const who = [(ds.mode & 0o020) !== 0 ? "group" : "", (ds.mode & 0o002) !== 0 ? "others" : ""].filter(Boolean).join(" and ");
      problems.push(
        new KeyError(path, "unsafe-directory", `directory ${dir}, which holds key file ${path}, is writable by ${who}, who could replace the key; run chmod go-w ${dir}`),
      );
    }
    if (ds.uid !== me && ds.uid !== 0 && (ds.mode & 0o200) !== 0) {
      problems.push(
        new KeyError(
          path,
          "unsafe-directory",
          `directory ${dir}, which holds key file ${path}, is owned by uid ${ds.uid}, who could replace the key; run chown root ${dir}`,
        ),
      );
    }
    if (dirname(dir) === dir) break;
  }
  return problems;
}

function describeAccess(bits: number): string | undefined {
  if (bits === 0) return undefined;
  const part = (r: number, w: number, who: string): string | undefined => {
    const what = [(bits & r) !== 0 ? "readable" : "", (bits & w) !== 0 ? "writable" : ""].filter(Boolean).join(" and ");
    return what === "" ? undefined : `${what} by ${who}`;
  };
  return [part(0o040, 0o020, "group"), part(0o004, 0o002, "others")].filter((s) => s !== undefined).join(", ");
}

/**
 * Parses private key data: PEM (PKCS#1 "RSA PRIVATE KEY", PKCS#8 "PRIVATE KEY" for RSA or
 * Ed25519), or base64 DER (what opendkim accepts inline in a KeyTable), or binary DER.
 * opendkim has no raw Ed25519 seed format (it hands the data to OpenSSL), so a 32-byte seed
 * as written by dkimpy's dknewkey is refused with the conversion command.
 */
export function parsePrivateKey(data: Buffer | string, source: string, options: Pick<LoadKeyOptions, "minimumKeyBits"> = {}): SigningKey {
  const minimumKeyBits = checkMinimumKeyBits(source, options.minimumKeyBits);
  const buf = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  const text = buf.toString("latin1").trim();
  let key: KeyObject | undefined;

  if (text.startsWith("-----BEGIN")) {
    if (/^-----BEGIN ENCRYPTED/.test(text) || /Proc-Type:\s*4,ENCRYPTED/.test(text)) {
      throw new KeyError(
        source,
        "encrypted",
        `${source}: the private key is encrypted with a passphrase, which neither opendkim nor authmilter can use; ` +
          `decrypt it with: openssl pkey -in ${source} -out ${source}.new && mv ${source}.new ${source}`,
      );
    }
    try {
      key = createPrivateKey({ key: text, format: "pem" });
    } catch (err) {
      const what = /-----BEGIN (?:RSA )?PUBLIC KEY|-----BEGIN CERTIFICATE/.test(text) ? "a public key or certificate, not a private key" : "a PEM block OpenSSL cannot parse";
      throw new KeyError(source, "invalid", `${source}: contains ${what}`, { cause: err });
    }
  } else if (/^[A-Za-z0-9+/=\s]+$/.test(text)) {
    const der = Buffer.from(text.replace(/\s+/g, ""), "base64");
    if (der.length === 32) {
      throw new KeyError(
        source,
        "raw-ed25519-seed",
        `${source}: looks like a raw 32-byte Ed25519 seed (dkimpy/rspamd format), which opendkim does not read either; ` +
          `convert it to PKCS#8 PEM with: { echo MC4CAQAwBQYDK2VwBCIEIA== | base64 -d; base64 -d ${source}; } | openssl pkey -inform DER -out ${source}.pem`,
      );
    }
    key = fromDer(der);
    if (key === undefined) throw new KeyError(source, "invalid", `${source}: base64 data is not a PKCS#8 or PKCS#1 private key`);
  } else {
    key = fromDer(buf);
    if (key === undefined) throw new KeyError(source, "invalid", `${source}: neither a PEM private key nor DER key data`);
  }
  return describeKey(key, source, minimumKeyBits);
}

function fromDer(der: Buffer): KeyObject | undefined {
  for (const type of ["pkcs8", "pkcs1"] as const) {
    try {
      return createPrivateKey({ key: der, format: "der", type });
    } catch {
      // try the next encoding
    }
  }
  return undefined;
}

function describeKey(key: KeyObject, source: string, minimumKeyBits: number): SigningKey {
  const privateKeyPem = key.export({ type: "pkcs8", format: "pem" }).toString();
  if (key.asymmetricKeyType === "ed25519") {
    return { type: "ed25519", algorithm: "ed25519-sha256", bits: 256, privateKeyPem, privateKey: key, publicKey: publicKeyDnsValue(key), source, warnings: [] };
  }
  if (key.asymmetricKeyType !== "rsa") {
    const kind = key.asymmetricKeyType === "rsa-pss" ? "an RSA-PSS key (DKIM's rsa-sha256 needs a plain RSA key)" : `a ${String(key.asymmetricKeyType)} key`;
    throw new KeyError(source, "unsupported-type", `${source}: is ${kind}; DKIM signs with RSA (rsa-sha256) or Ed25519 (ed25519-sha256, RFC 8463)`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < minimumKeyBits) {
    throw new KeyError(
      source,
      "too-small",
      `${source}: RSA key is ${bits} bits, below the minimum of ${minimumKeyBits} (minimumKeyBits); ` +
        `generate a 2048-bit key (authmilter genkey, or opendkim-genkey -b 2048) and publish its record`,
    );
  }
  return { type: "rsa", algorithm: "rsa-sha256", bits, privateKeyPem, privateKey: key, publicKey: publicKeyDnsValue(key), source, warnings: [] };
}

/** The p= value for a private or public key. */
export function publicKeyDnsValue(key: KeyObject): string {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType === "ed25519") {
    const x = pub.export({ format: "jwk" }).x;
    if (typeof x !== "string") throw new TypeError("Ed25519 key without a public point");
    return Buffer.from(x, "base64url").toString("base64");
  }
  return pub.export({ type: "spki", format: "der" }).toString("base64");
}

/**
 * One entry of mailauth's `signatureData`. mailauth 7.1.0's typings only accept the top-level
 * form, which silently signs nothing; callers must pass `{ signatureData: [this] }` with a cast.
 */
export interface MailauthSignatureData {
  readonly signingDomain: string;
  readonly selector: string;
  readonly privateKey: string;
  readonly algorithm: DkimAlgorithm;
  readonly identity?: string;
}

export function mailauthSignatureData(key: SigningKey, signingDomain: string, selector: string, identity?: string): MailauthSignatureData {
  const base = { signingDomain, selector, privateKey: key.privateKeyPem, algorithm: key.algorithm };
  return identity === undefined ? base : { ...base, identity };
}
