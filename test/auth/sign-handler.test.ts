// Who gets signed, with which key, and what the log says — through the same handler the
// daemon runs; each signature is then verified by our verifier over the loopback DNS server.

import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildAuthHandler, buildAuthState, buildResolver } from "../../src/auth/build.ts";
import type { AuthHandler } from "../../src/auth/handler.ts";
import { parseMessage, runMessage, type Envelope } from "../../src/auth/offline.ts";
import { defaultConfig, type Config } from "../../src/config/schema.ts";
import type { Resolver } from "../../src/dns/index.ts";
import type { MessageOutcome } from "../../src/milter/handler.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";

const dir = mkdtempSync(join(tmpdir(), "authmilter-sign-"));
const records: Record<string, { TXT: string }> = {};

function writeKey(name: string, type: "rsa" | "ed25519", domain: string, selector: string): string {
  const { privateKey, publicKey } = type === "rsa" ? generateKeyPairSync("rsa", { modulusLength: 2048 }) : generateKeyPairSync("ed25519");
  const path = join(dir, `${name}.private`);
  writeFileSync(path, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  const der = publicKey.export({ type: "spki", format: "der" });
  const p = type === "rsa" ? der.toString("base64") : der.subarray(-32).toString("base64");
  records[`${selector}._domainkey.${domain}`] = { TXT: `v=DKIM1; k=${type}; p=${p}` };
  return path;
}

const rsaKey = writeKey("example-rsa", "rsa", "example.com", "2026a");
const edKey = writeKey("example-ed", "ed25519", "example.com", "2026e");
const tableKey = writeKey("tables", "rsa", "tables.example", "tbl");
writeFileSync(join(dir, "key.table"), `# opendkim KeyTable\ntbl._domainkey.tables.example tables.example:tbl:${tableKey}\n`);
writeFileSync(join(dir, "signing.table"), `# refile patterns\n*@tables.example tbl._domainkey.tables.example\n`);

let dns: DnsTestServer;
let resolver: Resolver;
beforeAll(async () => {
  dns = await startDnsServer({ zone: { ...records, "example.com": { TXT: "v=spf1 -all" } } });
});
afterAll(async () => {
  resolver?.close();
  await dns.close();
  rmSync(dir, { recursive: true, force: true });
});

function config(overrides: Partial<Config> = {}, signing: Partial<Config["signing"]> = {}): Config {
  const base = defaultConfig();
  return {
    ...base,
    authservId: "mx.example.net",
    verify: { ...base.verify, softwareHeader: false },
    dns: { ...base.dns, servers: dns.servers },
    ...overrides,
    signing: {
      ...base.signing,
      keys: [{ domain: "example.com", selector: "2026a", keyFile: rsaKey }],
      keyTable: join(dir, "key.table"),
      signingTable: `refile:${join(dir, "signing.table")}`,
      ...signing,
    },
  };
}

const message = (from = "alice@example.com") =>
  `From: Alice <${from}>\r\nTo: bob@example.net\r\nSubject: signed\r\nDate: Thu, 26 Nov 2026 06:00:00 +0000\r\nMessage-ID: <s1@example.com>\r\n\r\nHello.\r\n`;

async function run(envelope: Partial<Envelope>, cfg = config(), raw = message()): Promise<{ outcome: MessageOutcome; logs: string[] }> {
  const logs: string[] = [];
  resolver?.close();
  resolver = buildResolver(cfg);
  const logger = pino({ level: "info" }, { write: (l: string) => void logs.push(JSON.parse(l).msg) });
  const handler = await buildAuthHandler(cfg, resolver, logger);
  const outcome = await runMessage(handler, { clientAddress: "127.0.0.1", helo: "client.example.com", sender: "alice@example.com", ...envelope }, parseMessage(Buffer.from(raw)));
  return { outcome, logs };
}

const signatures = (o: MessageOutcome) => o.modifications.filter((m) => m.kind === "insheader" && m.name === "DKIM-Signature").map((m) => String((m as { value: string }).value));

/** Puts the signatures on the message and has our verifier (as for external mail) check them. */
async function verifyWithOurVerifier(raw: string, sigs: readonly string[]): Promise<string> {
  const signed = sigs.map((v) => `DKIM-Signature: ${v.replace(/\n/g, "\r\n")}\r\n`).join("") + raw;
  const { outcome } = await run({ clientAddress: "203.0.113.5" }, config(), signed);
  const ar = outcome.modifications.find((m) => m.kind === "insheader" && m.name === "Authentication-Results");
  return String((ar as { value: string }).value).replace(/\n\t/g, " ");
}

describe("who is signed", () => {
  it.each([
    ["an internal host", { clientAddress: "127.0.0.1" }, "127.0.0.1] is in internalHosts"],
    ["a SASL-authenticated client", { clientAddress: "203.0.113.5", authUser: "alice" }, "authenticated as alice"],
    ["the submission service", { clientAddress: "203.0.113.5", daemonName: "ORIGINATING" }, "came in through ORIGINATING"],
    ["local sendmail (non-SMTP)", { clientAddress: "127.0.0.1", clientName: "localhost", clientPort: 0 }, "submitted locally (non-SMTP)"],
  ])("signs mail from %s, and the signature verifies", async (_, envelope, why) => {
    const cfg = config({}, { submissionDaemons: ["ORIGINATING"] });
    const { outcome, logs } = await run(envelope, cfg);
    const sigs = signatures(outcome);
    expect(sigs).toHaveLength(1);
    expect(sigs[0]).toMatch(/d=example\.com;/);
    expect(sigs[0]).toMatch(/s=2026a;/);
    expect(logs.some((l) => l.endsWith(why))).toBe(true);
    expect(logs).toContain("OFFLINE: DKIM-Signature field added (s=2026a, d=example.com)");
    // Ours is not verified: no A-R.
    expect(outcome.modifications.some((m) => m.kind === "insheader" && m.name === "Authentication-Results")).toBe(false);
    expect(await verifyWithOurVerifier(message(), sigs)).toContain("dkim=pass (2048-bit key) header.d=example.com");
  });

  it("does not sign an external client claiming our domain, verifies it and warns", async () => {
    const { outcome, logs } = await run({ clientAddress: "203.0.113.5" });
    expect(signatures(outcome)).toEqual([]);
    expect(logs).toContain("OFFLINE: external host [203.0.113.5] [203.0.113.5] tried to send mail as example.com");
    expect(outcome.modifications.some((m) => m.kind === "insheader" && m.name === "Authentication-Results")).toBe(true);
  });

  it("reads opendkim's TrustedHosts file as it is, from internalHosts", async () => {
    const file = join(dir, "TrustedHosts");
    writeFileSync(file, "# opendkim TrustedHosts\n127.0.0.1\n::1\n203.0.113.0/24\n!203.0.113.99\n");
    const cfg = config({ internalHosts: [`file:${file}`] });
    expect(signatures((await run({ clientAddress: "203.0.113.5" }, cfg)).outcome)).toHaveLength(1);
    expect(signatures((await run({ clientAddress: "203.0.113.99" }, cfg)).outcome)).toEqual([]);
    writeFileSync(file, "127.0.0.1\n10.0.0.0/33\n");
    await expect(buildAuthState(cfg)).rejects.toThrow(new RegExp(`${file}:2: `));
  });

  it("keeps quiet about hosts in externalIgnoreList", async () => {
    const { logs } = await run({ clientAddress: "203.0.113.5" }, config({ externalIgnoreList: ["203.0.113.0/24"] }));
    expect(logs.some((l) => l.includes("tried to send mail as"))).toBe(false);
  });

  it("says why internal mail goes unsigned", async () => {
    const { outcome, logs } = await run({}, config(), message("alice@unsigned.example"));
    expect(signatures(outcome)).toEqual([]);
    expect(logs).toContain("OFFLINE: not signed: no signing key for unsigned.example");
  });

  it("signs nothing in verify mode", async () => {
    const { outcome } = await run({}, config({ mode: "verify" }));
    expect(signatures(outcome)).toEqual([]);
  });

  it("verifies nothing in sign mode", async () => {
    const { outcome } = await run({ clientAddress: "203.0.113.5" }, config({ mode: "sign" }));
    expect(outcome.modifications.filter((m) => "name" in m && m.name === "Authentication-Results")).toEqual([]);
  });
});

describe("which keys", () => {
  it("signs twice, RSA and Ed25519, when two native entries match", async () => {
    const cfg = config({}, { keys: [{ domain: "example.com", selector: "2026a", keyFile: rsaKey }, { domain: "*.example.com", signingDomain: "example.com", selector: "2026e", keyFile: edKey }, { domain: "example.com", selector: "2026e", keyFile: edKey }] });
    const sigs = signatures((await run({}, cfg)).outcome);
    expect(sigs.map((s) => /a=([a-z0-9-]+);/.exec(s)?.[1])).toEqual(["rsa-sha256", "ed25519-sha256"]);
    const ar = await verifyWithOurVerifier(message(), sigs);
    expect(ar.match(/dkim=pass/g)).toHaveLength(2);
  });

  it("takes the key from opendkim's KeyTable and refile SigningTable", async () => {
    const { outcome, logs } = await run({}, config(), message("bob@tables.example"));
    const sigs = signatures(outcome);
    expect(sigs).toHaveLength(1);
    expect(sigs[0]).toMatch(/d=tables\.example;/);
    expect(sigs[0]).toMatch(/s=tbl;/);
    expect(logs).toContain("OFFLINE: DKIM-Signature field added (s=tbl, d=tables.example)");
  });

  it("can pick the key by the envelope sender instead of From", async () => {
    const cfg = config({}, { author: "mailfrom" });
    const sigs = signatures((await run({ sender: "bounce@tables.example" }, cfg)).outcome);
    expect(sigs[0]).toMatch(/d=tables\.example;/);
  });
});

describe("config check and reload", () => {
  it("refuses a key file others can read, naming the file and the fix", async () => {
    const loose = join(dir, "loose.private");
    writeFileSync(loose, "not used", { mode: 0o644 });
    await expect(buildAuthState(config({}, { keys: [{ domain: "example.com", selector: "x", keyFile: loose }] }))).rejects.toThrow(/loose\.private.*chmod 600/s);
  });

  it("lets a message in flight finish with the keys it started with", async () => {
    resolver?.close();
    resolver = buildResolver(config());
    const handler: AuthHandler = await buildAuthHandler(config(), resolver, pino({ level: "silent" }));
    const envelope = { clientAddress: "127.0.0.1", helo: "h", sender: "alice@example.com" };
    const connection = handler.openConnection({
      sessionId: "t",
      agreed: { version: 6, actions: 0x11, protocol: 0 },
      macros: { get: () => undefined, all: () => new Map() },
    });
    await connection.connect?.({ hostname: "[127.0.0.1]", family: "inet", address: "127.0.0.1", port: 4000 });
    const inFlight = await connection.startMessage([`<${envelope.sender}>`]);
    handler.reload(await buildAuthState(config({}, { keys: [{ domain: "example.com", selector: "2026e", keyFile: edKey }] })));
    const parsed = parseMessage(Buffer.from(message()));
    for (const h of parsed.headers) await inFlight.header?.(h.name, h.value);
    await inFlight.endOfHeaders?.();
    await inFlight.body?.(parsed.body);
    expect(signatures(await inFlight.endOfMessage())[0]).toMatch(/s=2026a;/);
    const next = await runMessage(handler, envelope, parsed);
    expect(signatures(next)[0]).toMatch(/s=2026e;/);
  });
});
