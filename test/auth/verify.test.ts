// The verification matrix: real messages, signed with real keys, checked through our handler
// with every DNS answer coming over UDP/TCP from the loopback test DNS server.

import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dkimSign } from "mailauth/lib/dkim/sign.js";
import { buildAuthHandler, buildResolver } from "../../src/auth/build.ts";
import { parseMessage, runMessage, type Envelope } from "../../src/auth/offline.ts";
import { defaultConfig, type Config } from "../../src/config/schema.ts";
import type { Resolver } from "../../src/dns/index.ts";
import type { MessageOutcome } from "../../src/milter/handler.ts";
import { startDnsServer, type DnsTestServer, type Zone } from "../support/dns-server.ts";

interface TestKey {
  readonly pem: string;
  readonly record: string;
}

function rsaKey(bits: number): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: bits });
  return { pem: pem(privateKey), record: `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}` };
}

function ed25519Key(): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ type: "spki", format: "der" }).subarray(-32);
  return { pem: pem(privateKey), record: `v=DKIM1; k=ed25519; p=${raw.toString("base64")}` };
}

function pem(key: KeyObject): string {
  return key.export({ type: "pkcs8", format: "pem" }).toString();
}

const keys = {
  rsa1024: rsaKey(1024),
  rsa2048: rsaKey(2048),
  rsa4096: rsaKey(4096),
  ed: ed25519Key(),
  small: rsaKey(512),
};

const zone: Zone = {
  "r1024._domainkey.example.org": { TXT: keys.rsa1024.record },
  "r2048._domainkey.example.org": { TXT: [[keys.rsa2048.record.slice(0, 200), keys.rsa2048.record.slice(200)]] },
  "r4096._domainkey.example.org": { TXT: keys.rsa4096.record },
  "ed._domainkey.example.org": { TXT: keys.ed.record },
  "small._domainkey.example.org": { TXT: keys.small.record },
  "revoked._domainkey.example.org": { TXT: "v=DKIM1; k=rsa; p=" },
  "broken._domainkey.example.org": { TXT: "v=DKIM1; k=rsa; p=bm90IGEga2V5" },
  "servfail._domainkey.example.org": { behaviour: "servfail" },
  "r2048._domainkey.other.example": { TXT: keys.rsa2048.record },
  "example.org": { TXT: "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 include:_spf.example.net -all", MX: [10, "mx.example.org"] },
  "_spf.example.net": { TXT: "v=spf1 ip4:198.51.100.7 -all" },
  "_dmarc.example.org": { TXT: "v=DMARC1; p=quarantine" },
  "mail.example.org": { A: "192.0.2.1", TXT: "v=spf1 a -all" },
  "softfail.example": { TXT: "v=spf1 ~all" },
  "neutral.example": { TXT: "v=spf1 ?all" },
  "redirect.example": { TXT: "v=spf1 redirect=example.org" },
  "permerror.example": { TXT: "v=spf1 ip4:192.0.2.1 foo:bar -all" },
  "tempfail.example": { behaviour: "servfail" },
  "loop.example": { TXT: "v=spf1 include:l1.loop.example include:l2.loop.example include:l3.loop.example include:l4.loop.example include:l5.loop.example include:l6.loop.example -all" },
  ...Object.fromEntries([1, 2, 3, 4, 5, 6].map((i) => [`l${i}.loop.example`, { TXT: "v=spf1 a mx -all" }])),
  "void.example": { TXT: "v=spf1 a:n1.void.example a:n2.void.example a:n3.void.example -all" },
  "reject.example": { TXT: "v=spf1 -all" },
  "_dmarc.reject.example": { TXT: "v=DMARC1; p=reject" },
  "none.example": { TXT: "v=spf1 -all" },
  "_dmarc.none.example": { TXT: "v=DMARC1; p=none" },
  "strict.example": { TXT: "v=spf1 ip4:192.0.2.1 -all" },
  "_dmarc.strict.example": { TXT: "v=DMARC1; p=reject; aspf=s; adkim=s" },
  "sub.strict.example": { TXT: "v=spf1 ip4:192.0.2.1 -all" },
  "relaxed.example": { TXT: "v=spf1 -all" },
  "_dmarc.relaxed.example": { TXT: "v=DMARC1; p=reject" },
  "sub.relaxed.example": { TXT: "v=spf1 ip4:192.0.2.1 -all" },
  "parent.example": { TXT: "v=spf1 -all" },
  "_dmarc.parent.example": { TXT: "v=DMARC1; p=none; sp=reject; np=quarantine" },
  "exists.parent.example": { A: "192.0.2.99" },
  "nodmarc.example": { TXT: "v=spf1 ip4:192.0.2.1 -all" },
};

