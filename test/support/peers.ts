// Other DKIM implementations as signers, for proving that we verify what real peers produce:
// dkimpy (Debian: python3-dkim), Mail::DKIM (libmail-dkim-perl) and opendkim's own test mode
// (opendkim). Each signer takes the whole message (CRLF lines) and returns the message as the
// next hop would receive it: the new DKIM-Signature field on top, the rest byte for byte.
//
// Availability is probed once, synchronously, so suites can decide at collection time whether to
// skip. Outside CI a missing peer skips its suite with the reason in the suite's name; under
// CI=true it fails, so a broken CI image cannot pass with the interop tests silently skipped.

import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findExecutable } from "./prereq.ts";
import { describeResult, run } from "./run.ts";

export type Canonicalization = "relaxed/relaxed" | "simple/simple" | "relaxed/simple" | "simple/relaxed";

export interface PeerSignOptions {
  readonly domain: string;
  readonly selector: string;
  readonly canonicalization: Canonicalization;
  readonly algorithm: "rsa-sha256" | "ed25519-sha256";
  /**
   * rsa-sha256: the private key as PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"), the form all three read.
   * ed25519-sha256: for dkimpy the base64 of the 32-octet seed; for opendkim a PKCS#8 PEM.
   */
  readonly privateKey: string;
}

/** Whether a peer can run here, and the Debian package that provides it. */
export interface PeerGate {
  /** True when the suite should be skipped (never under CI=true when the tool is missing). */
  readonly skip: boolean;
  /** Suffix for the suite name: "" or " [skipped: …]" / " [CI: …]". */
  readonly label: string;
  /** Call in beforeAll: throws the reason when the suite runs without the tool (CI). */
  assertReady(): void;
}

const CI = process.env["CI"] === "true";

/**
 * missing: a tool that is not installed (a skip here, a failure under CI).
 * unsupported: the installed version cannot do it at all (a skip everywhere, with the reason).
 */
export function peerGate(missing: string | undefined, unsupported?: string): PeerGate {
  if (missing !== undefined) {
    return {
      skip: !CI,
      label: CI ? ` [CI: ${missing}]` : ` [skipped: ${missing}]`,
      assertReady() {
        throw new Error(`peer missing under CI=true: ${missing}`);
      },
    };
  }
  if (unsupported !== undefined) return { skip: true, label: ` [skipped: ${unsupported}]`, assertReady() {} };
  return { skip: false, label: "", assertReady() {} };
}

/** The apt packages these helpers need (python3-nacl comes with python3-dkim; listed for clarity). */
export const PEER_PACKAGES = "python3-dkim python3-nacl libmail-dkim-perl opendkim";

// ---- dkimpy -----------------------------------------------------------------------------

interface PythonProbe {
  readonly python?: string;
  readonly version?: string;
  readonly ed25519: boolean;
}

/** A python3 that can import dkim: Debian's /usr/bin/python3 first, since a pyenv shim lacks it. */
function probePython(): PythonProbe {
  const script = [
    "import dkim, dkim.crypto",
    "try:\n import nacl.signing\n ed = b'ed25519-sha256' in dkim.crypto.HASH_ALGORITHMS\nexcept ImportError:\n ed = False",
    "try:\n from importlib.metadata import version\n v = version('dkimpy')\nexcept Exception:\n v = 'unknown'",
    "print(v, 'ed25519' if ed else 'rsa-only')",
  ].join("\n");
  for (const candidate of ["/usr/bin/python3", "python3"]) {
    const r = spawnSync(candidate, ["-c", script], { encoding: "utf8" });
    if (r.status === 0) {
      const [version, ed] = r.stdout.trim().split(" ");
      return { python: candidate, ...(version ? { version } : {}), ed25519: ed === "ed25519" };
    }
  }
  return { ed25519: false };
}

const PYTHON = probePython();

export const dkimpy = {
  version: PYTHON.version,
  gate: peerGate(PYTHON.python === undefined ? `python3 with dkimpy not installed (apt-get install python3-dkim)` : undefined),
  /** dkimpy learnt Ed25519 (RFC 8463) in 0.7 and needs PyNaCl for it. */
  ed25519Gate: peerGate(
    PYTHON.python === undefined ? `python3 with dkimpy not installed (apt-get install python3-dkim)` : undefined,
    PYTHON.python !== undefined && !PYTHON.ed25519 ? `dkimpy ${PYTHON.version ?? "?"} cannot sign with Ed25519 (needs dkimpy >= 0.7 and python3-nacl)` : undefined,
  ),
};

const DKIMPY_SIGN = `
import sys, dkim
selector, domain, keyfile, canon, algo = sys.argv[1:6]
header, body = canon.split('/')
with open(keyfile, 'rb') as f:
    key = f.read()
message = sys.stdin.buffer.read()
sig = dkim.sign(message, selector.encode(), domain.encode(), key,
                canonicalize=(header.encode(), body.encode()),
                signature_algorithm=algo.encode(), linesep=b'\\r\\n')
sys.stdout.buffer.write(sig)
`;

/** Signs with dkim.sign() (default header list); returns the signed message. */
export async function signWithDkimpy(message: Buffer, opts: PeerSignOptions): Promise<Buffer> {
  if (PYTHON.python === undefined) throw new Error("dkimpy is not installed (apt-get install python3-dkim)");
  return withDir(async (dir) => {
    const keyFile = join(dir, "key");
    await writeFile(keyFile, opts.privateKey, { mode: 0o600 });
    const args = ["-c", DKIMPY_SIGN, opts.selector, opts.domain, keyFile, opts.canonicalization, opts.algorithm];
    const r = await run(PYTHON.python!, args, { input: message, timeoutMs: 60_000 });
    return Buffer.concat([signatureField("dkimpy", r), message]);
  });
}

