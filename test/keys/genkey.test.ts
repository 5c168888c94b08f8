import { readFile, stat, writeFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { freshDirEachTest } from "../support/temp-dir.ts";
import { KeyError } from "../../src/keys/errors.ts";
import { generateKey } from "../../src/keys/genkey.ts";
import { loadKeyFile } from "../../src/keys/load.ts";
import { buildDkimTxtRecord, checkKeyAgainstRecord, formatZoneEntry, parseZoneEntry } from "../../src/keys/record.ts";
import { OPENDKIM_GENKEY, REQUIRE_INTEROP, runGenkey } from "./helpers.ts";

let dir: string;
freshDirEachTest((d) => (dir = d));

const mode = async (path: string) => (await stat(path)).mode & 0o7777;

describe("generateKey", () => {
  it("writes a 2048-bit RSA key with mode 0600 and its zone stub, opendkim-genkey's defaults", async () => {
    const g = await generateKey({ directory: dir });
    expect(g.privateKeyPath).toBe(join(dir, "default.private"));
    expect(g.txtPath).toBe(join(dir, "default.txt"));
    expect(await mode(g.privateKeyPath)).toBe(0o600);
    expect(await mode(g.txtPath)).toBe(0o644);
    const txt = await readFile(g.txtPath, "utf8");
    expect(txt).toBe(g.zone);
    expect(txt).toMatch(/^default\._domainkey\tIN\tTXT\t\( "v=DKIM1; h=sha256; k=rsa; "\n\t  "p=/);
    expect(txt.endsWith(" )  ; ----- DKIM key default for localhost\n")).toBe(true);

    const key = await loadKeyFile(g.privateKeyPath);
    expect(key).toMatchObject({ type: "rsa", bits: 2048 });
    expect(checkKeyAgainstRecord(key, parseZoneEntry(txt).strings)).toMatchObject({ ok: true });
  });

  it("writes an Ed25519 key with k=ed25519 and the raw public key", async () => {
    const g = await generateKey({ directory: dir, type: "ed25519", selector: "ed2024", domain: "example.com" });
    const z = parseZoneEntry(await readFile(g.txtPath, "utf8"));
    expect(z.name).toBe("ed2024._domainkey");
    expect(z.strings[0]).toBe("v=DKIM1; h=sha256; k=ed25519; ");
    expect(z.strings[1]).toMatch(/^p=[A-Za-z0-9+/]{43}=$/);
    const key = await loadKeyFile(g.privateKeyPath);
    expect(key.type).toBe("ed25519");
    expect(checkKeyAgainstRecord(key, z.strings).ok).toBe(true);
  });

  it("keeps RSA sizes within 1024–4096 bits", async () => {
    for (const bits of [1023, 4097, 2048.5]) {
      await expect(generateKey({ directory: dir, bits })).rejects.toMatchObject({ code: "invalid-option", message: expect.stringMatching(/1024 to 4096/) });
    }
    await expect(generateKey({ directory: dir, type: "ed25519", bits: 2048 })).rejects.toMatchObject({ code: "invalid-option" });
    expect((await generateKey({ directory: dir, bits: 1024, selector: "small" })).key.bits).toBe(1024);
  });

  it("refuses a selector that is not a DNS label (it also becomes a file name)", async () => {
    await expect(generateKey({ directory: dir, selector: "../escape" })).rejects.toBeInstanceOf(KeyError);
    await expect(generateKey({ directory: dir, selector: "a b" })).rejects.toMatchObject({ code: "invalid-option" });
  });

  it("never replaces an existing key unless asked, and then still ends at 0600", async () => {
    const path = join(dir, "default.private");
    await writeFile(path, "the key in production\n");
    await chmod(path, 0o644);
    await expect(generateKey({ directory: dir })).rejects.toMatchObject({ code: "exists", file: path });
    expect(await readFile(path, "utf8")).toBe("the key in production\n");
    await expect(stat(join(dir, "default.txt"))).rejects.toMatchObject({ code: "ENOENT" });

    const g = await generateKey({ directory: dir, overwrite: true });
    expect(await mode(path)).toBe(0o600);
    expect((await loadKeyFile(g.privateKeyPath)).publicKey).toBe(g.key.publicKey);
  });

  it("removes the new key when its .txt cannot be written, so no half pair is left", async () => {
    await writeFile(join(dir, "default.txt"), "someone else's record\n");
    await expect(generateKey({ directory: dir })).rejects.toMatchObject({ code: "exists" });
    await expect(stat(join(dir, "default.private"))).rejects.toMatchObject({ code: "ENOENT" });
    expect(await readFile(join(dir, "default.txt"), "utf8")).toBe("someone else's record\n");
  });

  it("reports a mismatched key and record", async () => {
    const a = await generateKey({ directory: dir, selector: "a" });
    const b = await generateKey({ directory: dir, selector: "b" });
    const keyA = await loadKeyFile(a.privateKeyPath);
    const txtB = parseZoneEntry(await readFile(b.txtPath, "utf8"));
    const r = checkKeyAgainstRecord(keyA, txtB.strings);
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/^public key mismatch/);
  });
});

// Interop with the tool this replaces. CI installs opendkim-tools, so there it must run.
const interop = OPENDKIM_GENKEY !== undefined || REQUIRE_INTEROP;
describe.skipIf(!interop)(`opendkim-genkey interop${interop ? "" : " (skipped: opendkim-genkey not installed; CI=true makes this fail instead)"}`, () => {
  it("loads opendkim-genkey's key and finds it matches its own .txt", async () => {
    runGenkey(dir, ["-s", "sel1", "-d", "example.com"]);
    const key = await loadKeyFile(join(dir, "sel1.private"));
    expect(key).toMatchObject({ type: "rsa", bits: 2048 });
    const txt = await readFile(join(dir, "sel1.txt"), "utf8");
    const z = parseZoneEntry(txt);
    expect(z.name).toBe("sel1._domainkey");
    expect(checkKeyAgainstRecord(key, z.strings)).toMatchObject({ ok: true, reason: "key OK" });
  });

  it("writes the same .txt as opendkim-genkey for the same key, byte for byte", async () => {
    runGenkey(dir, ["-s", "sel1", "-d", "example.com"]);
    const key = await loadKeyFile(join(dir, "sel1.private"));
    const ours = formatZoneEntry(buildDkimTxtRecord({ type: "rsa", publicKey: key.publicKey }), { selector: "sel1", domain: "example.com" });
    expect(ours).toBe(await readFile(join(dir, "sel1.txt"), "utf8"));
  });

  it("matches opendkim-genkey's layout for -t -S -r -n -a -b 1024 as well", async () => {
    runGenkey(dir, ["-s", "sel2", "-d", "example.org", "-t", "-S", "-r", "-n", "rotated 2024", "-a", "-b", "1024"]);
    const key = await loadKeyFile(join(dir, "sel2.private"));
    expect(key.bits).toBe(1024);
    const record = buildDkimTxtRecord({ type: "rsa", publicKey: key.publicKey, testMode: true, subdomains: false, restrict: true, note: "rotated 2024" });
    const ours = formatZoneEntry(record, { selector: "sel2", domain: "example.org", appendDomain: true });
    expect(ours).toBe(await readFile(join(dir, "sel2.txt"), "utf8"));
    expect(checkKeyAgainstRecord(key, parseZoneEntry(ours).strings)).toMatchObject({ ok: true, warnings: [expect.stringMatching(/^t=y/)] });
  });

  it("reports opendkim-genkey's key against another selector's record as a mismatch", async () => {
    runGenkey(dir, ["-s", "one", "-d", "example.com"]);
    runGenkey(dir, ["-s", "two", "-d", "example.com"]);
    const key = await loadKeyFile(join(dir, "one.private"));
    const other = parseZoneEntry(await readFile(join(dir, "two.txt"), "utf8"));
    expect(checkKeyAgainstRecord(key, other.strings).reason).toMatch(/^public key mismatch/);
  });
});
