// Acting on results: RequiredHeaders, DMARC enforcement, failure actions, limits and the
// per-message deadline — through the daemon's handler, DNS from the loopback test server.

import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseMailboxList } from "../../src/auth/address.ts";
import { buildAuthHandler, buildAuthState, buildResolver } from "../../src/auth/build.ts";
import { parseMessage, runMessage, type Envelope } from "../../src/auth/offline.ts";
import { brokenHeaderRule } from "../../src/auth/required-headers.ts";
import { defaultConfig, type Config } from "../../src/config/schema.ts";
import type { Resolver } from "../../src/dns/index.ts";
import type { MessageOutcome } from "../../src/milter/handler.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";

let dns: DnsTestServer;
let resolver: Resolver | undefined;
beforeAll(async () => {
  dns = await startDnsServer({
    zone: {
      "reject.example": { TXT: "v=spf1 -all" },
      "_dmarc.reject.example": { TXT: "v=DMARC1; p=reject" },
      "quarantine.example": { TXT: "v=spf1 -all" },
      "_dmarc.quarantine.example": { TXT: "v=DMARC1; p=quarantine" },
      "half.example": { TXT: "v=spf1 -all" },
      "_dmarc.half.example": { TXT: "v=DMARC1; p=reject; pct=50" },
      "testing.example": { TXT: "v=spf1 -all" },
      "_dmarc.testing.example": { TXT: "v=DMARC1; p=reject; t=y" },
      "ok.example": { TXT: "v=spf1 ip4:192.0.2.1 -all" },
      "_dmarc.ok.example": { TXT: "v=DMARC1; p=reject" },
      "slow.example": { behaviour: "timeout" },
      "_dmarc.slow.example": { behaviour: "timeout" },
      "broken.example": { behaviour: "servfail" },
      "_dmarc.broken.example": { behaviour: "servfail" },
    },
  });
});
afterAll(async () => {
  resolver?.close();
  await dns.close();
});

interface Overrides {
  policy?: Partial<Config["policy"]["dmarc"]> & { requiredHeaders?: boolean };
  actions?: Partial<Config["actions"]>;
  limits?: Partial<Config["limits"]>;
  random?: number;
  dnsTimeoutMs?: number;
}

async function run(raw: string, envelope: Partial<Envelope> = {}, o: Overrides = {}): Promise<{ outcome: MessageOutcome; logs: string[] }> {
  const base = defaultConfig();
  const { requiredHeaders, ...dmarc } = o.policy ?? {};
  const cfg: Config = {
    ...base,
    authservId: "mx.example.net",
    verify: { ...base.verify, softwareHeader: false },
    policy: { requiredHeaders: requiredHeaders ?? true, dmarc: { ...base.policy.dmarc, ...dmarc } },
    actions: { ...base.actions, ...o.actions },
    limits: { ...base.limits, ...o.limits },
    dns: { ...base.dns, servers: dns.servers, timeoutMs: o.dnsTimeoutMs ?? 2_000, tries: 1 },
  };
  resolver?.close();
  resolver = buildResolver(cfg);
  const logs: string[] = [];
  const logger = pino({ level: "info" }, { write: (l: string) => void logs.push(JSON.parse(l).msg) });
  const handler = await buildAuthHandler(cfg, resolver, logger);
  if (o.random !== undefined) {
    const state = await buildAuthState(cfg);
    handler.reload({ ...state, settings: { ...state.settings, random: () => o.random! } });
  }
  const outcome = await runMessage(handler, { clientAddress: "192.0.2.1", helo: "mail.example.org", sender: "x@ok.example", ...envelope }, parseMessage(Buffer.from(raw)));
  return { outcome, logs };
}

const message = (from: string, extra = "") =>
  `From: <${from}>\r\nTo: bob@example.net\r\nSubject: s\r\nDate: Thu, 26 Nov 2026 06:00:00 +0000\r\nMessage-ID: <p@x>\r\n${extra}\r\nbody\r\n`;

const decisionOf = (o: MessageOutcome) => o.decision;
const arOf = (o: MessageOutcome) =>
  String((o.modifications.find((m) => m.kind === "insheader" && m.name === "Authentication-Results") as { value?: string } | undefined)?.value ?? "").replace(/\n\t/g, " ");

