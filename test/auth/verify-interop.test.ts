// Messages signed by other DKIM implementations — dkimpy (python3-dkim), Mail::DKIM
// (libmail-dkim-perl) and opendkim itself — verified through our handler exactly as the daemon
// runs it (runMessage), with the peers' public keys served by the loopback test DNS server.
// Each signature must pass untouched, fail on "body hash did not verify" when the body changed
// and on "bad signature" when a signed header changed. The message is the awkward kind: folded
// header fields, raw 8-bit UTF-8 in signed headers and the body, white space runs, a long line
// and trailing blank lines (which simple and relaxed body canonicalisation both strip).
//
// A missing peer skips its suite here and fails it under CI=true (test/support/peers.ts).

import { generateKeyPairSync } from "node:crypto";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildAuthHandler, buildResolver } from "../../src/auth/build.ts";
import { parseMessage, runMessage } from "../../src/auth/offline.ts";
import { defaultConfig, type Config } from "../../src/config/schema.ts";
import type { Resolver } from "../../src/dns/index.ts";
import { MILTER_CHUNK_SIZE } from "../../src/milter/constants.ts";
import { startDnsServer, type DnsTestServer, type Zone } from "../support/dns-server.ts";
import {
  dkimpy,
  mailDkim,
  opendkim,
  signWithDkimpy,
  signWithMailDkim,
  signWithOpendkim,
  type Canonicalization,
  type PeerGate,
  type PeerSignOptions,
} from "../support/peers.ts";

interface PeerKey {
  /** What the peer reads (see PeerSignOptions.privateKey). */
  readonly privateKey: string;
  readonly record: string;
  readonly bits?: number;
}

function rsaKey(): PeerKey {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return {
    privateKey: privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
    record: `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`,
    bits: 2048,
  };
}

function ed25519Key(form: "seed" | "pem"): PeerKey {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const seed = Buffer.from(privateKey.export({ format: "jwk" }).d!, "base64url");
  if (seed.length !== 32) throw new Error(`an Ed25519 seed has 32 octets, not ${seed.length}`);
  return {
    privateKey: form === "seed" ? seed.toString("base64") : privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    record: `v=DKIM1; k=ed25519; p=${publicKey.export({ type: "spki", format: "der" }).subarray(-32).toString("base64")}`,
  };
}

interface Variant {
  readonly peer: string;
  readonly gate: PeerGate;
  readonly sign: (message: Buffer, opts: PeerSignOptions) => Promise<Buffer>;
  readonly selector: string;
  readonly canonicalization: Canonicalization;
  readonly algorithm: PeerSignOptions["algorithm"];
  readonly key: PeerKey;
}

const keys = { py: rsaKey(), pyEd: ed25519Key("seed"), perl: rsaKey(), od: rsaKey(), odEd: ed25519Key("pem") };

const variants: Variant[] = [
  { peer: `dkimpy ${dkimpy.version ?? ""}`.trim(), gate: dkimpy.gate, sign: signWithDkimpy, selector: "py-rsa-rr", canonicalization: "relaxed/relaxed", algorithm: "rsa-sha256", key: keys.py },
  { peer: `dkimpy ${dkimpy.version ?? ""}`.trim(), gate: dkimpy.gate, sign: signWithDkimpy, selector: "py-rsa-ss", canonicalization: "simple/simple", algorithm: "rsa-sha256", key: keys.py },
  { peer: `dkimpy ${dkimpy.version ?? ""}`.trim(), gate: dkimpy.ed25519Gate, sign: signWithDkimpy, selector: "py-ed-rr", canonicalization: "relaxed/relaxed", algorithm: "ed25519-sha256", key: keys.pyEd },
  { peer: `dkimpy ${dkimpy.version ?? ""}`.trim(), gate: dkimpy.ed25519Gate, sign: signWithDkimpy, selector: "py-ed-ss", canonicalization: "simple/simple", algorithm: "ed25519-sha256", key: keys.pyEd },
  { peer: "Mail::DKIM::Signer", gate: mailDkim.gate, sign: signWithMailDkim, selector: "perl-rr", canonicalization: "relaxed/relaxed", algorithm: "rsa-sha256", key: keys.perl },
  { peer: "Mail::DKIM::Signer", gate: mailDkim.gate, sign: signWithMailDkim, selector: "perl-ss", canonicalization: "simple/simple", algorithm: "rsa-sha256", key: keys.perl },
  { peer: "opendkim -t", gate: opendkim.gate, sign: signWithOpendkim, selector: "od-rsa-rr", canonicalization: "relaxed/relaxed", algorithm: "rsa-sha256", key: keys.od },
  { peer: "opendkim -t", gate: opendkim.gate, sign: signWithOpendkim, selector: "od-rsa-ss", canonicalization: "simple/simple", algorithm: "rsa-sha256", key: keys.od },
  { peer: "opendkim -t", gate: opendkim.gate, sign: signWithOpendkim, selector: "od-ed-rr", canonicalization: "relaxed/relaxed", algorithm: "ed25519-sha256", key: keys.odEd },
];

