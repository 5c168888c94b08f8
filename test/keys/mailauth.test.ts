// The key path end to end: generated key → loadKeyFile → mailauth dkimSign → mailauth dkimVerify
// against the TXT record we generated, served by a resolver function.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { dkimSign, dkimVerify, type DKIMSignOptions, type DKIMSignResult } from "mailauth";
import { describe, expect, it } from "vitest";
import { freshDirEachTest } from "../support/temp-dir.ts";
import { generateKey } from "../../src/keys/genkey.ts";
import { loadKeyFile, mailauthSignatureData, type MailauthSignatureData } from "../../src/keys/load.ts";
import { parseZoneEntry } from "../../src/keys/record.ts";
import type { DkimKeyType } from "../../src/keys/load.ts";
import { OPENDKIM_GENKEY, REQUIRE_INTEROP, runGenkey } from "./helpers.ts";

// mailauth 7.1.0 types only the top-level form, which signs nothing; signatureData works but does
// not type-check (reference/mailauth-notes.md "Typing bug").
type SignOptions = Omit<DKIMSignOptions, "signingDomain" | "selector" | "privateKey" | "signatureData"> & {
  signatureData: MailauthSignatureData[];
};
const sign = dkimSign as unknown as (input: string, options: SignOptions) => Promise<DKIMSignResult>;

const MESSAGE = [
  "From: Alice <alice@example.com>",
  "To: Bob <bob@example.net>",
  "Subject: key layer end to end",
  "Date: Tue, 26 Nov 2024 06:00:00 +0000",
  "Message-ID: <keys-e2e@example.com>",
  "",
  "Signed with a key authmilter loaded.",
  "",
].join("\r\n");

function resolverFor(name: string, strings: readonly string[]) {
  return async (domain: string, rrtype: string): Promise<string[][]> => {
    if (rrtype === "TXT" && domain.toLowerCase() === name) return [[...strings]];
    throw Object.assign(new Error(`no ${rrtype} for ${domain}`), { code: "ENOTFOUND" });
  };
}

let dir: string;
freshDirEachTest((d) => (dir = d));

async function signAndVerify(privatePath: string, txtPath: string, selector: string, published?: readonly string[]) {
  const key = await loadKeyFile(privatePath);
  const signed = await sign(MESSAGE, { signatureData: [mailauthSignatureData(key, "example.com", selector)] });
  const strings = published ?? parseZoneEntry(await readFile(txtPath, "utf8")).strings;
  const verified = await dkimVerify(signed.signatures + MESSAGE, {
    resolver: resolverFor(`${selector}._domainkey.example.com`, strings),
    strict: true,
  });
  return { key, signed, verified };
}

describe("signing with a loaded key through mailauth", () => {
  for (const [type, algorithm] of [["rsa", "rsa-sha256"], ["ed25519", "ed25519-sha256"]] as [DkimKeyType, string][]) {
    it(`produces a ${algorithm} DKIM-Signature that verifies against our ${type} record`, async () => {
      const g = await generateKey({ directory: dir, type, selector: "s2024", domain: "example.com" });
      const { signed, verified } = await signAndVerify(g.privateKeyPath, g.txtPath, "s2024");
      expect(signed.errors).toEqual([]);
      expect(signed.signatures).toMatch(/^DKIM-Signature: /);
      expect(signed.signatures).toContain(`a=${algorithm};`);
      expect(signed.signatures).toMatch(/d=example\.com;/);
      expect(signed.signatures).toMatch(/s=s2024;/);
      expect(verified.results).toHaveLength(1);
      expect(verified.results[0]?.status.result).toBe("pass");
    });
  }

  it("fails verification against another key's record, so the pass above is not vacuous", async () => {
    const g = await generateKey({ directory: dir, selector: "s1", domain: "example.com" });
    const other = await generateKey({ directory: dir, selector: "s2", domain: "example.com" });
    const { signed, verified } = await signAndVerify(g.privateKeyPath, g.txtPath, "s1", other.record.strings);
    expect(signed.signatures).toMatch(/^DKIM-Signature: /);
    expect(verified.results[0]?.status.result).toBe("fail");
  });

  const interop = OPENDKIM_GENKEY !== undefined || REQUIRE_INTEROP;
  it.skipIf(!interop)(
    `signs with an opendkim-genkey key that verifies against opendkim-genkey's own .txt${interop ? "" : " (skipped: opendkim-genkey not installed)"}`,
    async () => {
      runGenkey(dir, ["-s", "legacy", "-d", "example.com"]);
      const { verified } = await signAndVerify(join(dir, "legacy.private"), join(dir, "legacy.txt"), "legacy");
      expect(verified.results[0]?.status.result).toBe("pass");
    },
  );
});
