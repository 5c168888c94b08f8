// What the benchmark sends: keys, the DNS zone that publishes them with SPF and DMARC records,
// and messages of a given size, DKIM-signed (verify path) or not (sign path).
//
// The fixture signature is made here with node:crypto (relaxed/relaxed, rsa-sha256) rather
// than with our own signer, so the verify path does not depend on the code under test; every
// run checks that authmilter and opendkim both report dkim=pass for it.

import { createHash, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Zone } from "../../test/support/dns-server.ts";

/** Mail from outside (verified): signed by this domain, sent from TEST-NET-1. */
export const REMOTE_DOMAIN = "example.org";
/** Our own domain (signed by the milters). */
export const LOCAL_DOMAIN = "example.com";
export const SELECTOR = "bench";
export const AUTHSERV_ID = "mx.example.net";
export const EXTERNAL_CLIENT = { hostname: "mail.example.org", address: "192.0.2.1" } as const;
export const INTERNAL_CLIENT = { hostname: "localhost", address: "127.0.0.1" } as const;

export interface BenchKeys {
  /** Signs the verify-path fixtures; its public half is at bench._domainkey.example.org. */
  readonly remote: KeyObject;
  /** The milters' signing key for example.com: PKCS#8 (authmilter) and PKCS#1 (opendkim). */
  readonly localPkcs8File: string;
  readonly localPkcs1File: string;
  readonly zone: Zone;
}

function publicRecord(key: KeyObject): string {
  const der = key.export({ type: "spki", format: "der" });
  return `v=DKIM1; k=rsa; p=${der.toString("base64")}`;
}

export function makeKeys(dir: string): BenchKeys {
  const remote = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const local = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const localPkcs8File = join(dir, "example.com.pkcs8.pem");
  const localPkcs1File = join(dir, "example.com.pkcs1.pem");
  writeFileSync(localPkcs8File, local.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  writeFileSync(localPkcs1File, local.privateKey.export({ type: "pkcs1", format: "pem" }), { mode: 0o600 });
  const zone: Zone = {
    [`${SELECTOR}._domainkey.${REMOTE_DOMAIN}`]: { TXT: publicRecord(remote.publicKey) },
    // 127.0.0.0/8 too: through Postfix the "external" client is smtp-source on loopback.
    [REMOTE_DOMAIN]: { TXT: "v=spf1 ip4:192.0.2.0/24 ip4:127.0.0.0/8 -all", A: "192.0.2.10", MX: [10, `mx.${REMOTE_DOMAIN}`] },
    [`_dmarc.${REMOTE_DOMAIN}`]: { TXT: "v=DMARC1; p=reject" },
    [`mail.${REMOTE_DOMAIN}`]: { TXT: "v=spf1 a -all", A: "192.0.2.1" },
    [`${SELECTOR}._domainkey.${LOCAL_DOMAIN}`]: { TXT: publicRecord(local.publicKey) },
    [LOCAL_DOMAIN]: { TXT: "v=spf1 ip4:127.0.0.0/8 -all" },
    [`_dmarc.${LOCAL_DOMAIN}`]: { TXT: "v=DMARC1; p=none" },
  };
  return { remote: remote.privateKey, localPkcs8File, localPkcs1File, zone };
}

/** One message as the MTA holds it: header values as written after the colon, CRLF folding. */
export interface BenchMessage {
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** CRLF lines, as Postfix hands the body to a milter. */
  readonly body: Buffer;
  readonly sender: string;
  readonly recipients: readonly string[];
  readonly client: { readonly hostname: string; readonly address: string };
  readonly helo: string;
  /** Total size: header block + blank line + body. */
  readonly size: number;
}

export const SIZES: Readonly<Record<string, number>> = {
  "2k": 2 * 1024,
  "20k": 20 * 1024,
  "1m": 1024 * 1024,
  "20m": 20 * 1024 * 1024,
};

/** A deterministic body of text lines (76 characters + CRLF), `bytes` long, ending in CRLF. */
export function makeBody(bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  const words = ["lorem", "ipsum", "dolor", "sit", "amet", "mail", "relay", "queue", "signature", "domain", "key", "body", "hash", "milter"];
  let seed = 12345;
  let pos = 0;
  while (pos < bytes) {
    const left = bytes - pos;
    if (left <= 2) {
      // Too short for a line: end with an "x" line or the final CRLF.
      out.write(left === 2 ? "\r\n" : "x", pos, "latin1");
      pos += left;
      continue;
    }
    let line = "";
    const lineLen = Math.min(76, left - 2);
    while (line.length < lineLen) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      const w = words[seed % words.length]!;
      line += line.length === 0 ? w : ` ${w}`;
    }
    line = line.slice(0, lineLen).trimEnd();
    if (line.length < lineLen) line = line.padEnd(lineLen, "z");
    out.write(`${line}\r\n`, pos, "latin1");
    pos += line.length + 2;
  }
  return out;
}