let dns: DnsTestServer;
let resolver: Resolver;

beforeAll(async () => {
  dns = await startDnsServer({ zone });
});
afterAll(async () => {
  resolver?.close();
  await dns.close();
});

function config(overrides: Partial<Config["verify"]> = {}): Config {
  const base = defaultConfig();
  return {
    ...base,
    authservId: "mx.example.net",
    internalHosts: ["127.0.0.1"],
    verify: { ...base.verify, softwareHeader: false, ...overrides },
    dns: { ...base.dns, servers: dns.servers },
  };
}

const plain = (from = "alice@example.org", extra = "") =>
  `From: Alice <${from}>\r\nTo: bob@example.net\r\nSubject: test\r\nDate: Thu, 26 Nov 2026 06:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\n${extra}\r\nHello Bob.\r\nSecond line.\r\n`;

async function sign(message: string, specs: Array<{ key: TestKey; selector: string; domain?: string; maxBodyLength?: number }>): Promise<string> {
  const result = await dkimSign(message, {
    signatureData: specs.map((s) => ({
      signingDomain: s.domain ?? "example.org",
      selector: s.selector,
      privateKey: s.key.pem,
      ...(s.maxBodyLength === undefined ? {} : { maxBodyLength: s.maxBodyLength }),
    })),
  } as never);
  expect(result.signatures).toContain("DKIM-Signature:");
  return result.signatures + message;
}

async function verify(message: string, envelope: Partial<Envelope> = {}, cfg = config()): Promise<MessageOutcome> {
  resolver?.close();
  resolver = buildResolver(cfg);
  const handler = await buildAuthHandler(cfg, resolver, pino({ level: "silent" }));
  return runMessage(
    handler,
    { clientAddress: "192.0.2.1", helo: "mail.example.org", sender: "alice@example.org", ...envelope },
    parseMessage(Buffer.from(message)),
  );
}

async function authResults(message: string, envelope: Partial<Envelope> = {}, cfg = config()): Promise<string> {
  return arOf(await verify(message, envelope, cfg));
}

function arOf(outcome: MessageOutcome): string {
  const ar = outcome.modifications.filter((m) => m.kind === "insheader" && m.name === "Authentication-Results");
  expect(ar).toHaveLength(1);
  return String((ar[0] as { value: string }).value).replace(/\n\t/g, " ");
}

describe("DKIM", () => {
  it.each([
    ["r1024", keys.rsa1024, "(1024-bit key) header.d=example.org header.i=@example.org header.a=rsa-sha256 header.s=r1024"],
    ["r2048", keys.rsa2048, "(2048-bit key) header.d=example.org header.i=@example.org header.a=rsa-sha256 header.s=r2048"],
    ["r4096", keys.rsa4096, "(4096-bit key) header.d=example.org header.i=@example.org header.a=rsa-sha256 header.s=r4096"],
    ["ed", keys.ed, "header.d=example.org header.i=@example.org header.a=ed25519-sha256 header.s=ed"],
  ])("passes a signature by key %s", async (selector, key, expected) => {
    const ar = await authResults(await sign(plain(), [{ key, selector }]));
    expect(ar).toMatch(new RegExp(`^mx\\.example\\.net; dkim=pass ${expected.replace(/[().]/g, "\\$&")} header\\.b=`));
  });

  it("passes both signatures of a dual-signed message", async () => {
    const ar = await authResults(await sign(plain(), [{ key: keys.rsa2048, selector: "r2048" }, { key: keys.ed, selector: "ed" }]));
    expect(ar.match(/dkim=pass/g)).toHaveLength(2);
  });

  it("fails a signature whose body was changed, naming the reason", async () => {
    const ar = await authResults((await sign(plain(), [{ key: keys.rsa2048, selector: "r2048" }])).replace("Second line.", "Second line!"));
    // The key is not fetched when the body hash already fails, so its size is unknown.
    expect(ar).toContain('dkim=fail reason="body hash did not verify" header.d=example.org');
  });

  it("fails a signature whose signed header was changed", async () => {
    const ar = await authResults((await sign(plain(), [{ key: keys.rsa2048, selector: "r2048" }])).replace("Subject: test", "Subject: tset"));
    expect(ar).toContain('dkim=fail reason="bad signature" (2048-bit key) header.d=example.org');
  });

  it("says none for an unsigned message", async () => {
    expect(await authResults(plain())).toMatch(/^mx\.example\.net; dkim=none; spf=pass/);
  });

  it("says neutral for a signature it cannot parse", async () => {
    const ar = await authResults(`DKIM-Signature: v=1; a=rsa-sha256; d=example.org; garbage\r\n${plain()}`);
    expect(ar).toMatch(/dkim=neutral reason=/);
  });

  it("says policy for a key below 1024 bits", async () => {
    expect(await authResults(await sign(plain(), [{ key: keys.small, selector: "small" }]))).toContain("dkim=policy");
  });

  it("says temperror when the key lookup fails temporarily", async () => {
    const ar = await authResults(await sign(plain(), [{ key: keys.rsa2048, selector: "servfail" }]));
    expect(ar).toMatch(/dkim=temperror reason="DNS failure: ESERVFAIL"/);
  });

  it.each([
    ["no key is published", "missing", "no key"],
    ["the key is revoked (empty p=)", "revoked", ""],
    ["the key record holds no usable key", "broken", "unknown key type"],
  ])("says permerror when %s", async (_, selector, why) => {
    const ar = await authResults(await sign(plain(), [{ key: keys.rsa2048, selector }]));
    expect(ar).toMatch(new RegExp(`dkim=permerror reason="${why}`));
  });

  it("passes an l= signature and still passes when text is appended after the signed length", async () => {
    const signed = await sign(plain(), [{ key: keys.rsa2048, selector: "r2048", maxBodyLength: 12 }]);
    expect(signed).toMatch(/l=12;/);
    expect(await authResults(signed.replace("Second line.\r\n", "Second line.\r\nAppended by a list.\r\n"))).toContain("dkim=pass");
  });

  it("reports every signature when there are several, good and bad", async () => {
    const good = await sign(plain(), [{ key: keys.rsa2048, selector: "r2048" }]);
    const bad = await sign(good, [{ key: keys.rsa1024, selector: "missing" }]);
    const ar = await authResults(bad);
    expect(ar).toContain("dkim=pass (2048-bit key)");
    expect(ar).toContain('dkim=permerror reason="no key"');
  });
});

