// mailauth decides none / temperror / permerror from our error codes; these run its real
// SPF, DKIM and DMARC code against the test server through our resolver.
import { generateKeyPairSync } from "node:crypto";
import { dkimSign, dkimVerify, dmarc, spf, type DKIMSignOptions } from "mailauth";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createResolver, type Resolver } from "../../src/dns/index.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";

const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const keyRecord = `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`;

let dns: DnsTestServer;
let resolver: Resolver;

beforeAll(async () => {
  dns = await startDnsServer({
    zone: {
      "example.org": { TXT: ["v=spf1 ip4:192.0.2.10 mx -all", "unrelated"], MX: [10, "mail.example.org"] },
      "mail.example.org": { A: "192.0.2.20" },
      "servfail.example.org": { behaviour: "servfail" },
      "timeout.example.org": { behaviour: "timeout" },
      "voids.example.org": { TXT: "v=spf1 a:n1.example.org a:n2.example.org a:n3.example.org -all" },
      // A 2048-bit key is longer than 255 octets: the server splits it, mailauth joins it.
      "sel._domainkey.example.org": { TXT: keyRecord },
      "broken._domainkey.example.org": { behaviour: "servfail" },
      "_dmarc.example.org": { TXT: "v=DMARC1; p=reject" },
      "_dmarc.flaky.example.org": { behaviour: "servfail" },
    },
  });
});
afterAll(async () => {
  await dns.close();
});
afterEach(() => {
  resolver?.close();
});

// Only lookups that are meant to time out should ever hit the timeout, so keep it generous.
function make(timeoutMs = 2000) {
  resolver = createResolver({ servers: dns.servers, timeoutMs, tries: 1 });
  return resolver.mailauth;
}

const check = (sender: string, ip: string, timeoutMs?: number) =>
  spf({ sender, ip, helo: "client.example.net", mta: "mx.test", resolver: make(timeoutMs), strict: true });

describe("SPF (RFC 7208)", () => {
  it("passes by ip4", async () => {
    expect((await check("a@example.org", "192.0.2.10")).status.result).toBe("pass");
  });

  it("passes by mx, which needs the MX and then the A lookup", async () => {
    expect((await check("a@example.org", "192.0.2.20")).status.result).toBe("pass");
  });

  it("fails an address that is not listed", async () => {
    expect((await check("a@example.org", "198.51.100.1")).status.result).toBe("fail");
  });

  it("is none for NXDOMAIN (ENOTFOUND means no record, 4.3)", async () => {
    expect((await check("a@nowhere.example.org", "192.0.2.10")).status.result).toBe("none");
  });

  it("is temperror for SERVFAIL (ESERVFAIL, 2.6.6)", async () => {
    const res = await check("a@servfail.example.org", "192.0.2.10");
    expect(res.status.result).toBe("temperror");
  });

  it("is temperror for a timeout (ETIMEOUT)", async () => {
    expect((await check("a@timeout.example.org", "192.0.2.10", 100)).status.result).toBe("temperror");
  });

  it("is permerror after more than two void lookups (ENOTFOUND counts as void, 4.6.4)", async () => {
    expect((await check("a@voids.example.org", "198.51.100.1")).status.result).toBe("permerror");
  });

  it("leaves resolver internals out of the Received-SPF comment", async () => {
    const res = await check("a@servfail.example.org", "192.0.2.10");
    expect(res.header).not.toContain("127.0.0.1");
  });
});

describe("DKIM (RFC 6376) and DMARC (RFC 7489)", () => {
  const message = "From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\nHello\r\n";

  async function signed(selector: string) {
    // The typed top-level form produces no signature (mailauth-notes.md, "Typing bug").
    const opts = { signatureData: [{ signingDomain: "example.org", selector, privateKey: privateKey.export({ type: "pkcs8", format: "pem" }) }] };
    const { signatures } = await dkimSign(message, opts as unknown as DKIMSignOptions);
    expect(signatures).toContain("DKIM-Signature");
    return signatures + message;
  }

  it("verifies a signature with a multi-chunk key record", async () => {
    const res = await dkimVerify(await signed("sel"), { resolver: make() });
    expect(res.results[0]?.status.result).toBe("pass");
  });

  it("is temperror when the key lookup fails with SERVFAIL", async () => {
    const res = await dkimVerify(await signed("broken"), { resolver: make() });
    expect(res.results[0]?.status.result).toBe("temperror");
  });

  it("says no key (neutral in mailauth) when the key record does not exist", async () => {
    const res = await dkimVerify(await signed("missing"), { resolver: make() });
    expect(res.results[0]?.status).toMatchObject({ result: "neutral", comment: "no key" });
  });

  it("finds the organizational policy through NXDOMAIN answers below it", async () => {
    const res = await dmarc({ headerFrom: "a@deep.sub.example.org", spfDomains: [], dkimDomains: [], resolver: make() });
    expect(res && res.status.result).toBe("fail");
    expect(res && res.policy).toBe("reject");
  });

  it("is temperror when the policy lookup fails", async () => {
    const res = await dmarc({ headerFrom: "a@flaky.example.org", spfDomains: [], dkimDomains: [], resolver: make() });
    expect(res && res.status.result).toBe("temperror");
  });
});