const zone: Zone = {
  ...Object.fromEntries(variants.map((v) => [`${v.selector}._domainkey.example.org`, { TXT: v.key.record }])),
  // SPF fails for the client below, so DMARC can only pass on the peer's (aligned) signature.
  "example.org": { TXT: "v=spf1 ip4:192.0.2.0/24 -all" },
  "_dmarc.example.org": { TXT: "v=DMARC1; p=reject" },
  "mail.example.org": { A: "192.0.2.1", TXT: "v=spf1 a -all" },
};

// 990 octets: long, but within SMTP's 998 so no relay would have to break it. 80 of them make
// the body larger than one milter body chunk (65535), so the body hash spans chunk boundaries.
const longLine = (n: number) => `${n}: ${Array.from({ length: 200 }, (_, i) => `w${(i + n) % 10}rd`).join(" ")}`.slice(0, 990);
const LONG_LINES = Array.from({ length: 80 }, (_, n) => longLine(n));

/**
 * CRLF lines; raw UTF-8 (8-bit) in From, Subject and the body; folded To (continuation lines
 * starting with spaces and with a tab), Subject and References; trailing blank lines.
 */
const MESSAGE = Buffer.from(
  [
    'From: "Zoë Ålander" <alice@example.org>',
    "To: Bob Example <bob@example.net>,",
    "    Carol Example <carol@example.net>,",
    "\tDave Example <dave@example.net>",
    "Subject: Grüße aus Köln: naïve café, ½ price ☕ —",
    " a folded UTF-8 subject",
    "Date: Thu, 26 Nov 2026 06:00:00 +0000",
    "Message-ID: <interop.1@example.org>",
    "References: <first@example.org>",
    "\t<second@example.org>",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: 8bit",
    "",
    "Hello Bob,",
    "",
    "a line with trailing white space \t ",
    "  and   inner   runs of\tspaces.",
    "Grüße — non-ASCII in the body too.",
    ...LONG_LINES,
    "The second paragraph is the one to change.",
    "",
    "",
    "",
    "",
  ].join("\r\n"),
  "utf8",
);

let dns: DnsTestServer;
let resolver: Resolver;
let cfg: Config;

beforeAll(async () => {
  dns = await startDnsServer({ zone });
  const base = defaultConfig();
  cfg = {
    ...base,
    authservId: "mx.example.net",
    internalHosts: ["127.0.0.1"],
    verify: { ...base.verify, softwareHeader: false },
    dns: { ...base.dns, servers: dns.servers },
  };
  resolver = buildResolver(cfg);
});
afterAll(async () => {
  resolver?.close();
  await dns?.close();
});

/** The A-R our handler adds, unfolded, split into its results. */
async function verify(message: Buffer): Promise<{ dkim: string[]; all: string }> {
  const handler = await buildAuthHandler(cfg, resolver, pino({ level: "silent" }));
  const outcome = await runMessage(
    handler,
    { clientAddress: "203.0.113.9", helo: "mail.example.org", sender: "alice@example.org" },
    parseMessage(message),
  );
  const ar = outcome.modifications.filter((m) => m.kind === "insheader" && m.name === "Authentication-Results");
  expect(ar).toHaveLength(1);
  const all = String((ar[0] as { value: string }).value).replace(/\n\t/g, " ");
  const results = all.split(/;\s*/).slice(1);
  return { dkim: results.filter((r) => r.startsWith("dkim=")), all };
}

/** The tags of the topmost DKIM-Signature of a message, folding white space removed. */
function signatureTags(message: Buffer): Map<string, string> {
  const text = message.toString("latin1");
  const m = /^DKIM-Signature:((?:.*\r\n[ \t])*.*)\r\n/m.exec(text);
  expect(m, "the peer's message has a DKIM-Signature on top").not.toBeNull();
  const tags = new Map<string, string>();
  for (const part of m![1]!.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    tags.set(part.slice(0, eq).trim(), part.slice(eq + 1).replace(/[ \t\r\n]+/g, ""));
  }
  return tags;
}

