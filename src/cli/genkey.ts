// `authmilter genkey -d example.com -s 2026a [-b 2048 | -t ed25519] [-D dir]`: opendkim-genkey's
// job and files (<selector>.private, <selector>.txt), plus Ed25519 keys.
// Exit status: 0 written, 1 could not write (e.g. the files exist), 2 bad arguments.

import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "commander";
import { KeyError } from "../keys/errors.ts";
import { DEFAULT_RSA_BITS, generateKey, MAX_RSA_BITS, MIN_RSA_BITS } from "../keys/genkey.ts";
import { isValidDomainName } from "../keys/tables.ts";

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

interface GenkeyFlags {
  readonly domain: string;
  readonly selector: string;
  readonly type: string;
  readonly bits?: string;
  readonly directory: string;
  readonly hashAlgorithms: string;
  readonly note?: string;
  readonly restrict?: boolean;
  readonly subdomains: boolean;
  readonly testing?: boolean;
  readonly appendDomain?: boolean;
  readonly force?: boolean;
}

/** Commander's own errors (unknown option, missing value) are usage errors too: exit 2, help 0. */
export function usageExitCodes(cmd: Command): Command {
  return cmd.exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT_OK : EXIT_USAGE));
}

export function registerGenkey(program: Command): void {
  const cmd = program
    .command("genkey")
    .description("generate a DKIM key: <selector>.private (mode 0600) and <selector>.txt (the DNS record), like opendkim-genkey")
    .requiredOption("-d, --domain <domain>", "the signing domain (d=), e.g. example.com")
    .option("-s, --selector <selector>", "the selector (s=); also names the files", "default")
    .option("-t, --type <type>", "key type: rsa or ed25519 (RFC 8463); not opendkim-genkey's -t, which is --testing here", "rsa")
    .option("-b, --bits <bits>", `RSA key size, ${MIN_RSA_BITS}-${MAX_RSA_BITS} (default: ${DEFAULT_RSA_BITS})`)
    .option("-D, --directory <dir>", "where to write the files", ".")
    .option("--hash-algorithms <list>", 'h= of the record, colon-separated; "" for none (opendkim-genkey -h)', "sha256")
    .option("-n, --note <text>", "n= note in the record")
    .option("-r, --restrict", "restrict the key to email (s=email)")
    .option("-S, --no-subdomains", "forbid identities in subdomains (t=s)")
    .option("--testing", "mark the domain as testing DKIM (t=y)")
    .option("-a, --append-domain", "write the record name with the domain (selector._domainkey.example.com.)")
    .option("-f, --force", "replace existing files (opendkim-genkey always does; we refuse by default)")
    .addHelpText(
      "after",
      `
Exit status: 0 written, 1 could not write (e.g. the files already exist), 2 bad arguments.

Example:
  authmilter genkey -d example.com -s 2026a -D /etc/authmilter/keys
  authmilter genkey -d example.com -s 2026e -t ed25519 -D /etc/authmilter/keys`,
    );
  usageExitCodes(cmd).action(async (flags: GenkeyFlags) => {
    process.exitCode = await genkey(flags, (message) => cmd.error(`error: ${message}`, { exitCode: EXIT_USAGE }));
  });
}

async function genkey(flags: GenkeyFlags, usage: (message: string) => never): Promise<number> {
  const type = flags.type.toLowerCase();
  if (type !== "rsa" && type !== "ed25519") usage(`-t must be rsa or ed25519, not "${flags.type}"`);
  let bits: number | undefined;
  if (flags.bits !== undefined) {
    if (type === "ed25519") usage("-b applies to RSA keys only; Ed25519 keys have no size to choose");
    bits = /^\d+$/.test(flags.bits) ? Number(flags.bits) : NaN;
    if (!(bits >= MIN_RSA_BITS && bits <= MAX_RSA_BITS)) usage(`-b must be a number of bits from ${MIN_RSA_BITS} to ${MAX_RSA_BITS}, not "${flags.bits}"`);
  }
  if (!isValidDomainName(flags.domain)) usage(`-d "${flags.domain}" is not a domain name (write an internationalised domain as its xn-- form)`);
  if (!isValidDomainName(flags.selector)) usage(`-s "${flags.selector}" is not a valid selector (letters, digits, "-", "_" and dots)`);
  const directory = resolve(flags.directory);
  const dir = await stat(directory).catch(() => undefined);
  if (dir === undefined || !dir.isDirectory()) usage(`-D ${flags.directory}: no such directory`);

  try {
    const g = await generateKey({
      domain: flags.domain,
      selector: flags.selector,
      type,
      directory,
      hashAlgorithms: flags.hashAlgorithms === "" ? null : flags.hashAlgorithms,
      subdomains: flags.subdomains,
      overwrite: flags.force === true,
      ...(bits !== undefined && { bits }),
      ...(flags.note !== undefined && { note: flags.note }),
      ...(flags.restrict === true && { restrict: true }),
      ...(flags.testing === true && { testMode: true }),
      ...(flags.appendDomain === true && { appendDomain: true }),
    });
    const what = g.key.type === "rsa" ? `RSA ${g.key.bits}-bit` : "Ed25519";
    console.log(`wrote ${g.privateKeyPath}: ${what} private key, mode 0600`);
    console.log(`wrote ${g.txtPath}: the TXT record to publish at ${flags.selector}._domainkey.${flags.domain}`);
    console.log("");
    process.stdout.write(g.zone);
    return EXIT_OK;
  } catch (err) {
    if (!(err instanceof KeyError)) throw err;
    if (err.code === "invalid-option") usage(err.message);
    const message = err.code === "exists" ? `${err.file} already exists (it may be the key in use); move it away or use --force` : err.message;
    console.error(`authmilter genkey: ${message}`);
    return EXIT_FAILED;
  }
}