describe("SPF", () => {
  it.each([
    ["an ip4 in the record", "alice@example.org", "192.0.2.1", "spf=pass smtp.mailfrom=example.org"],
    ["an ip6 in the record", "alice@example.org", "2001:db8::25", "spf=pass smtp.mailfrom=example.org"],
    ["an include", "alice@example.org", "198.51.100.7", "spf=pass smtp.mailfrom=example.org"],
    ["a redirect", "alice@redirect.example", "198.51.100.7", "spf=pass smtp.mailfrom=redirect.example"],
    ["-all", "alice@example.org", "203.0.113.9", "spf=fail smtp.mailfrom=example.org"],
    ["~all", "alice@softfail.example", "203.0.113.9", "spf=softfail smtp.mailfrom=softfail.example"],
    ["?all", "alice@neutral.example", "203.0.113.9", "spf=neutral smtp.mailfrom=neutral.example"],
    ["no record", "alice@norecord.example", "203.0.113.9", "spf=none smtp.mailfrom=norecord.example"],
    ["SERVFAIL", "alice@tempfail.example", "203.0.113.9", "spf=temperror smtp.mailfrom=tempfail.example"],
    ["an unknown mechanism", "alice@permerror.example", "203.0.113.9", "spf=permerror smtp.mailfrom=permerror.example"],
    ["more than 10 lookups", "alice@loop.example", "203.0.113.9", "spf=permerror smtp.mailfrom=loop.example"],
    ["more than 2 void lookups", "alice@void.example", "203.0.113.9", "spf=permerror smtp.mailfrom=void.example"],
  ])("checks MAIL FROM against %s", async (_, sender, ip, expected) => {
    expect(await authResults(plain(), { sender, clientAddress: ip })).toContain(expected);
  });

  it("checks the HELO identity too, and only it for the null sender", async () => {
    const both = await authResults(plain(), { sender: "alice@example.org" });
    expect(both).toContain("spf=pass smtp.mailfrom=example.org; spf=pass smtp.helo=mail.example.org");
    const bounce = await authResults(plain(), { sender: "" });
    expect(bounce).toContain("spf=pass smtp.helo=mail.example.org");
    expect(bounce).not.toContain("smtp.mailfrom");
  });
});

