// MessageSigner's contract with the milter layer: what it accepts, what it refuses, and the exact
// shape of the DKIM-Signature value it hands back. Whether the signatures verify is
// sign-interop.test.ts's job; here each signature is also checked with node:crypto directly.

import { createHash, createPublicKey, verify as cryptoVerify } from "node:crypto";
import { dkimSign, type DKIMSignOptions, type DKIMSignResult } from "mailauth";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_OVERSIGNED_HEADERS,
  DEFAULT_SIGNED_HEADERS,
  MessageSigner,
  SignError,
  type SignatureSpec,
  type SignOptions,
  type SignedHeader,
} from "../../src/auth/sign.ts";
import type { SigningKey } from "../../src/keys/load.ts";
import { assemble, feed, makeKey, type Mail } from "../fixtures/sign/interop.ts";

const rsa = makeKey("rsa", 2048);
const ed = makeKey("ed25519");
const NOW = new Date("2026-03-01T12:00:00Z");
const T = Math.floor(NOW.getTime() / 1000);

const MAIL: Mail = {
  headers: [
    ["From", " Alice <alice@example.com>"],
    ["To", " bob@example.net"],
    ["Subject", " hello"],
    ["Date", " Sun, 01 Mar 2026 12:00:00 +0000"],
    ["X-Other", " unsigned"],
  ],
  body: "hi\r\n",
};

async function signMail(specs: readonly SignatureSpec[], options: SignOptions = {}, mail: Mail = MAIL, chunks?: readonly number[]): Promise<SignedHeader[]> {
  const s = new MessageSigner(specs, { now: () => NOW, ...options });
  feed(s, mail, chunks);
  return s.finish();
}

/** Tag → value of a returned signature, folding whitespace removed. */
function tags(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of value.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0) out[part.slice(0, eq).trim()] = part.slice(eq + 1).replace(/\s+/g, "");
  }
  return out;
}

const hList = (value: string) => tags(value)["h"]!.split(":").map((n) => n.toLowerCase());

