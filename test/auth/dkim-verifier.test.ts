// Our DKIM verification (mailauth's DkimVerifier with our body hashing and key cache) against
// mailauth's own dkimVerify on the same bytes: every verdict, body hash and length must agree,
// whatever the body looks like and however it is cut into chunks. ARC-Message-Signatures go
// through the same body hashing, so sealed messages are compared through arc() as well.

import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { DNSResolver } from "mailauth";
import { arc, sealMessage } from "mailauth/lib/arc/index.js";
import { dkimSign } from "mailauth/lib/dkim/sign.js";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { DkimVerification } from "../../src/auth/dkim-verifier.ts";

const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const ed = generateKeyPairSync("ed25519");
const rsaPem = rsa.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const edPem = ed.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const rsaRecord = `v=DKIM1; k=rsa; p=${rsa.publicKey.export({ type: "spki", format: "der" }).toString("base64")}`;
const edRecord = `v=DKIM1; k=ed25519; p=${ed.publicKey.export({ type: "spki", format: "der" }).subarray(-32).toString("base64")}`;

// A unit test of the verifier alone: DNS answers come from memory (the loopback DNS server
// serves the same records in test/auth/verify.test.ts).
const records: Record<string, string> = {
  "rsa._domainkey.example.org": rsaRecord,
  "ed._domainkey.example.org": edRecord,
  "arc._domainkey.example.net": rsaRecord,
  "sha256only._domainkey.example.org": `v=DKIM1; h=sha256; k=rsa; p=${rsaRecord.split("p=")[1]}`,
};
const resolver: DNSResolver = async (name, type) => {
  const txt = type === "TXT" ? records[name] : undefined;
  if (txt === undefined) throw Object.assign(new Error(`no ${type} for ${name}`), { code: "ENOTFOUND" });
  return [[txt]] as never;
};

const HEAD =
  "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: a test\r\nDate: Thu, 26 Nov 2026 06:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\n";

const bodies: Record<string, string> = {
  plain: "Hello Bob.\r\nSecond line.\r\n",
  empty: "",
  "only empty lines": "\r\n\r\n\r\n",
  "trailing empty lines": "text\r\n\r\n\r\n",
  "whitespace runs and tabs": "a  b\t\tc \t d   \r\n \t \r\n\t lead\r\ntrail \t\r\n",
  "no final line end": "last line without CRLF",
  "bare LF lines": "one\ntwo\r\nthree\n\nfour\n",
  "bare CR": "a\rb\r\r\nc \r d\r",
  "8-bit bytes": "caf\xe9 \xff\xfe\r\n\x00nul\r\n",
  "a 200 KB line": `${"x".repeat(100_000)} ${"y".repeat(100_000)}  \r\n`,
  "many short lines": "a \r\n".repeat(5000),
};

type Spec = { canonicalization: string; selector: string; key: string; maxBodyLength?: number; algorithm?: string };
const specs: Record<string, Spec[]> = {
  "relaxed/relaxed": [{ canonicalization: "relaxed/relaxed", selector: "rsa", key: rsaPem }],
  "simple/simple": [{ canonicalization: "simple/simple", selector: "rsa", key: rsaPem }],
  "relaxed/simple": [{ canonicalization: "relaxed/simple", selector: "rsa", key: rsaPem }],
  "simple/relaxed, ed25519": [{ canonicalization: "simple/relaxed", selector: "ed", key: edPem }],
  "l=5 relaxed and l=0 simple": [
    { canonicalization: "relaxed/relaxed", selector: "rsa", key: rsaPem, maxBodyLength: 5 },
    { canonicalization: "simple/simple", selector: "ed", key: edPem, maxBodyLength: 0 },
  ],
};

async function signed(head: string, body: string, with_: Spec[]): Promise<Buffer> {
  const message = `${head}\r\n${body}`;
  const result = await dkimSign(Buffer.from(message, "latin1"), {
    signatureData: with_.map((s) => ({ signingDomain: "example.org", selector: s.selector, privateKey: s.key, canonicalization: s.canonicalization, ...(s.maxBodyLength === undefined ? {} : { maxBodyLength: s.maxBodyLength }), ...(s.algorithm ? { algorithm: s.algorithm } : {}) })),
    allowSha1: true,
  } as never);
  expect(result.signatures).toContain("DKIM-Signature:");
  return Buffer.from(result.signatures + message, "latin1");
}

/** Feeds our verifier as the milter would: one field at a time, then the body in `cut`-sized pieces. */
async function ours(message: Buffer, cut: (i: number) => number) {
  const end = message.indexOf("\r\n\r\n");
  const head = end === -1 ? message : message.subarray(0, end + 2);
  const body = end === -1 ? Buffer.alloc(0) : message.subarray(end + 4);
  const v = new DkimVerification(resolver);
  let start = 0;
  for (let i = 0; i + 1 < head.length; i++) {
    const fieldEnds = head[i] === 0x0d && head[i + 1] === 0x0a && (i + 2 >= head.length || (head[i + 2] !== 0x20 && head[i + 2] !== 0x09));
    if (fieldEnds) {
      v.header(head.subarray(start, i + 2));
      start = i + 2;
    }
  }
  await v.endOfHeaders();
  for (let off = 0, n = 0; off < body.length; n++) {
    const size = cut(n);
    v.body(body.subarray(off, off + size));
    off += size;
  }
  return v.finish();
}

