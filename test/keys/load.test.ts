import { createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmod, chown, mkdir, symlink } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { freshDirEachTest } from "../support/temp-dir.ts";
import { KeyError } from "../../src/keys/errors.ts";
import { loadKeyFile, loadKeySource, parsePrivateKey } from "../../src/keys/load.ts";
import { writeKey } from "./helpers.ts";

const rsa2048 = generateKeyPairSync("rsa", { modulusLength: 2048 });
const rsa1024 = generateKeyPairSync("rsa", { modulusLength: 1024 });
const rsa512 = generateKeyPairSync("rsa", { modulusLength: 512 });
const ed = generateKeyPairSync("ed25519");

const pkcs8 = (k: KeyObject) => k.export({ type: "pkcs8", format: "pem" }).toString();
const pkcs1 = (k: KeyObject) => k.export({ type: "pkcs1", format: "pem" }).toString();

async function keyError(p: Promise<unknown>): Promise<KeyError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof KeyError) return err;
    throw err;
  }
  throw new Error("expected a KeyError");
}

let dir: string;
freshDirEachTest((d) => (dir = d));

describe("loading private keys", () => {
  it("loads RSA PKCS#8 and PKCS#1 PEM and Ed25519 PKCS#8 PEM", async () => {
    const a = await loadKeyFile(await writeKey(dir, "a.private", pkcs8(rsa2048.privateKey), 0o600));
    const b = await loadKeyFile(await writeKey(dir, "b.private", pkcs1(rsa2048.privateKey), 0o600));
    const c = await loadKeyFile(await writeKey(dir, "c.private", pkcs8(ed.privateKey), 0o600));
    expect(a).toMatchObject({ type: "rsa", algorithm: "rsa-sha256", bits: 2048, warnings: [] });
    expect(b.privateKeyPem).toBe(a.privateKeyPem);
    expect(a.privateKeyPem.startsWith("-----BEGIN PRIVATE KEY-----")).toBe(true);
    expect(c).toMatchObject({ type: "ed25519", algorithm: "ed25519-sha256", bits: 256 });
  });

  it("derives the p= value: SubjectPublicKeyInfo for RSA, the raw 32 bytes for Ed25519", async () => {
    const r = parsePrivateKey(pkcs8(rsa2048.privateKey), "r");
    expect(r.publicKey).toBe(rsa2048.publicKey.export({ type: "spki", format: "der" }).toString("base64"));
    const e = parsePrivateKey(pkcs8(ed.privateKey), "e");
    const raw = Buffer.from(e.publicKey, "base64");
    expect(raw).toHaveLength(32);
    expect(ed.publicKey.export({ type: "spki", format: "der" }).subarray(-32).equals(raw)).toBe(true);
  });

  it("accepts base64 DER, as opendkim does for inline KeyTable keys", async () => {
    const der = rsa1024.privateKey.export({ type: "pkcs8", format: "der" }).toString("base64");
    expect(der.startsWith("MII")).toBe(true);
    const k = await loadKeySource({ kind: "inline", data: der }, { origin: "KeyTable /etc/opendkim/key.table:3" });
    expect(k).toMatchObject({ type: "rsa", bits: 1024, source: "inline key in KeyTable /etc/opendkim/key.table:3" });
    const binary = await loadKeyFile(await writeKey(dir, "bin.der", ed.privateKey.export({ type: "pkcs8", format: "der" }), 0o600));
    expect(binary.type).toBe("ed25519");
  });

  it("refuses a raw Ed25519 seed with the command that converts it", async () => {
    const seed = Buffer.alloc(32, 7).toString("base64");
    const path = await writeKey(dir, "seed.private", seed + "\n", 0o600);
    const e = await keyError(loadKeyFile(path));
    expect(e.code).toBe("raw-ed25519-seed");
    expect(e.message).toContain(`base64 -d ${path}; } | openssl pkey -inform DER`);
  });

  it("refuses encrypted, public, unsupported and unparsable keys", async () => {
    const enc = rsa1024.privateKey.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "x" }).toString();
    expect((await keyError(loadKeyFile(await writeKey(dir, "enc", enc, 0o600)))).code).toBe("encrypted");
    const pub = rsa1024.publicKey.export({ type: "spki", format: "pem" }).toString();
    const p = await keyError(loadKeyFile(await writeKey(dir, "pub", pub, 0o600)));
    expect(p.code).toBe("invalid");
    expect(p.message).toMatch(/public key or certificate, not a private key/);
    const ec = pkcs8(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey);
    const u = await keyError(loadKeyFile(await writeKey(dir, "ec", ec, 0o600)));
    expect(u.code).toBe("unsupported-type");
    expect(u.message).toMatch(/RSA \(rsa-sha256\) or Ed25519/);
    const pss = pkcs8(generateKeyPairSync("rsa-pss", { modulusLength: 1024 }).privateKey);
    expect((await keyError(loadKeyFile(await writeKey(dir, "pss", pss, 0o600)))).message).toMatch(/RSA-PSS/);
    expect((await keyError(loadKeyFile(await writeKey(dir, "junk", "not a key at all\n", 0o600)))).code).toBe("invalid");
  });

  it("enforces the minimum RSA key size, default 1024 bits", async () => {
    const path = await writeKey(dir, "small.private", pkcs8(rsa512.privateKey), 0o600);
    const e = await keyError(loadKeyFile(path));
    expect(e).toMatchObject({ code: "too-small", file: path });
    expect(e.message).toMatch(/512 bits, below the minimum of 1024/);
    expect((await loadKeyFile(path, { minimumKeyBits: 512 })).bits).toBe(512);
    expect((await loadKeyFile(path, { minimumKeyBits: 0 })).bits).toBe(512);
    expect((await loadKeyFile(await writeKey(dir, "k1024", pkcs8(rsa1024.privateKey), 0o600))).bits).toBe(1024);
    const big = await writeKey(dir, "k2048", pkcs8(rsa2048.privateKey), 0o600);
    expect((await keyError(loadKeyFile(big, { minimumKeyBits: 3072 }))).code).toBe("too-small");
    // The minimum is about RSA; an Ed25519 key is 256 bits and always strong enough.
    expect((await loadKeyFile(await writeKey(dir, "ed", pkcs8(ed.privateKey), 0o600), { minimumKeyBits: 2048 })).type).toBe("ed25519");
    expect((await keyError(loadKeyFile(big, { minimumKeyBits: -1 }))).code).toBe("invalid-option");
  });

  it("reports a missing path and a directory", async () => {
    const missing = join(dir, "nope.private");
    expect(await keyError(loadKeyFile(missing))).toMatchObject({ code: "not-found", message: `key file ${missing} does not exist` });
    expect((await keyError(loadKeyFile(dir))).code).toBe("not-a-file");
  });
});