/** Replaces one occurrence of `from` (which must be there) in the message. */
function tamper(message: Buffer, from: string, to: string): Buffer {
  const text = message.toString("utf8");
  expect(text).toContain(from);
  return Buffer.from(text.replace(from, to), "utf8");
}

it("uses a message that is as awkward as it claims", () => {
  const parsed = parseMessage(MESSAGE);
  expect(parsed.body.length).toBeGreaterThan(MILTER_CHUNK_SIZE);
  expect(parsed.body.subarray(-8).toString("latin1")).toBe("\r\n\r\n\r\n\r\n");
  expect(parsed.headers.filter((h) => h.value.includes("\n")).map((h) => h.name)).toEqual(["To", "Subject", "References"]);
  expect(parsed.headers.some((h) => h.value.some((octet) => octet >= 0x80))).toBe(true);
});

for (const v of variants) {
  describe.skipIf(v.gate.skip)(`${v.peer}: ${v.algorithm} ${v.canonicalization} (s=${v.selector})${v.gate.label}`, () => {
    let signed: Buffer;
    let tags: Map<string, string>;

    beforeAll(async () => {
      v.gate.assertReady();
      signed = await v.sign(MESSAGE, { domain: "example.org", selector: v.selector, canonicalization: v.canonicalization, algorithm: v.algorithm, privateKey: v.key.privateKey });
      tags = signatureTags(signed);
    });

    it("signed what was asked for, leaving the message itself as it was", () => {
      expect(signed.subarray(signed.length - MESSAGE.length).equals(MESSAGE)).toBe(true);
      expect(tags.get("d")).toBe("example.org");
      expect(tags.get("s")).toBe(v.selector);
      expect(tags.get("a")).toBe(v.algorithm);
      // "relaxed" alone would mean relaxed/simple (RFC 6376 §3.5); every peer writes both here.
      expect(tags.get("c")).toBe(v.canonicalization);
      const signedHeaders = (tags.get("h") ?? "").toLowerCase().split(":").map((h) => h.trim());
      expect(signedHeaders).toEqual(expect.arrayContaining(["from", "to", "subject"]));
    });

    it("passes untouched, and DMARC passes on it although SPF fails", async () => {
      const { dkim, all } = await verify(signed);
      const bits = v.key.bits ? ` \\(${v.key.bits}-bit key\\)` : "";
      const b = (tags.get("b") ?? "").replace(/\s+/g, "").slice(0, 8);
      expect(b).toHaveLength(8);
      expect(dkim).toHaveLength(1);
      expect(dkim[0]).toMatch(
        new RegExp(
          `^dkim=pass${bits} header\\.d=example\\.org header\\.i=@example\\.org header\\.a=${v.algorithm} header\\.s=${v.selector} header\\.b=${pvalueRe(b)}$`,
        ),
      );
      expect(all).toContain("spf=fail smtp.mailfrom=example.org");
      expect(all).toContain("dmarc=pass (p=REJECT dis=none) header.from=example.org");
    });

    it("fails with 'body hash did not verify' when the body was changed", async () => {
      const { dkim, all } = await verify(tamper(signed, "The second paragraph is the one to change.", "The second paragraph was changed."));
      expect(dkim).toHaveLength(1);
      expect(dkim[0]).toMatch(new RegExp(`^dkim=fail reason="body hash did not verify" .*header\\.d=example\\.org .*header\\.s=${v.selector}\\b`));
      expect(all).toContain("dmarc=fail (p=REJECT dis=none) header.from=example.org");
    });

    it("fails with 'bad signature' when a signed header was changed", async () => {
      // The 8-bit Subject: one non-ASCII character becomes ASCII.
      const { dkim, all } = await verify(tamper(signed, "Köln", "Koln"));
      const bits = v.key.bits ? ` \\(${v.key.bits}-bit key\\)` : "";
      expect(dkim).toHaveLength(1);
      expect(dkim[0]).toMatch(new RegExp(`^dkim=fail reason="bad signature"${bits} header\\.d=example\\.org .*header\\.s=${v.selector}\\b`));
      expect(all).toContain("dmarc=fail (p=REJECT dis=none) header.from=example.org");
    });
  });
}

/** header.b= is written as a token, or quoted when b= holds "/" (a tspecial). */
function pvalueRe(prefix: string): string {
  const escaped = prefix.replace(/[+/]/g, "\\$&");
  return /\//.test(prefix) ? `"${escaped}"` : escaped;
}