describe("DMARC", () => {
  it.each([
    ["passes on aligned SPF", "alice@example.org", plain(), "dmarc=pass (p=QUARANTINE dis=none) header.from=example.org"],
    ["fails under p=reject", "x@reject.example", plain("ceo@reject.example"), "dmarc=fail (p=REJECT dis=none) header.from=reject.example"],
    ["fails under p=none", "x@none.example", plain("ceo@none.example"), "dmarc=fail (p=NONE dis=none) header.from=none.example"],
    ["fails strict SPF alignment for a subdomain", "x@sub.strict.example", plain("ceo@strict.example"), "dmarc=fail (p=REJECT dis=none) header.from=strict.example"],
    ["passes relaxed SPF alignment for a subdomain", "x@sub.relaxed.example", plain("ceo@relaxed.example"), "dmarc=pass (p=REJECT dis=none) header.from=relaxed.example"],
    ["has none without a record", "x@nodmarc.example", plain("ceo@nodmarc.example"), "dmarc=none header.from=nodmarc.example"],
  ])("%s", async (_, sender, message, expected) => {
    expect(await authResults(message, { sender })).toContain(expected);
  });

  it("passes on an aligned DKIM signature when SPF fails", async () => {
    const ar = await authResults(await sign(plain(), [{ key: keys.rsa2048, selector: "r2048" }]), { clientAddress: "203.0.113.9" });
    expect(ar).toContain("spf=fail smtp.mailfrom=example.org");
    expect(ar).toContain("dmarc=pass (p=QUARANTINE dis=none) header.from=example.org");
  });

  it("fails when the only signature is by an unaligned domain", async () => {
    const ar = await authResults(await sign(plain(), [{ key: keys.rsa2048, selector: "r2048", domain: "other.example" }]), { clientAddress: "203.0.113.9" });
    expect(ar).toContain("dkim=pass (2048-bit key) header.d=other.example");
    expect(ar).toContain("dmarc=fail (p=QUARANTINE dis=none) header.from=example.org");
  });

  it("applies sp= to an existing subdomain and np= to a non-existent one", async () => {
    const logs: string[] = [];
    const cfg = config();
    resolver?.close();
    resolver = buildResolver(cfg);
    const logger = pino({ level: "info" }, { write: (l: string) => void logs.push(JSON.parse(l).msg) });
    const handler = await buildAuthHandler(cfg, resolver, logger);
    for (const from of ["ceo@exists.parent.example", "ceo@ghost.parent.example"]) {
      await runMessage(handler, { clientAddress: "203.0.113.9", helo: "mail.example.org", sender: "x@parent.example" }, parseMessage(Buffer.from(plain(from))));
    }
    expect(logs).toContain("OFFLINE: DMARC exists.parent.example fail (p=none)");
    // The applied policy is in mailauth's result; the A-R shows the record's p= as opendmarc does.
    const sub = await authResults(plain("ceo@exists.parent.example"), { sender: "x@parent.example", clientAddress: "203.0.113.9" });
    expect(sub).toContain("dmarc=fail (p=NONE dis=none) header.from=exists.parent.example");
  });
});

describe("sanitizing", () => {
  const forged = (id: string) => `Authentication-Results: ${id}; dkim=pass header.d=example.org\r\n`;

  it("removes A-R headers claiming our authserv-id, in any case, last first", async () => {
    const message = forged("mx.example.net") + forged("other.example") + forged("MX.Example.NET") + plain();
    const outcome = await verify(message);
    const removals = outcome.modifications.filter((m) => m.kind === "chgheader");
    expect(removals).toEqual([
      { kind: "chgheader", index: 3, name: "Authentication-Results", value: "" },
      { kind: "chgheader", index: 1, name: "Authentication-Results", value: "" },
    ]);
  });

  it("keeps a trusted upstream's A-R and takes its SPF result for DMARC when self-validation is off", async () => {
    const upstream = "Authentication-Results: relay.example.net; spf=pass smtp.mailfrom=x@example.org\r\n";
    const cfg = config({ spfSelfValidate: false, trustedAuthservIds: ["relay.example.net"] });
    const outcome = await verify(upstream + plain(), { clientAddress: "203.0.113.9" }, cfg);
    expect(outcome.modifications.some((m) => m.kind === "chgheader")).toBe(false);
    const ar = arOf(outcome);
    expect(ar).toContain("dmarc=pass");
    expect(ar).not.toContain("spf=");
  });

  it("ignores a trusted upstream's SPF when told to", async () => {
    const upstream = "Authentication-Results: relay.example.net; spf=pass smtp.mailfrom=x@example.org\r\n";
    const cfg = config({ spfSelfValidate: true, spfIgnoreResults: true, trustedAuthservIds: ["relay.example.net"] });
    expect(await authResults(upstream + plain(), { clientAddress: "203.0.113.9" }, cfg)).toContain("dmarc=fail");
  });
});

describe("who is verified", () => {
  it("does not verify internal clients", async () => {
    const outcome = await verify(plain(), { clientAddress: "127.0.0.1" });
    expect(outcome.modifications).toEqual([]);
  });

  it("does not verify authenticated clients unless told to", async () => {
    expect((await verify(plain(), { authUser: "alice" })).modifications).toEqual([]);
    const ar = await authResults(plain(), { authUser: "alice" }, config({ ignoreAuthenticatedClients: false }));
    expect(ar).toContain("spf=pass");
  });
});