/** What a verdict consists of; mimeStructureStart is left out (we do not compute it). */
function verdicts(results: unknown[]) {
  return (results as Array<Record<string, unknown> & { status: Record<string, unknown> }>).map((r) => ({
    signingDomain: r.signingDomain,
    selector: r.selector,
    status: { result: r.status.result, comment: r.status.comment, aligned: r.status.aligned, underSized: r.status.underSized },
    bodyHash: r.bodyHash,
    bodyHashExpecting: r.bodyHashExpecting,
    sourceBodyLength: r.sourceBodyLength,
    canonBodyLength: r.canonBodyLength,
    canonBodyLengthTotal: r.canonBodyLengthTotal,
    modulusLength: r.modulusLength,
  }));
}

const cuts: Record<string, (i: number) => number> = {
  "one piece": () => Number.MAX_SAFE_INTEGER,
  "64 KB pieces": () => 65_535,
  "1–7 byte pieces": (i) => 1 + ((i * 5) % 7),
};

describe("DKIM verification agrees with mailauth's dkimVerify", () => {
  for (const [bodyName, body] of Object.entries(bodies)) {
    for (const [specName, spec] of Object.entries(specs)) {
      it(`${bodyName}, ${specName}`, async () => {
        const message = await signed(HEAD, body, spec);
        const reference = verdicts((await dkimVerify(message, { resolver, strict: true })).results ?? []);
        expect(reference.length).toBe(spec.length);
        for (const [cutName, cut] of Object.entries(cuts)) {
          expect(verdicts((await ours(message, cut)).results), cutName).toEqual(reference);
        }
        // The untouched message passes: the comparison is not between two failures.
        expect(reference.every((r) => r.status.result === "pass")).toBe(true);
      });
    }
  }

  it.each([
    ["a changed body", (m: string) => m.replace("Second line.", "Second line!")],
    ["a changed signed header", (m: string) => m.replace("Subject: a test", "Subject: a tset")],
    ["text appended after l=", (m: string) => `${m}appended\r\n`],
  ])("%s", async (_, tamper) => {
    const message = Buffer.from(tamper((await signed(HEAD, bodies.plain!, [...specs["relaxed/relaxed"]!, ...specs["l=5 relaxed and l=0 simple"]!])).toString("latin1")), "latin1");
    const reference = verdicts((await dkimVerify(message, { resolver, strict: true })).results ?? []);
    expect(verdicts((await ours(message, cuts["1–7 byte pieces"]!)).results)).toEqual(reference);
  });

  it("refuses rsa-sha1 with the verdict mailauth gives (policy), which needs a SHA-1 body hash", async () => {
    const message = await signed(HEAD, bodies.plain!, [{ canonicalization: "relaxed/relaxed", selector: "rsa", key: rsaPem, algorithm: "rsa-sha1" }]);
    expect(message.toString("latin1")).toContain("a=rsa-sha1");
    const reference = verdicts((await dkimVerify(message, { resolver, strict: true })).results ?? []);
    expect(reference[0]!.status.result).toBe("policy");
    expect(verdicts((await ours(message, cuts["64 KB pieces"]!)).results)).toEqual(reference);
  });

  it("keeps key-record rules when the parsed key is reused (h=sha256 only, then a missing key)", async () => {
    for (const selector of ["sha256only", "sha256only", "missing", "rsa", "rsa"]) {
      const message = await signed(HEAD, bodies.plain!, [{ canonicalization: "relaxed/relaxed", selector: "rsa", key: rsaPem }]);
      const renamed = Buffer.from(message.toString("latin1").replace("s=rsa;", `s=${selector};`), "latin1");
      const reference = verdicts((await dkimVerify(renamed, { resolver, strict: true })).results ?? []);
      expect(verdicts((await ours(renamed, cuts["one piece"]!)).results), selector).toEqual(reference);
    }
  });

  it("reports the From addresses and count DMARC needs", async () => {
    const message = Buffer.from(`From: a@example.org\r\nFrom: b@example.com\r\nSubject: x\r\n\r\nbody\r\n`, "latin1");
    const reference = await dkimVerify(message, { resolver, strict: true });
    const result = await ours(message, cuts["one piece"]!);
    expect([result.headerFrom, result.fromFields]).toEqual([reference.headerFrom, reference.fromFields]);
    expect(result.fromFields).toBe(2);
  });
});

describe("ARC through the same body hashing", () => {
  async function sealed(body: string): Promise<Buffer> {
    const message = await signed(HEAD, body, specs["relaxed/relaxed"]!);
    const seal = await sealMessage(message, { signingDomain: "example.net", selector: "arc", privateKey: rsaPem, cv: "none", authResults: "mx.example.net; dkim=pass header.d=example.org" });
    expect(seal.toString()).toContain("ARC-Seal:");
    return Buffer.concat([seal, message]);
  }

  async function arcVerdict(dkim: { arc?: unknown }): Promise<string | undefined> {
    const result = await arc(dkim.arc as Parameters<typeof arc>[0], { resolver, strict: true });
    return result?.status?.result;
  }

  it.each([
    ["an intact sealed message", (m: string) => m, "pass"],
    ["a sealed message whose body changed after sealing", (m: string) => m.replace("Second line.", "Second line!"), "fail"],
  ])("%s", async (_, tamper, expected) => {
    for (const body of [bodies.plain!, bodies["whitespace runs and tabs"]!]) {
      const message = Buffer.from(tamper((await sealed(`${body}Second line.\r\n`)).toString("latin1")), "latin1");
      const reference = await arcVerdict(await dkimVerify(message, { resolver, strict: true }));
      expect(reference).toBe(expected);
      expect(await arcVerdict(await ours(message, cuts["1–7 byte pieces"]!))).toBe(reference);
    }
  });
});
