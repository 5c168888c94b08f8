import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { RecordError } from "../../src/keys/errors.ts";
import { parsePrivateKey } from "../../src/keys/load.ts";
import { buildDkimTxtRecord, checkKeyAgainstRecord, formatZoneEntry, parseDkimKeyRecord, parseZoneEntry } from "../../src/keys/record.ts";

const rsa = parsePrivateKey(generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }), "rsa");
const rsaOther = parsePrivateKey(generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }), "rsa2");
const ed = parsePrivateKey(generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }), "ed");

describe("building the TXT record like opendkim-genkey", () => {
  it("lays out a 2048-bit RSA record in strings of at most 255 bytes", () => {
    const r = buildDkimTxtRecord({ type: "rsa", publicKey: rsa.publicKey });
    expect(rsa.publicKey).toHaveLength(392);
    expect(r.strings).toEqual(["v=DKIM1; h=sha256; k=rsa; ", `p=${rsa.publicKey.slice(0, 250)}`, rsa.publicKey.slice(250)]);
    expect(r.value).toBe(`v=DKIM1; h=sha256; k=rsa; p=${rsa.publicKey}`);
    for (const s of r.strings) expect(Buffer.byteLength(s)).toBeLessThanOrEqual(255);
  });

  it("writes the flags in opendkim-genkey's order and spelling", () => {
    const r = buildDkimTxtRecord({ type: "rsa", publicKey: "AAAA", note: "hello", testMode: true, subdomains: false, restrict: true });
    expect(r.strings[0]).toBe('v=DKIM1; n="hello"; h=sha256; k=rsa; t=y:s; s=email; ');
    expect(buildDkimTxtRecord({ type: "rsa", publicKey: "AAAA", subdomains: false }).strings[0]).toBe("v=DKIM1; h=sha256; k=rsa; t=s; ");
    expect(buildDkimTxtRecord({ type: "rsa", publicKey: "AAAA", restrict: true }).strings[0]).toBe("v=DKIM1; h=sha256; k=rsa; s=email; ");
    expect(buildDkimTxtRecord({ type: "ed25519", publicKey: ed.publicKey, hashAlgorithms: null }).value).toBe(`v=DKIM1; k=ed25519; p=${ed.publicKey}`);
  });

  it("splits a long note so no string passes 255 bytes", () => {
    const r = buildDkimTxtRecord({ type: "rsa", publicKey: rsa.publicKey, note: "n".repeat(400) });
    for (const s of r.strings) expect(s.length).toBeLessThanOrEqual(255);
    expect(parseDkimKeyRecord(r.strings).tags.get("n")).toBe(`"${"n".repeat(400)}"`);
  });

  it("refuses values that would break the tag list", () => {
    expect(() => buildDkimTxtRecord({ type: "rsa", publicKey: "AAAA", note: "a; p=" })).toThrow(RecordError);
    expect(() => buildDkimTxtRecord({ type: "rsa", publicKey: "not base64!" })).toThrow(RecordError);
    expect(() => buildDkimTxtRecord({ type: "rsa", publicKey: "AAAA", hashAlgorithms: "sha256; p=" })).toThrow(RecordError);
  });

  it("formats the zone-file stub byte for byte", () => {
    const r = buildDkimTxtRecord({ type: "rsa", publicKey: rsa.publicKey });
    expect(formatZoneEntry(r, { selector: "mail", domain: "example.com" })).toBe(
      `mail._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "\n\t  "p=${rsa.publicKey.slice(0, 250)}"\n\t  "${rsa.publicKey.slice(250)}" )  ; ----- DKIM key mail for example.com\n`,
    );
    const q = buildDkimTxtRecord({ type: "rsa", publicKey: "AAAA", note: "hi" });
    expect(formatZoneEntry(q, { selector: "s", domain: "example.com", appendDomain: true })).toBe(
      `s._domainkey.example.com.\tIN\tTXT\t( "v=DKIM1; n=\\"hi\\"; h=sha256; k=rsa; "\n\t  "p=AAAA" )  ; ----- DKIM key s for example.com\n`,
    );
  });
});

describe("reading zone entries", () => {
  it("reads back what formatZoneEntry writes, escapes included", () => {
    const r = buildDkimTxtRecord({ type: "ed25519", publicKey: ed.publicKey, note: 'say "hi"' });
    const z = parseZoneEntry(formatZoneEntry(r, { selector: "ed", domain: "example.com" }));
    expect(z).toEqual({ name: "ed._domainkey", strings: r.strings });
  });

  it("accepts TTL and class, no parentheses, and \\DDD escapes", () => {
    const z = parseZoneEntry('sel._domainkey.example.com. 3600 IN TXT "v=DKIM1\\059 k=rsa;" "p=AB" ; comment "not a string"\n');
    expect(z).toEqual({ name: "sel._domainkey.example.com.", strings: ["v=DKIM1; k=rsa;", "p=AB"] });
  });

  it("rejects text that is not a TXT entry", () => {
    expect(() => parseZoneEntry("sel IN A 192.0.2.1\n")).toThrow(/no "name \.\.\. TXT" entry/);
    expect(() => parseZoneEntry('sel IN TXT "v=DKIM1')).toThrow(/unterminated/);
    expect(() => parseZoneEntry("sel IN TXT\n")).toThrow(/has no strings/);
  });
});