describe("RequiredHeaders", () => {
  it.each([
    ["no From", "To: b@x\r\nDate: Thu, 26 Nov 2026 06:00:00 +0000\r\n\r\nbody\r\n", "the message has no From field"],
    ["two From fields", message("a@ok.example", "From: <b@ok.example>\r\n"), "the message has 2 From fields, RFC 5322 allows one"],
    ["a From without a domain", "From: alice\r\nDate: Thu, 26 Nov 2026 06:00:00 +0000\r\n\r\nx\r\n", "the From field holds no address with a domain"],
    ["From group syntax with no address", "From: Undisclosed:;\r\nDate: Thu, 26 Nov 2026 06:00:00 +0000\r\n\r\nx\r\n", "the From field holds no address with a domain"],
    ["From addresses in two domains", "From: a@one.example, b@two.example\r\nDate: Thu, 26 Nov 2026 06:00:00 +0000\r\n\r\nx\r\n", "the From field names addresses in 2 domains; its author cannot be determined"],
    ["no Date", "From: a@ok.example\r\n\r\nx\r\n", "the message has no Date field"],
    ["two Subjects", message("a@ok.example", "Subject: again\r\n"), "the message has 2 Subject fields, RFC 5322 allows at most one"],
  ])("rejects a message with %s, naming the rule", async (_, raw, rule) => {
    const { outcome, logs } = await run(raw);
    expect(decisionOf(outcome)).toEqual({ kind: "replycode", code: "550", status: "5.7.1", text: rule });
    expect(logs).toContain(`OFFLINE: RequiredHeaders: ${rule}`);
  });

  it("lets two From addresses of one domain through", async () => {
    const raw = "From: a@ok.example, b@OK.example\r\nSender: a@ok.example\r\nDate: Thu, 26 Nov 2026 06:00:00 +0000\r\n\r\nx\r\n";
    expect(decisionOf((await run(raw)).outcome)).toEqual({ kind: "continue" });
  });

  it("can be turned off", async () => {
    expect(decisionOf((await run("From: a@ok.example\r\n\r\nx\r\n", {}, { policy: { requiredHeaders: false } })).outcome)).toEqual({ kind: "continue" });
  });

  it("exempts internal clients", async () => {
    expect(decisionOf((await run("From: nobody\r\n\r\nx\r\n", { clientAddress: "127.0.0.1" })).outcome)).toEqual({ kind: "continue" });
  });
});

describe("DMARC enforcement", () => {
  it("only reports when not enforced", async () => {
    const { outcome } = await run(message("ceo@reject.example"), { sender: "x@reject.example" });
    expect(decisionOf(outcome)).toEqual({ kind: "continue" });
    expect(arOf(outcome)).toContain("dmarc=fail (p=REJECT dis=none) header.from=reject.example");
  });

  it("rejects a p=reject failure naming the domain", async () => {
    const { outcome, logs } = await run(message("ceo@reject.example"), { sender: "x@reject.example" }, { policy: { enforce: true } });
    expect(decisionOf(outcome)).toEqual({ kind: "replycode", code: "550", status: "5.7.1", text: "rejected by the DMARC policy of reject.example" });
    expect(arOf(outcome)).toContain("dis=reject");
    expect(logs).toContain("OFFLINE: DMARC reject.example disposition reject");
  });

  it("holds a p=quarantine failure, or only marks it", async () => {
    const held = (await run(message("ceo@quarantine.example"), {}, { policy: { enforce: true } })).outcome;
    expect(held.quarantine).toBe("DMARC policy of quarantine.example");
    expect(decisionOf(held)).toEqual({ kind: "continue" });
    const marked = (await run(message("ceo@quarantine.example"), {}, { policy: { enforce: true, quarantine: "mark" } })).outcome;
    expect(marked.quarantine).toBeUndefined();
    expect(arOf(marked)).toContain("dmarc=fail (p=QUARANTINE dis=quarantine)");
  });

  it("samples pct=: inside the sample the policy applies, outside it the next weaker one", async () => {
    const inside = (await run(message("ceo@half.example"), {}, { policy: { enforce: true }, random: 0.2 })).outcome;
    expect(decisionOf(inside)).toMatchObject({ kind: "replycode", code: "550" });
    const outside = (await run(message("ceo@half.example"), {}, { policy: { enforce: true }, random: 0.7 })).outcome;
    expect(outside.quarantine).toBe("DMARC policy of half.example");
    expect(arOf(outside)).toContain("dis=quarantine");
  });

  it("weakens reject to quarantine for t=y (RFC 9989 testing)", async () => {
    const { outcome } = await run(message("ceo@testing.example"), {}, { policy: { enforce: true } });
    expect(outcome.quarantine).toBe("DMARC policy of testing.example");
  });

  it("does not act for ignored domains or hosts, nor on a pass", async () => {
    for (const [o, env] of [
      [{ policy: { enforce: true, ignoreDomains: ["reject.example"] } }, {}],
      [{ policy: { enforce: true, ignoreHosts: ["192.0.2.0/24"] } }, {}],
    ] as const) {
      expect(decisionOf((await run(message("ceo@reject.example"), env, o)).outcome)).toEqual({ kind: "continue" });
    }
    expect(decisionOf((await run(message("ceo@ok.example"), {}, { policy: { enforce: true } })).outcome)).toEqual({ kind: "continue" });
  });
});