describe("the returned DKIM-Signature value", () => {
  for (const [label, key, bytes] of [["RSA-2048", rsa, 256], ["Ed25519", ed, 64]] as const) {
    it(`${label}: INSHEADER-ready: no leading space, LF+TAB folds, ≤ 78 columns, printable ASCII only`, async () => {
      const [sig] = await signMail([{ domain: "example.com", selector: "sel", key, identity: "alice@example.com" }], { expireSeconds: 86400 });
      const v = sig!.value;
      expect(sig).toMatchObject({ name: "DKIM-Signature", domain: "example.com", selector: "sel", algorithm: key.algorithm });
      expect(v).toMatch(/^v=1; /);
      expect(v).not.toMatch(/[\r\0]/);
      expect(v).toMatch(/^[\x20-\x7e\n\t]+$/);
      const lines = v.split("\n");
      expect(lines.length).toBeGreaterThan(2);
      lines.forEach((line, i) => {
        if (i > 0) expect(line, `line ${i} starts with a TAB`).toMatch(/^\t\S/);
        const columns = (i === 0 ? "DKIM-Signature: ".length : 8) + line.replace(/^\t/, "").length;
        expect(columns, `line ${i}: ${line}`).toBeLessThanOrEqual(78);
      });
      const t = tags(v);
      expect(t).toMatchObject({ v: "1", a: key.algorithm, c: "relaxed/relaxed", d: "example.com", s: "sel", i: "alice@example.com", t: String(T), x: String(T + 86400) });
      expect(Buffer.from(t["bh"]!, "base64")).toHaveLength(32);
      expect(Buffer.from(t["b"]!, "base64")).toHaveLength(bytes);
    });
  }

  it("the signature is over exactly the canonical header data a verifier rebuilds (checked with node:crypto)", async () => {
    const [r, e] = await signMail([
      { domain: "example.com", selector: "r", key: rsa },
      { domain: "example.com", selector: "e", key: ed },
    ]);
    for (const [sig, key] of [[r!, rsa], [e!, ed]] as const) {
      const t = tags(sig.value);
      // relaxed/relaxed by hand: h= is from:from:...; the message has one of each signed field.
      const fields: string[] = [];
      const seen = new Map<string, number>();
      for (const name of t["h"]!.split(":")) {
        const lower = name.toLowerCase();
        const instances = MAIL.headers.filter(([n]) => n.toLowerCase() === lower);
        const used = seen.get(lower) ?? 0;
        seen.set(lower, used + 1);
        const h = instances[instances.length - 1 - used];
        if (h !== undefined) fields.push(`${lower}:${String(h[1]).trim()}\r\n`);
      }
      const own = `dkim-signature:${sig.value.replace(/\n\t/g, " ").replace(/\s+/g, " ").replace(/b=[A-Za-z0-9+/= ]+$/, "b=")}`;
      const data = Buffer.from(fields.join("") + own);
      const pub = createPublicKey(key.privateKey);
      const signature = Buffer.from(t["b"]!, "base64");
      const ok =
        key.type === "rsa"
          ? cryptoVerify("sha256", data, pub, signature)
          : cryptoVerify(null, createHash("sha256").update(data).digest(), pub, signature);
      expect(ok, sig.selector).toBe(true);
      expect(t["bh"]).toBe(createHash("sha256").update("hi\r\n").digest("base64"));
    }
  });

  it("Ed25519 signatures are deterministic, so chunking must not change a single byte", async () => {
    const spec = [{ domain: "example.com", selector: "e", key: ed }];
    const whole = await signMail(spec);
    const mail = { ...MAIL, body: "line one  \r\n\tline two\r\n\r\n" };
    const reference = (await signMail(spec, {}, mail))[0]!.value;
    for (const chunks of [[1], [2], [3, 1], [5, 7]]) expect((await signMail(spec, {}, mail, chunks))[0]!.value).toBe(reference);
    expect(reference).not.toBe(whole[0]!.value);
  });

  it("turns a U-label domain into its A-label and encodes a non-ASCII identity as dkim-quoted-printable", async () => {
    const [sig] = await signMail([{ domain: "Bücher.Example", selector: "S1", key: ed, identity: "jürgen;x@mail.bücher.example" }]);
    expect(tags(sig!.value)).toMatchObject({ d: "xn--bcher-kva.example", s: "s1", i: "j=C3=BCrgen=3Bx@mail.xn--bcher-kva.example" });
    expect(sig!.domain).toBe("xn--bcher-kva.example");
  });

  it("returns the signatures in the order of the specs", async () => {
    const sigs = await signMail([
      { domain: "example.com", selector: "e", key: ed },
      { domain: "example.org", selector: "r", key: rsa },
    ]);
    expect(sigs.map((s) => `${s.selector}.${s.domain} ${s.algorithm}`)).toEqual(["e.example.com ed25519-sha256", "r.example.org rsa-sha256"]);
  });
});

describe("which header fields are signed (h=)", () => {
  const spec = [{ domain: "example.com", selector: "e", key: ed }];

  it("defaults: each present field of the list once per instance, the over-signed ones once more, absent over-signed ones once", async () => {
    const mail: Mail = { ...MAIL, headers: [...MAIL.headers, ["To", " carol@example.net"], ["Received", " by x"], ["List-Id", " <l.example.com>"]] };
    const h = hList((await signMail(spec, {}, mail))[0]!.value);
    expect(h).toEqual(["from", "from", "reply-to", "subject", "subject", "date", "date", "to", "to", "to", "cc", "list-id", "message-id"]);
    expect(DEFAULT_OVERSIGNED_HEADERS.every((n) => DEFAULT_SIGNED_HEADERS.includes(n))).toBe(true);
  });

  it("a custom list; From is always signed; oversign: [] turns over-signing off", async () => {
    const h = hList((await signMail(spec, { headers: ["Subject", "X-Other"], oversign: [] }))[0]!.value);
    expect(h).toEqual(["from", "subject", "x-other"]);
  });

  it("an over-signed name outside the list is still signed and over-signed", async () => {
    const h = hList((await signMail(spec, { headers: ["From"], oversign: ["X-Other", "Sender"] }))[0]!.value);
    expect(h).toEqual(["from", "x-other", "x-other", "sender"]);
  });

  it("matches header names case-insensitively, and keeps only one entry per name", async () => {
    const mail: Mail = { ...MAIL, headers: [["FROM", " a@example.com"], ["subject", " s"]] };
    const h = hList((await signMail(spec, { headers: ["SUBJECT", "Subject", "from"], oversign: [] }, mail))[0]!.value);
    expect(h).toEqual(["from", "subject"]);
  });
});

