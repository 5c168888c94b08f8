// Key generation like opendkim-genkey(8): <selector>.private and <selector>.txt in a directory.
// opendkim-genkey only makes RSA keys; Ed25519 (RFC 8463) is added with k=ed25519.

import { generateKeyPair as generateKeyPairCb } from "node:crypto";
import { open, unlink } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { KeyError } from "./errors.ts";
import { parsePrivateKey, type DkimKeyType, type SigningKey } from "./load.ts";
import { buildDkimTxtRecord, formatZoneEntry, type DkimTxtRecord } from "./record.ts";
import { isValidDomainName } from "./tables.ts";

const generateKeyPair = promisify(generateKeyPairCb);

export interface GenerateKeyOptions {
  /** Default "default", as opendkim-genkey. */
  readonly selector?: string;
  /** Used in the .txt comment (and name with appendDomain); default "localhost", as opendkim-genkey. */
  readonly domain?: string;
  /** Default "rsa". */
  readonly type?: DkimKeyType;
  /** RSA only: 1024–4096, default 2048 (Debian's opendkim-genkey default, NIST SP 800-177). */
  readonly bits?: number;
  /** Where to write the files; default the current directory. */
  readonly directory?: string;
  /** h= value, default "sha256" (Debian's opendkim-genkey); null for no h=. */
  readonly hashAlgorithms?: string | null;
  readonly note?: string;
  readonly restrict?: boolean;
  readonly subdomains?: boolean;
  readonly testMode?: boolean;
  readonly appendDomain?: boolean;
  /** opendkim-genkey silently replaces existing files; we refuse unless this is true. */
  readonly overwrite?: boolean;
}

export interface GeneratedKey {
  readonly privateKeyPath: string;
  readonly txtPath: string;
  readonly key: SigningKey;
  readonly record: DkimTxtRecord;
  /** The .txt file content. */
  readonly zone: string;
}

export const DEFAULT_RSA_BITS = 2048;
export const MIN_RSA_BITS = 1024;
export const MAX_RSA_BITS = 4096;

export async function generateKey(options: GenerateKeyOptions = {}): Promise<GeneratedKey> {
  const selector = options.selector ?? "default";
  const domain = options.domain ?? "localhost";
  const type = options.type ?? "rsa";
  const directory = options.directory ?? ".";
  const where = join(directory, `${selector}.private`);
  const invalid = (message: string): KeyError => new KeyError(where, "invalid-option", message);

  // The selector becomes a file name and a DNS label: nothing that could leave the directory.
  if (!isValidDomainName(selector)) throw invalid(`"${selector}" is not a valid selector (letters, digits, "-", "_", dots)`);
  if (domain !== "" && !isValidDomainName(domain)) throw invalid(`"${domain}" is not a valid domain name`);
  if (type !== "rsa" && type !== "ed25519") throw invalid(`key type must be "rsa" or "ed25519", got "${String(type)}"`);
  if (type === "ed25519" && options.bits !== undefined) throw invalid("bits applies to RSA keys only; Ed25519 keys are always 256 bits");
  const bits = options.bits ?? DEFAULT_RSA_BITS;
  if (!Number.isInteger(bits) || bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
    throw invalid(`RSA key size must be a whole number from ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits, got ${bits}`);
  }

  const pair =
    type === "rsa"
      ? await generateKeyPair("rsa", { modulusLength: bits, publicExponent: 0x10001 })
      : await generateKeyPair("ed25519");
  const pem = pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const key = parsePrivateKey(pem, where, { minimumKeyBits: 0 });
  const record = buildDkimTxtRecord({
    type,
    publicKey: key.publicKey,
    ...(options.hashAlgorithms !== undefined && { hashAlgorithms: options.hashAlgorithms }),
    ...(options.note !== undefined && { note: options.note }),
    ...(options.restrict !== undefined && { restrict: options.restrict }),
    ...(options.subdomains !== undefined && { subdomains: options.subdomains }),
    ...(options.testMode !== undefined && { testMode: options.testMode }),
  });
  const zone = formatZoneEntry(record, { selector, domain, ...(options.appendDomain !== undefined && { appendDomain: options.appendDomain }) });

  const privateKeyPath = where;
  const txtPath = join(directory, `${selector}.txt`);
  const overwrite = options.overwrite === true;
  const created: string[] = [];
  try {
    // opendkim-genkey runs under umask 077; 0600 is the mode RequireSafeKeys accepts.
    await writeFileMode(privateKeyPath, pem, 0o600, overwrite);
    created.push(privateKeyPath);
    // The record is public; 0644 lets DNS tooling run as another user read it.
    await writeFileMode(txtPath, zone, 0o644, overwrite);
    created.push(txtPath);
  } catch (err) {
    // A key without its record (or the reverse) is a trap for the next run.
    await Promise.all(created.map((p) => unlink(p).catch(() => undefined)));
    throw err;
  }
  return { privateKeyPath, txtPath, key, record, zone };
}

async function writeFileMode(path: string, data: string, mode: number, overwrite: boolean): Promise<void> {
  let handle;
  try {
    handle = await open(path, overwrite ? "w" : "wx", mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") {
      throw new KeyError(path, "exists", `${path} already exists; move it away first (it may be the key in use) or pass overwrite`, { cause: err });
    }
    throw new KeyError(path, "unreadable", `cannot create ${path} (${code ?? String(err)})`, { cause: err });
  }
  try {
    // open()'s mode is ignored for an existing file and reduced by the umask: set it explicitly.
    await handle.chmod(mode);
    await handle.writeFile(data);
  } finally {
    await handle.close();
  }
}