describe("failure actions", () => {
  it("tempfails when the DNS the verdict needs fails, so the sender retries", async () => {
    const { outcome, logs } = await run(message("ceo@broken.example"), { sender: "x@broken.example" });
    expect(decisionOf(outcome)).toEqual({ kind: "replycode", code: "451", status: "4.7.1", text: "authmilter: a DNS lookup failed; try again later" });
    expect(logs).toContain("OFFLINE: a DNS lookup failed: tempfail");
  });

  it("applies the configured action to a message without a signature", async () => {
    const { outcome } = await run(message("ceo@ok.example"), {}, { actions: { noSignature: "quarantine" } });
    expect(outcome.quarantine).toBe("no DKIM signature");
  });

  it("ends slow DNS at the message deadline with the DNS-error action", async () => {
    const { outcome, logs } = await run(message("ceo@slow.example"), { sender: "x@slow.example" }, { limits: { messageTimeoutMs: 300 }, dnsTimeoutMs: 5_000 });
    expect(decisionOf(outcome)).toMatchObject({ kind: "replycode", code: "451" });
    expect(logs.some((l) => l.includes("verification took longer than 300 ms"))).toBe(true);
  });
});

describe("limits", () => {
  it("gives a message with too many header fields the security-concern action", async () => {
    const many = Array.from({ length: 50 }, (_, i) => `X-H${i}: v\r\n`).join("");
    const { outcome, logs } = await run(message("ceo@ok.example", many), {}, { limits: { maxHeaders: 20 } });
    expect(decisionOf(outcome)).toMatchObject({ kind: "replycode", code: "451", text: "authmilter: more than 20 header fields; try again later" });
    expect(logs).toContain("OFFLINE: more than 20 header fields; not examined further");
  });

  it("gives an oversized body the security-concern action, here accept", async () => {
    const raw = message("ceo@ok.example").replace("body\r\n", "x".repeat(5000) + "\r\n");
    const { outcome } = await run(raw, {}, { limits: { maxMessageBytes: 1024 }, actions: { securityConcern: "accept" } });
    expect(decisionOf(outcome)).toEqual({ kind: "continue" });
  });

  it("verifies only the first signatures and says so", async () => {
    const sigs = Array.from({ length: 8 }, (_, i) => `DKIM-Signature: v=1; a=rsa-sha256; d=ok.example; s=s${i}; h=from; bh=x; b=y\r\n`).join("");
    const { outcome, logs } = await run(sigs + message("ceo@ok.example"), {}, { limits: { maxSignatures: 3 } });
    expect(arOf(outcome).match(/dkim=/g)).toHaveLength(3);
    expect(logs).toContain("OFFLINE: 5 DKIM signature(s) beyond limits.maxSignatures not verified");
  });
});

describe("parseMailboxList", () => {
  it.each([
    ['"Doe, John" <john@Example.COM>', ["john@example.com"], false],
    ["a@x.example, (comment, with comma) b@y.example", ["a@x.example", "b@y.example"], false],
    ["team: a@x.example, b@x.example;", ["a@x.example", "b@x.example"], true],
    ["Undisclosed recipients:;", [], true],
    ["<@route.example:user@host.example>", ["user@host.example"], false],
    ['"quoted@not-an-address" <real@example.org>', ["real@example.org"], false],
    ["no address here", [], false],
    ["<>", [], false],
    ["a@", [], false],
    ["@b", [], false],
    ["x".repeat(100_000) + "@example.org", [], false],
  ])("%j → %j", (value, mailboxes, group) => {
    expect(parseMailboxList(value)).toEqual({ mailboxes, group });
  });

  it("never throws on random bytes", () => {
    let seed = 42;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let i = 0; i < 2000; i++) {
      const value = String.fromCharCode(...Array.from({ length: next() % 80 }, () => next() % 128));
      expect(() => parseMailboxList(value)).not.toThrow();
      expect(() => brokenHeaderRule({ counts: new Map([["from", 1], ["date", 1]]), fromValues: [value] })).not.toThrow();
    }
  });
});