describe("RequireSafeKeys", () => {
  it("accepts a key file with mode 0600 and 0400", async () => {
    await expect(loadKeyFile(await writeKey(dir, "a", pkcs8(ed.privateKey), 0o600))).resolves.toMatchObject({ warnings: [] });
    await expect(loadKeyFile(await writeKey(dir, "b", pkcs8(ed.privateKey), 0o400))).resolves.toMatchObject({ warnings: [] });
  });

  it("refuses a key readable by others, with the chmod that fixes it", async () => {
    const path = await writeKey(dir, "k.private", pkcs8(rsa1024.privateKey), 0o644);
    const e = await keyError(loadKeyFile(path));
    expect(e).toMatchObject({ code: "unsafe-mode", file: path });
    expect(e.message).toBe(`key file ${path} is readable by group, readable by others (mode 0644); run chmod 600 ${path}`);
  });

  it("refuses group access too", async () => {
    for (const mode of [0o640, 0o620, 0o602]) {
      const path = await writeKey(dir, `k${mode.toString(8)}`, pkcs8(rsa1024.privateKey), mode);
      const e = await keyError(loadKeyFile(path));
      expect(e.code, mode.toString(8)).toBe("unsafe-mode");
      expect(e.message).toContain(`chmod 600 ${path}`);
    }
  });

  it("loads an unsafe key when requireSafeKeys is false, and says what was tolerated", async () => {
    const path = await writeKey(dir, "k.private", pkcs8(rsa1024.privateKey), 0o644);
    const k = await loadKeyFile(path, { requireSafeKeys: false });
    expect(k.bits).toBe(1024);
    expect(k.warnings).toHaveLength(1);
    expect(k.warnings[0]).toMatch(/chmod 600 .*tolerated: requireSafeKeys is false/);
  });

  it("refuses a key in a directory others can write to", async () => {
    const sub = join(dir, "keys");
    await mkdir(sub);
    await chmod(sub, 0o777);
    const path = await writeKey(sub, "k.private", pkcs8(ed.privateKey), 0o600);
    const e = await keyError(loadKeyFile(path));
    expect(e.code).toBe("unsafe-directory");
    expect(e.message).toContain(`directory ${sub}, which holds key file ${path}, is writable by group and others`);
    expect(e.message).toContain(`run chmod go-w ${sub}`);
    // The sticky bit (as on /tmp) stops others from replacing files they do not own.
    await chmod(sub, 0o1777);
    await expect(loadKeyFile(path)).resolves.toMatchObject({ type: "ed25519" });
  });

  const root = process.geteuid?.() === 0;
  it.skipIf(!root)("refuses a key owned by another user (needs root to chown; skipped otherwise)", async () => {
    const path = await writeKey(dir, "k.private", pkcs8(ed.privateKey), 0o600);
    await chown(path, 65534, 65534);
    const e = await keyError(loadKeyFile(path));
    expect(e.code).toBe("unsafe-owner");
    expect(e.message).toMatch(new RegExp(`owned by uid 65534, not by the user authmilter runs as \\(uid 0 \\(root\\)\\) or root; run chown root ${path}`));
    await expect(loadKeyFile(path, { requireSafeKeys: false })).resolves.toMatchObject({ type: "ed25519" });
  });

  it("follows a symlink and judges the file it points to", async () => {
    const target = await writeKey(dir, "real.private", pkcs8(ed.privateKey), 0o644);
    const link = join(dir, "link.private");
    await symlink(target, link);
    expect((await keyError(loadKeyFile(link))).code).toBe("unsafe-mode");
    await chmod(target, 0o600);
    const k = await loadKeyFile(link);
    expect(createPublicKey(k.privateKey).export({ type: "spki", format: "der" }).equals(ed.publicKey.export({ type: "spki", format: "der" }))).toBe(true);
  });

  it("never echoes key material in an error", () => {
    const body = rsa1024.privateKey.export({ type: "pkcs8", format: "der" }).subarray(0, 60).toString("base64");
    let message = "";
    try {
      parsePrivateKey(`-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`, "/etc/opendkim/keys/x.private");
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^\/etc\/opendkim\/keys\/x\.private: contains a PEM block OpenSSL cannot parse$/);
  });
});
