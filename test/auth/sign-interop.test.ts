// The proof that our signatures are right: every message signed here is checked by four
// independent verifiers (mailauth, dkimpy, Mail::DKIM, opendkim), which look the keys up in a
// loopback DNS server. Broken copies of the same messages must fail in all four.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MessageSigner, type SignatureSpec, type SignOptions, type SignedHeader } from "../../src/auth/sign.ts";
import type { SigningKey } from "../../src/keys/load.ts";
import {
  assemble,
  feed,
  Interop,
  interopGate,
  MAIL_DKIM_ED25519,
  makeKey,
  summary,
  VERIFIERS,
  type Mail,
  type Verdicts,
} from "../fixtures/sign/interop.ts";

const DOMAIN = "example.com";

const BASIC: Mail = {
  headers: [
    ["Received", " from client.example.org (client.example.org [192.0.2.7])\n\tby mx.example.com (Postfix) with ESMTPS id 4XyZ1"],
    ["From", " Alice Example <alice@example.com>"],
    ["To", " Bob <bob@example.net>,\n\tCarol <carol@example.net>"],
    ["Subject", " A test message with a folded\n subject line"],
    ["Date", " Tue, 26 Nov 2024 06:00:00 +0000"],
    ["Message-ID", " <interop-1@example.com>"],
    ["MIME-Version", " 1.0"],
    ["Content-Type", " text/plain; charset=utf-8;\n\tformat=flowed"],
    ["X-Mailer", " not in the signed list"],
  ],
  body: "Hello Bob,\r\n\r\n  indented  line\twith\t tabs  \r\ntrailing space \r\n \t \r\n\r\n\r\n",
};

const CANONS = ["relaxed/relaxed", "relaxed/simple", "simple/simple", "simple/relaxed"] as const;

let interop: Interop;
const keys: Record<"r1024" | "r2048" | "r4096" | "ed", SigningKey> = {} as never;

async function sign(mail: Mail, specs: readonly SignatureSpec[], options: SignOptions = {}, chunks?: readonly number[]): Promise<SignedHeader[]> {
  const signer = new MessageSigner(specs, options);
  feed(signer, mail, chunks);
  return signer.finish();
}

const spec = (selector: keyof typeof keys): SignatureSpec => ({ domain: DOMAIN, selector, key: keys[selector] });
const DUAL = () => [spec("r2048"), spec("ed")];

/** What each verifier must say about a good signature; Debian 12's Mail::DKIM has no Ed25519. */
function expectPass(v: Verdicts, selectors: readonly string[]): void {
  for (const verifier of VERIFIERS) {
    const got = v[verifier];
    expect(got.map((x) => x.selector).sort(), `${verifier} saw these signatures`).toEqual([...selectors].sort());
    for (const x of got) {
      expect(x.domain, `${verifier} ${x.selector}`).toBe(DOMAIN);
      if (verifier === "mailDkim" && keys[x.selector as keyof typeof keys]?.type === "ed25519" && !MAIL_DKIM_ED25519) {
        expect(`${x.result} ${x.detail}`, "Mail::DKIM without Ed25519 must say so, not fail").toMatch(/^invalid .*unsupported algorithm ed25519-sha256/);
      } else {
        expect(`${x.result} ${x.detail}`, `${verifier} on ${x.selector}`).toMatch(/^pass\b/);
      }
    }
  }
}

/** No verifier may accept any signature of the message. */
function expectNoPass(v: Verdicts, selectors: readonly string[]): void {
  for (const verifier of VERIFIERS) {
    const got = v[verifier];
    expect(got.map((x) => x.selector).sort(), `${verifier} saw these signatures`).toEqual([...selectors].sort());
    for (const x of got) expect(x.result, `${verifier} on ${x.selector}: ${x.detail}`).not.toBe("pass");
  }
}

