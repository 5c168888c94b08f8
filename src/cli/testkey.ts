// `authmilter testkey -d example.com -s 2026a -k keyfile [--dns 127.0.0.1:5353]`: does the key
// record published in DNS belong to this private key? opendkim-testkey's job, for cron.
// Exit status: 0 the record matches, 1 it does not (or is missing, revoked, unreadable, or DNS
// failed), 2 bad arguments.

import type { Command } from "commander";
import { createResolver, isNoRecord, parseServer } from "../dns/index.ts";
import { KeyError } from "../keys/errors.ts";
import { loadKeyFile, type SigningKey } from "../keys/load.ts";
import { checkKeyAgainstRecord } from "../keys/record.ts";
import { isValidDomainName } from "../keys/tables.ts";
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, usageExitCodes } from "./genkey.ts";

interface TestkeyFlags {
  readonly domain: string;
  readonly selector: string;
  readonly key: string;
  readonly dns?: string[];
  readonly quiet?: boolean;
}

export function registerTestkey(program: Command): void {
  const cmd = program
    .command("testkey")
    .description("check that the DKIM key record in DNS matches a private key, like opendkim-testkey")
    .requiredOption("-d, --domain <domain>", "the signing domain (d=)")
    .requiredOption("-s, --selector <selector>", "the selector (s=)")
    .requiredOption("-k, --key <file>", "the private key file")
    .option("--dns <server...>", "DNS servers to ask (ip, ip:port, [ipv6]:port); default: the system's (/etc/resolv.conf)")
    .option("-q, --quiet", "print nothing when the key is OK (for cron)")
    .addHelpText(
      "after",
      `
Exit status: 0 the record matches the key; 1 it does not, or there is no record, the key is
revoked (empty p=), the key file cannot be used, or the DNS lookup failed; 2 bad arguments.

Example (cron):
  authmilter testkey -q -d example.com -s 2026a -k /etc/authmilter/keys/2026a.private`,
    );
  usageExitCodes(cmd).action(async (flags: TestkeyFlags) => {
    process.exitCode = await testkey(flags, (message) => cmd.error(`error: ${message}`, { exitCode: EXIT_USAGE }));
  });
}

async function testkey(flags: TestkeyFlags, usage: (message: string) => never): Promise<number> {
  if (!isValidDomainName(flags.domain)) usage(`-d "${flags.domain}" is not a domain name (write an internationalised domain as its xn-- form)`);
  if (!isValidDomainName(flags.selector)) usage(`-s "${flags.selector}" is not a valid selector`);
  for (const server of flags.dns ?? []) {
    try {
      parseServer(server);
    } catch (err) {
      usage(`--dns: ${(err as Error).message}`);
    }
  }
  const name = `${flags.selector}._domainkey.${flags.domain}`;
  const fail = (message: string): number => {
    console.error(`${name}: ${message}`);
    return EXIT_FAILED;
  };
  const warn = (message: string): void => console.error(`${name}: warning: ${message}`);

  let key: SigningKey;
  try {
    // Unsafe permissions and small keys are reported, not fatal: this checks the match, and
    // the daemon refuses such keys at start with its own message.
    key = await loadKeyFile(flags.key, { requireSafeKeys: false, minimumKeyBits: 0 });
  } catch (err) {
    if (err instanceof KeyError) return fail(err.message);
    throw err;
  }
  for (const w of key.warnings) warn(w);
  if (key.type === "rsa" && key.bits < 1024) warn(`the RSA key is ${key.bits} bits; signers must use at least 1024 (RFC 8301) and authmilter refuses it`);

  const resolver = createResolver({ ...(flags.dns !== undefined && { servers: flags.dns }), cache: false });
  let records: string[][];
  try {
    records = await resolver.resolve(name, "TXT");
  } catch (err) {
    if (isNoRecord(err)) return fail(`no key record: there is no TXT record at ${name}`);
    const code = (err as { code?: unknown }).code;
    return fail(`DNS lookup failed (${typeof code === "string" ? code : (err as Error).message}); verifiers would report a temporary error`);
  } finally {
    resolver.close();
  }
  const dkim = records.filter((r) => r.join("").trimStart().startsWith("v=DKIM1") || /(^|;)\s*p=/.test(r.join("")));
  if (dkim.length === 0) return fail(`no key record: the TXT record(s) at ${name} are not DKIM key records`);
  // Verifiers differ in which one they take (mailauth: the first), so one is the only safe number.
  if (dkim.length > 1) return fail(`${dkim.length} key records at ${name}; verifiers pick one of them unpredictably, publish exactly one`);

  const check = checkKeyAgainstRecord(key, dkim[0]!);
  for (const w of check.warnings) warn(w);
  if (!check.ok) return fail(check.reason);
  const what = key.type === "rsa" ? `${key.bits}-bit RSA` : "Ed25519";
  if (flags.quiet !== true) console.log(`${name}: key OK (${what}, matches ${flags.key})`);
  return EXIT_OK;
}