function headerBytes(headers: ReadonlyArray<readonly [string, string]>): number {
  return headers.reduce((n, [name, value]) => n + name.length + 1 + Buffer.byteLength(value, "latin1") + 2, 0) + 2;
}

// ---- a small DKIM signer for the fixtures (RFC 6376 relaxed/relaxed) -------------------------

function relaxedHeader(name: string, value: string): string {
  const v = value.replace(/\r\n/g, "").replace(/[ \t]+/g, " ").replace(/ +$/, "").replace(/^ +/, "");
  return `${name.toLowerCase().trim()}:${v}`;
}

function relaxedBody(body: Buffer): Buffer {
  const lines = body.toString("latin1").split("\r\n");
  if (lines.at(-1) === "") lines.pop();
  const canon = lines.map((l) => l.replace(/[ \t]+/g, " ").replace(/ +$/, ""));
  while (canon.length > 0 && canon.at(-1) === "") canon.pop();
  return Buffer.from(canon.length === 0 ? "" : `${canon.join("\r\n")}\r\n`, "latin1");
}

const SIGNED = ["from", "to", "subject", "date", "message-id", "mime-version", "content-type"];

function dkimSign(headers: ReadonlyArray<readonly [string, string]>, body: Buffer, key: KeyObject, domain: string): [string, string] {
  const bh = createHash("sha256").update(relaxedBody(body)).digest("base64");
  const present = SIGNED.filter((n) => headers.some(([h]) => h.toLowerCase() === n));
  const tags = `v=1; a=rsa-sha256; c=relaxed/relaxed; d=${domain}; s=${SELECTOR};\r\n\tt=1764000000; h=${present.join(":")};\r\n\tbh=${bh};\r\n\tb=`;
  const data = present.map((n) => {
    // Bottom-up instance selection (§5.4.2); each name occurs once here.
    const field = [...headers].reverse().find(([h]) => h.toLowerCase() === n)!;
    return `${relaxedHeader(field[0], field[1])}\r\n`;
  });
  data.push(relaxedHeader("DKIM-Signature", ` ${tags}`));
  const b = sign("sha256", Buffer.from(data.join(""), "latin1"), key).toString("base64");
  const folded = b.replace(/(.{72})/g, "$1\r\n\t").replace(/\r\n\t$/, "");
  return ["DKIM-Signature", ` ${tags}${folded}`];
}

export type BenchPath = "verify" | "sign";

/** A message of `size` bytes: verify path (external client, signed by example.org) or sign path (internal client, example.com). */
export function makeMessage(path: BenchPath, size: number, keys: BenchKeys): BenchMessage {
  const domain = path === "verify" ? REMOTE_DOMAIN : LOCAL_DOMAIN;
  const base: Array<[string, string]> = [
    ["From", ` Alice Example <alice@${domain}>`],
    ["To", " Bob Example <bob@example.net>"],
    ["Subject", ` authmilter benchmark, ${path} path, ${size} bytes`],
    ["Date", " Wed, 26 Nov 2025 07:00:00 +0000"],
    ["Message-ID", ` <bench-${path}-${size}@${domain}>`],
    ["MIME-Version", " 1.0"],
    ["Content-Type", " text/plain; charset=us-ascii"],
  ];
  // The signature's size depends only on the key, so measure the header block with a dummy first.
  const sigLen = path === "verify" ? headerBytes([dkimSign(base, Buffer.from("x\r\n"), keys.remote, domain)]) - 2 : 0;
  const bodyBytes = Math.max(4, size - headerBytes(base) - sigLen);
  const body = makeBody(bodyBytes);
  const headers = path === "verify" ? [dkimSign(base, body, keys.remote, domain), ...base] : base;
  const client = path === "verify" ? EXTERNAL_CLIENT : INTERNAL_CLIENT;
  return {
    headers,
    body,
    sender: `alice@${domain}`,
    recipients: ["bob@example.net"],
    client,
    helo: path === "verify" ? EXTERNAL_CLIENT.hostname : "localhost",
    size: headerBytes(headers) + body.length,
  };
}

/** The message as a file for `smtp-source -F` (LF line ends: smtp-source appends CRLF to each line). */
export function messageFile(message: BenchMessage): Buffer {
  const head = message.headers.map(([name, value]) => `${name}:${value}\r\n`).join("");
  return Buffer.from(`${head}\r\n${message.body.toString("latin1")}`.replace(/\r\n/g, "\n"), "latin1");
}