describe("parsing key records", () => {
  it("reads tags with defaults and folds whitespace out of p=", () => {
    const r = parseDkimKeyRecord(["v=DKIM1; h=sha256 : sha1; t=y:s; ", "p=AB CD\tEF=="]);
    expect(r).toMatchObject({ version: "DKIM1", keyType: "rsa", hashAlgorithms: ["sha256", "sha1"], flags: ["y", "s"], services: ["*"], publicKey: "ABCDEF==", revoked: false });
    expect(parseDkimKeyRecord("p=").revoked).toBe(true);
  });

  it("rejects what RFC 6376 makes invalid", () => {
    expect(() => parseDkimKeyRecord("k=rsa; v=DKIM1; p=AAAA")).toThrow(/must be the first tag/);
    expect(() => parseDkimKeyRecord("v=DKIM2; p=AAAA")).toThrow(/not DKIM1/);
    expect(() => parseDkimKeyRecord("v=DKIM1; p=AAAA; p=BBBB")).toThrow(/appears twice/);
    expect(() => parseDkimKeyRecord("v=DKIM1; k=rsa")).toThrow(/no p= tag/);
    expect(() => parseDkimKeyRecord("v=DKIM1; p=AA*A")).toThrow(/not base64/);
    expect(() => parseDkimKeyRecord("v=DKIM1;; p=AAAA")).toThrow(/empty tag/);
  });
});

describe("checking a key against its record (opendkim-testkey without DNS)", () => {
  const rsaTxt = buildDkimTxtRecord({ type: "rsa", publicKey: rsa.publicKey }).strings;
  const edTxt = buildDkimTxtRecord({ type: "ed25519", publicKey: ed.publicKey }).strings;

  it("says key OK for the matching pair", () => {
    expect(checkKeyAgainstRecord(rsa, rsaTxt)).toEqual({ ok: true, reason: "key OK", warnings: [] });
    expect(checkKeyAgainstRecord(ed, edTxt).ok).toBe(true);
  });

  it("accepts an RSA record published as a bare RSAPublicKey", () => {
    const pub = createPublicKey(rsa.privateKey).export({ type: "pkcs1", format: "der" }).toString("base64");
    expect(pub).not.toBe(rsa.publicKey);
    expect(checkKeyAgainstRecord(rsa, `v=DKIM1; k=rsa; p=${pub}`).ok).toBe(true);
    expect(checkKeyAgainstRecord(rsaOther, `v=DKIM1; k=rsa; p=${pub}`).ok).toBe(false);
  });

  it("reports a different key precisely", () => {
    const r = checkKeyAgainstRecord(rsaOther, rsaTxt);
    expect(r.ok).toBe(false);
    expect(r.reason).toBe("public key mismatch: p= is not the public half of this private key (published 2048-bit rsa, private 2048-bit rsa)");
  });

  it("reports revocation, wrong key type, hash, service and syntax", () => {
    expect(checkKeyAgainstRecord(rsa, "v=DKIM1; k=rsa; p=").reason).toMatch(/^key revoked/);
    expect(checkKeyAgainstRecord(rsa, edTxt).reason).toBe("record says k=ed25519 but the private key is rsa");
    expect(checkKeyAgainstRecord(ed, `v=DKIM1; k=rsa; p=${ed.publicKey}`).reason).toBe("record says k=rsa but the private key is ed25519");
    expect(checkKeyAgainstRecord(rsa, `v=DKIM1; h=sha1; p=${rsa.publicKey}`).reason).toMatch(/allows h=sha1 only/);
    expect(checkKeyAgainstRecord(rsa, `v=DKIM1; s=tlsrpt; p=${rsa.publicKey}`).reason).toMatch(/s=tlsrpt, not email/);
    expect(checkKeyAgainstRecord(rsa, `p=${rsa.publicKey}; p=x`).reason).toMatch(/^record syntax: tag "p" appears twice/);
    expect(checkKeyAgainstRecord(ed, "v=DKIM1; k=ed25519; p=AAAA").reason).toMatch(/must be 32 bytes/);
    expect(checkKeyAgainstRecord(rsa, "v=DKIM1; k=dsa; p=AAAA").reason).toBe("unknown key type k=dsa");
  });

  it("passes a testing key with a warning", () => {
    const r = checkKeyAgainstRecord(rsa, buildDkimTxtRecord({ type: "rsa", publicKey: rsa.publicKey, testMode: true }).strings);
    expect(r.ok).toBe(true);
    expect(r.warnings).toEqual([expect.stringMatching(/^t=y/)]);
  });
});