// ---- Mail::DKIM -------------------------------------------------------------------------

const PERL_OK = spawnSync("perl", ["-MMail::DKIM::Signer", "-MMail::DKIM::TextWrap", "-e", "1"]).status === 0;

export const mailDkim = {
  gate: peerGate(PERL_OK ? undefined : "perl Mail::DKIM not installed (apt-get install libmail-dkim-perl)"),
};

const MAIL_DKIM_SIGN = `
use strict; use warnings;
use Mail::DKIM::Signer; use Mail::DKIM::TextWrap;
my ($selector, $domain, $keyfile, $canon, $algo) = @ARGV;
binmode STDIN; binmode STDOUT;
my $signer = Mail::DKIM::Signer->new(Algorithm => $algo, Method => $canon, Domain => $domain,
                                     Selector => $selector, KeyFile => $keyfile);
local $/;
my $message = <STDIN>;
$signer->PRINT($message);
$signer->CLOSE;
print $signer->signature->as_string, "\\r\\n";
`;

/** Signs with Mail::DKIM::Signer (its default header list, TextWrap folding). */
export async function signWithMailDkim(message: Buffer, opts: PeerSignOptions): Promise<Buffer> {
  if (!PERL_OK) throw new Error("Mail::DKIM is not installed (apt-get install libmail-dkim-perl)");
  return withDir(async (dir) => {
    const keyFile = join(dir, "key.pem");
    await writeFile(keyFile, opts.privateKey, { mode: 0o600 });
    const args = ["-e", MAIL_DKIM_SIGN, opts.selector, opts.domain, keyFile, opts.canonicalization, opts.algorithm];
    const r = await run("perl", args, { input: message, timeoutMs: 60_000 });
    return Buffer.concat([signatureField("Mail::DKIM", r), message]);
  });
}

// ---- opendkim ---------------------------------------------------------------------------

const OPENDKIM = findExecutable("opendkim");

export const opendkim = {
  gate: peerGate(OPENDKIM === undefined ? "opendkim not installed (apt-get install opendkim)" : undefined),
};

/**
 * Signs with opendkim in test mode: `opendkim -x CONF -vv -t FILE` runs the file through the
 * filter's own milter callbacks (as client localhost, so it is "internal" and gets signed under
 * Mode s) and, from verbosity 2 on, prints each header the filter would insert:
 *   ### INSHEADER: idx=0 hname='DKIM-Signature' hvalue='v=1; a=…'
 * The value is what the milter hands to Postfix (folded with LF + TAB/SPACE, no leading space);
 * Postfix writes it as "DKIM-Signature: " + value with CRLF line ends, as done here.
 * Like Debian's /etc/opendkim.conf, the configuration oversigns From.
 */
export async function signWithOpendkim(message: Buffer, opts: PeerSignOptions): Promise<Buffer> {
  if (OPENDKIM === undefined) throw new Error("opendkim is not installed (apt-get install opendkim)");
  return withDir(async (dir) => {
    const keyFile = join(dir, "key.pem");
    const conf = join(dir, "opendkim.conf");
    const file = join(dir, "message.eml");
    await writeFile(keyFile, opts.privateKey, { mode: 0o600 });
    await writeFile(
      conf,
      [
        "Mode s",
        "Syslog no",
        `Domain ${opts.domain}`,
        `Selector ${opts.selector}`,
        `KeyFile ${keyFile}`,
        `Canonicalization ${opts.canonicalization}`,
        `SignatureAlgorithm ${opts.algorithm}`,
        "OversignHeaders From",
        // The temporary directory is world-writable; the key's own mode is 0600.
        "RequireSafeKeys false",
        "",
      ].join("\n"),
    );
    await writeFile(file, message);
    const r = await run(OPENDKIM, ["-x", conf, "-vv", "-t", file], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(describeResult("opendkim -t", r));
    const inserted = [...r.stdout.matchAll(/^### INSHEADER: idx=(\d+) hname='([^']*)' hvalue='([^']*)'$/gm)];
    const sigs = inserted.filter((m) => m[2] === "DKIM-Signature");
    if (sigs.length !== 1) throw new Error(`expected one DKIM-Signature from opendkim -t, got ${sigs.length}\n${describeResult("opendkim -t", r)}`);
    const field = `DKIM-Signature: ${sigs[0]![3]!.replace(/\r?\n/g, "\r\n")}\r\n`;
    return Buffer.concat([Buffer.from(field, "latin1"), message]);
  });
}

// ---- shared -----------------------------------------------------------------------------

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "authmilter-peer-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The "DKIM-Signature: …" field a signer printed, checked to be one CRLF-terminated field. */
function signatureField(what: string, r: Awaited<ReturnType<typeof run>>): Buffer {
  if (r.code !== 0) throw new Error(describeResult(what, r));
  const text = r.stdout;
  if (!/^DKIM-Signature: /.test(text) || !text.endsWith("\r\n") || /\r\n(?![ \t])/.test(text.slice(0, -2)) || /(?<!\r)\n/.test(text)) {
    throw new Error(`${what} did not print one CRLF-folded DKIM-Signature field:\n${describeResult(what, r)}`);
  }
  return Buffer.from(text, "latin1");
}