describe.skipIf(interopGate.skip)(`DKIM signatures verified by mailauth, dkimpy, Mail::DKIM and opendkim${interopGate.label}`, () => {
  beforeAll(async () => {
    interopGate.assertReady();
    interop = await Interop.start();
    keys.r1024 = makeKey("rsa", 1024);
    keys.r2048 = makeKey("rsa", 2048);
    keys.r4096 = makeKey("rsa", 4096);
    keys.ed = makeKey("ed25519");
    for (const [selector, key] of Object.entries(keys)) interop.publish(DOMAIN, selector, key);
  });
  afterAll(async () => {
    await interop?.close();
  });

  for (const selector of ["r1024", "r2048", "r4096", "ed"] as const) {
    it(`${selector}: relaxed/relaxed passes everywhere`, async () => {
      const sigs = await sign(BASIC, [spec(selector)]);
      expect(sigs[0]?.algorithm).toBe(selector === "ed" ? "ed25519-sha256" : "rsa-sha256");
      expectPass(await interop.verify(assemble(sigs, BASIC)), [selector]);
    });
  }

  for (const canonicalization of CANONS) {
    it(`dual RSA + Ed25519, ${canonicalization}, folded headers and blank-filled body`, async () => {
      const sigs = await sign(BASIC, DUAL(), { canonicalization });
      expect(sigs.map((s) => s.selector)).toEqual(["r2048", "ed"]);
      expect(sigs.every((s) => s.value.includes(`c=${canonicalization};`))).toBe(true);
      expectPass(await interop.verify(assemble(sigs, BASIC)), ["r2048", "ed"]);
    });
  }

  for (const canonicalization of CANONS) {
    it(`empty body, ${canonicalization}`, async () => {
      const mail = { ...BASIC, body: "" };
      expectPass(await interop.verify(assemble(await sign(mail, DUAL(), { canonicalization }), mail)), ["r2048", "ed"]);
    });
  }

  it("a body of nothing but blank lines, and one ending in many blank lines", async () => {
    for (const body of ["\r\n\r\n\r\n", "text\r\n" + "\r\n".repeat(500), " \r\n\t\r\n"]) {
      for (const canonicalization of ["relaxed/relaxed", "simple/simple"] as const) {
        const mail = { ...BASIC, body };
        expectPass(await interop.verify(assemble(await sign(mail, [spec("r2048")], { canonicalization }), mail)), ["r2048"]);
      }
    }
  });

  it("8-bit UTF-8 header fields (SMTPUTF8), both header canonicalisations", async () => {
    const mail: Mail = {
      headers: [
        ["From", " Jürgen Größe <jürgen@example.com>"],
        ["To", " 山田 <yamada@example.net>"],
        ["Subject", " Grüße aus Köln \u{1F600}\n\tzweite Zeile"],
        ["Date", " Tue, 26 Nov 2024 06:00:00 +0000"],
        ["Message-ID", " <utf8@example.com>"],
      ],
      body: "Ärger mit Umlauten: äöü\r\n",
    };
    for (const canonicalization of CANONS) {
      expectPass(await interop.verify(assemble(await sign(mail, DUAL(), { canonicalization }), mail)), ["r2048", "ed"]);
    }
  });

  it("a 1 MB line full of whitespace runs, relaxed and simple", async () => {
    const line = "word \t  ".repeat(131072); // 1 MiB
    const mail = { ...BASIC, body: `before\r\n${line}\r\nafter\r\n` };
    for (const canonicalization of ["relaxed/relaxed", "simple/simple"] as const) {
      expectPass(await interop.verify(assemble(await sign(mail, DUAL(), { canonicalization }), mail)), ["r2048", "ed"]);
    }
  });

  it("a body fed one byte at a time and in odd chunks, CR and LF in different chunks", async () => {
    for (const chunks of [[1], [2, 3, 5, 7, 11, 13], [3]]) {
      for (const canonicalization of ["relaxed/relaxed", "simple/simple"] as const) {
        expectPass(await interop.verify(assemble(await sign(BASIC, DUAL(), { canonicalization }, chunks), BASIC)), ["r2048", "ed"]);
      }
    }
  });

  it("identity (i=) and expiry (x=) in the future", async () => {
    const specs = DUAL().map((s) => ({ ...s, identity: "alice@mail.example.com" }));
    const sigs = await sign(BASIC, specs, { expireSeconds: 7 * 86400 });
    expect(sigs[0]?.value).toMatch(/\bi=alice@mail\.example\.com;/);
    expect(sigs[0]?.value).toMatch(/\bx=\d+;/);
    expectPass(await interop.verify(assemble(sigs, BASIC)), ["r2048", "ed"]);
  });

  it("an expired signature (x= in the past) is not accepted", async () => {
    const signedAt = new Date(Date.now() - 30 * 86400_000);
    const sigs = await sign(BASIC, [spec("r2048")], { expireSeconds: 3600, now: () => signedAt });
    const v = await interop.verify(assemble(sigs, BASIC));
    expectNoPass(v, ["r2048"]);
    expect(v.mailauth[0]?.detail).toBe("expired");
    expect(v.dkimpy[0]?.detail).toMatch(/x= value is past/);
    expect(v.mailDkim[0]?.detail).toMatch(/signature is expired/);
  });

  describe("over-signing", () => {
    const withHeader = (mail: Mail, header: readonly [string, string], where: "top" | "bottom"): Mail => ({
      ...mail,
      headers: where === "top" ? [header, ...mail.headers] : [...mail.headers, header],
    });

    it("h= lists From, Subject, Date, To, Cc, Reply-To and Message-ID once more than present", async () => {
      const [sig] = await sign(BASIC, [spec("r2048")]);
      const h = /\bh=([^;]*);/.exec(sig!.value.replace(/\n\t/g, ""))![1]!.split(":").map((s) => s.trim().toLowerCase());
      const count = (n: string) => h.filter((x) => x === n).length;
      expect([count("from"), count("subject"), count("date"), count("to"), count("message-id")]).toEqual([2, 2, 2, 2, 2]);
      expect([count("cc"), count("reply-to")]).toEqual([1, 1]); // absent: listed once, so none may be added
      expect([count("mime-version"), count("content-type"), count("received"), count("x-mailer")]).toEqual([1, 1, 0, 0]);
    });

    for (const [what, header, where] of [
      ["a second From prepended", ["From", " Mallory <ceo@example.com>"], "top"],
      ["a second From appended", ["From", " Mallory <ceo@example.com>"], "bottom"],
      ["a second Subject prepended", ["Subject", " Urgent: wire the money"], "top"],
      ["a Reply-To added to a message without one", ["Reply-To", " mallory@example.org"], "top"],
      ["a Cc added to a message without one", ["Cc", " mallory@example.org"], "bottom"],
    ] as const) {
      it(`${what}: fails everywhere`, async () => {
        const sigs = await sign(BASIC, DUAL());
        const good = assemble(sigs, BASIC);
        expectPass(await interop.verify(good), ["r2048", "ed"]);
        const forged = assemble(sigs, withHeader(BASIC, header, where));
        expectNoPass(await interop.verify(forged), ["r2048", "ed"]);
      });
    }

    it("an added field that is not signed leaves the signature valid (control)", async () => {
      const sigs = await sign(BASIC, DUAL());
      expectPass(await interop.verify(assemble(sigs, withHeader(BASIC, ["X-Spam-Score", " 0.1"], "top"))), ["r2048", "ed"]);
    });

    it("without over-signing a prepended From still verifies: the reason over-signing is on", async () => {
      const sigs = await sign(BASIC, [spec("r2048")], { oversign: [] });
      const forged = assemble(sigs, withHeader(BASIC, ["From", " Mallory <ceo@example.com>"], "top"));
      const v = await interop.verify(forged);
      // Verifiers take the bottom-most From, the one that was signed. Only dkimpy refuses: it
      // adds an extra "from" to h= itself when verifying (its bug #644046 defence).
      expect(summary(v)).toEqual({ mailauth: ["r2048:pass"], dkimpy: ["r2048:fail"], mailDkim: ["r2048:pass"], opendkim: ["r2048:pass"] });
    });

    it("all instances of a repeated field are signed bottom-up; swapping them fails", async () => {
      const mail: Mail = { ...BASIC, headers: [...BASIC.headers, ["To", " dave@example.net"]] };
      const sigs = await sign(mail, DUAL());
      expectPass(await interop.verify(assemble(sigs, mail)), ["r2048", "ed"]);
      const swapped = mail.headers.filter((h) => h[0] !== "To");
      const tos = mail.headers.filter((h) => h[0] === "To").reverse();
      expectNoPass(await interop.verify(assemble(sigs, { ...mail, headers: [...swapped, ...tos] })), ["r2048", "ed"]);
    });
  });

  describe("tampering", () => {
    it("a changed body byte fails everywhere", async () => {
      const sigs = await sign(BASIC, DUAL());
      const body = String(BASIC.body).replace("Hello Bob", "Hello Rob");
      expectNoPass(await interop.verify(assemble(sigs, { ...BASIC, body })), ["r2048", "ed"]);
    });

    it("an appended body line fails everywhere (no l=)", async () => {
      const sigs = await sign(BASIC, DUAL());
      expectNoPass(await interop.verify(assemble(sigs, { ...BASIC, body: `${String(BASIC.body)}P.S. wire the money\r\n` })), ["r2048", "ed"]);
    });

    it("a changed Subject fails everywhere", async () => {
      const sigs = await sign(BASIC, DUAL());
      const headers = BASIC.headers.map(([n, v]) => [n, n === "Subject" ? " A test message with a changed subject" : v] as const);
      expectNoPass(await interop.verify(assemble(sigs, { ...BASIC, headers })), ["r2048", "ed"]);
    });

    it("whitespace-only changes pass relaxed/relaxed and fail simple/simple", async () => {
      const respaced: Mail = {
        headers: BASIC.headers.map(([n, v]) => [n, n === "Subject" ? " A  test message with a folded\n\t subject line  " : v] as const),
        body: String(BASIC.body).replace("indented  line", "indented line ").replace("tabs  \r\n", "tabs\r\n"),
      };
      const relaxed = await sign(BASIC, [spec("r2048")], { canonicalization: "relaxed/relaxed" });
      expectPass(await interop.verify(assemble(relaxed, respaced)), ["r2048"]);
      const simple = await sign(BASIC, [spec("r2048")], { canonicalization: "simple/simple" });
      expectNoPass(await interop.verify(assemble(simple, respaced)), ["r2048"]);
    });
  });
});