describe("refusals", () => {
  const spec = (over: Partial<SignatureSpec> = {}): SignatureSpec => ({ domain: "example.com", selector: "s", key: ed, ...over });
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      expect(err).toBeInstanceOf(SignError);
      return (err as SignError).code;
    }
    return "no error";
  };

  it("bad specs, at construction", () => {
    const small = makeKey("rsa", 512);
    expect(code(() => new MessageSigner([]))).toBe("invalid-spec");
    expect(code(() => new MessageSigner([spec({ key: small })]))).toBe("invalid-spec");
    expect(code(() => new MessageSigner([spec({ domain: "exa mple.com" })]))).toBe("invalid-spec");
    expect(code(() => new MessageSigner([spec({ selector: "a;b" })]))).toBe("invalid-spec");
    expect(code(() => new MessageSigner([spec({ identity: "alice@example.org" })]))).toBe("invalid-spec");
    expect(code(() => new MessageSigner([spec({ identity: "no-at-sign" })]))).toBe("invalid-spec");
    const mismatched: SigningKey = { ...rsa, algorithm: "ed25519-sha256" };
    expect(code(() => new MessageSigner([spec({ key: mismatched })]))).toBe("invalid-spec");
    expect(() => new MessageSigner([spec({ key: small })])).toThrow(/512 bits; DKIM signing needs 1024–4096/);
  });

  it("bad options, at construction", () => {
    const s = [spec()];
    expect(code(() => new MessageSigner(s, { canonicalization: "relaxed" as never }))).toBe("invalid-option");
    expect(code(() => new MessageSigner(s, { expireSeconds: 0 }))).toBe("invalid-option");
    expect(code(() => new MessageSigner(s, { expireSeconds: 1.5 }))).toBe("invalid-option");
    expect(code(() => new MessageSigner(s, { headers: ["Sub ject"] }))).toBe("invalid-option");
    expect(code(() => new MessageSigner(s, { headers: ["DKIM-Signature"] }))).toBe("invalid-option");
    expect(code(() => new MessageSigner(s, { oversign: ["Bad:Name"] }))).toBe("invalid-option");
  });

  it("a message without From cannot be signed (RFC 6376 §5.4)", async () => {
    const s = new MessageSigner([spec()]);
    s.header("Subject", Buffer.from(" no author"));
    await expect(s.finish()).rejects.toMatchObject({ name: "SignError", code: "no-from" });
  });

  it("events out of order are programming errors", async () => {
    const s = new MessageSigner([spec()]);
    s.header("From", Buffer.from(" a@example.com"));
    s.body(Buffer.from("x\r\n"));
    expect(code(() => s.header("Subject", Buffer.from(" late")))).toBe("state");
    await s.finish();
    expect(code(() => s.body(Buffer.from("more")))).toBe("state");
    await expect(s.finish()).rejects.toMatchObject({ code: "state" });
  });
});

describe("the message the milter will deliver", () => {
  it("assembles with the signature on top and the value inserted after one space", async () => {
    const [sig] = await signMail([{ domain: "example.com", selector: "e", key: ed }]);
    const text = assemble([sig!], MAIL).toString("latin1");
    expect(text.startsWith(`DKIM-Signature: ${sig!.value.replace(/\n/g, "\r\n")}\r\nFrom: Alice`)).toBe(true);
  });
});

describe("why the signer is not mailauth's dkimSign", () => {
  it("mailauth 7.1.0 lists a repeated name in its header list only once in h= (no over-signing)", async () => {
    // The signatureData form is the one that signs (reference/mailauth-notes.md "Typing bug").
    const sign = dkimSign as unknown as (input: Buffer, options: Pick<DKIMSignOptions, "headerList"> & { signatureData: object[] }) => Promise<DKIMSignResult>;
    const message = assemble([], MAIL);
    const result = await sign(message, {
      headerList: ["From", "From", "Subject", "Subject"],
      signatureData: [{ signingDomain: "example.com", selector: "s", privateKey: ed.privateKeyPem, algorithm: "ed25519-sha256" }],
    });
    const h = /\bh=([^;]*);/.exec(result.signatures.replace(/\r\n\s+/g, " "))?.[1]?.split(":").map((n) => n.trim().toLowerCase());
    expect(h).toEqual(["subject", "from"]);
    // Ours, for the same request: each name once more than present.
    const [ours] = await signMail([{ domain: "example.com", selector: "s", key: ed }], { headers: ["From", "Subject"], oversign: ["From", "Subject"] });
    expect(hList(ours!.value)).toEqual(["from", "from", "subject", "subject"]);
  });
});
