// `authmilter report aggregate` mailing for real: the command as a process, a private Postfix
// taking the reports over SMTP (and through its sendmail), the harness's sink receiving what
// Postfix relays, and a DNS server on loopback answering the external destination checks.

import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PublishedPolicy } from "../../src/reports/history.ts";
import { openHistoryStore } from "../../src/reports/history-sqlite.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";
import { freePort } from "../support/ports.ts";
import { startPostfix, type PostfixInstance } from "../support/postfix.ts";
import { e2eGate } from "../support/prereq.ts";
import type { SinkMessage } from "../support/smtp-sink.ts";
import { captureLogger, cli, message, tempDir } from "./helpers.ts";
import { header, parseMime } from "./mime.ts";

const gate = e2eGate({ tools: ["postfix", "postconf", "sendmail"], root: true });

const FILE = (domain: string) => `mx.receiver.example!${domain}!1714521600!1714607999.xml.gz`;

describe.skipIf(gate.skip)(`aggregate reports mailed through Postfix${gate.label}`, () => {
  let pf: PostfixInstance;
  let dns: DnsTestServer;
  let dir: string;
  let cleanup: () => Promise<void>;
  let db: string;
  let base: string[];

  beforeAll(async () => {
    gate.assertReady();
    ({ dir, cleanup } = await tempDir());
    db = join(dir, "history.sqlite");
    const store = openHistoryStore(db, { logger: captureLogger().logger });
    const policy = (domain: string, rua: string[]): PublishedPolicy => ({ domain, p: "quarantine", rua, ruf: [] });
    const add = (domain: string, rua: string[], count: number) => {
      for (let i = 0; i < count; i++) store.record(message({ headerFrom: domain, envelopeFrom: domain, policy: policy(domain, rua) }));
    };
    add("example.com", ["mailto:agg@example.com"], 3);
    add("authorized.example", ["mailto:dmarc@reports.example.net"], 2);
    add("unauthorized.example", ["mailto:dmarc@reports.example.net"], 1);
    add("tiny.example", ["mailto:agg@tiny.example!100"], 1);
    await store.close();

    dns = await startDnsServer({
      zone: {
        "_dmarc.reports.example.net": { TXT: "v=DMARC1; p=none" },
        "authorized.example._report._dmarc.reports.example.net": { TXT: "v=DMARC1" },
      },
    });
    pf = await startPostfix();
    base = [
      "report", "aggregate", "--since", "2024-05-01", "--until", "2024-05-02", "--db", db,
      "--org-name", "Receiver & Co", "--org-email", "dmarc-reports@mx.receiver.example", "--dns", dns.servers[0]!,
    ];
  });

  afterAll(async () => {
    await pf?.stop();
    await dns?.close();
    await cleanup?.();
  });

  /** The gzipped XML --dry-run writes for a domain. */
  async function dryRunXml(domain: string): Promise<string> {
    const out = join(dir, "dry");
    const r = await cli([...base, "--dry-run", "--out", out]);
    expect(r.code).toBe(0);
    expect(await readdir(out)).toContain(FILE(domain));
    return gunzipSync(await readFile(join(out, FILE(domain)))).toString("utf8");
  }

  function reportFor(messages: readonly SinkMessage[], domain: string): SinkMessage | undefined {
    return messages.find((m) => parseMime(m.raw).headers.some((h) => h.name === "Subject" && h.value.startsWith(`Report Domain: ${domain} `)));
  }

  it("mails each report over SMTP to its authorized rua= addresses and skips the others", async () => {
    const r = await cli([...base, "--smtp", `127.0.0.1:${pf.smtpPort}`]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${FILE("example.com")}: sent to agg@example.com via smtp://127.0.0.1:${pf.smtpPort}`);
    expect(r.stdout).toContain(`${FILE("authorized.example")}: sent to dmarc@reports.example.net`);
    expect(r.stdout).toMatch(/unauthorized\.example.*: not sent to mailto:dmarc@reports\.example\.net: external destination not authorized: no "v=DMARC1" TXT record at unauthorized\.example\._report\._dmarc\.reports\.example\.net/);
    expect(r.stdout).toMatch(/tiny\.example.*: not sent to mailto:agg@tiny\.example!100: the message has \d+ bytes, over the address's limit of 100/);
    expect(r.stdout).toMatch(/4 aggregate report\(s\) for .*: 2 message\(s\) sent, 2 destination\(s\) skipped, 0 failed/);

    const delivered = await pf.waitForDelivered(2);
    const mail = reportFor(delivered, "example.com");
    expect(mail).toBeDefined();
    expect(mail!.mailFrom).toBe("dmarc-reports@mx.receiver.example");
    expect(mail!.rcptTo).toEqual(["agg@example.com"]);

    const m = parseMime(mail!.raw);
    expect(header(m, "From")).toBe("dmarc-reports@mx.receiver.example");
    expect(header(m, "To")).toBe("agg@example.com");
    expect(header(m, "Subject")).toMatch(/^Report Domain: example\.com Submitter: mx\.receiver\.example Report-ID: <1714521600\.1714607999\.[0-9a-f]{16}>$/);
    expect(m.type).toBe("multipart/mixed");
    expect(m.parts.map((p) => p.type)).toEqual(["text/plain", "application/gzip"]);
    const attachment = m.parts[1]!;
    expect(attachment.params.get("name")).toBe(FILE("example.com"));
    expect(header(attachment, "Content-Disposition")).toBe(`attachment; filename="${FILE("example.com")}"`);
    const xml = gunzipSync(attachment.content).toString("utf8");
    expect(xml).toBe(await dryRunXml("example.com"));
    // The Subject's Report-ID is the report's report_id.
    expect(xml).toContain(`<report_id>${/Report-ID: <([^>]+)>/.exec(header(m, "Subject")!)![1]}</report_id>`);

    const external = reportFor(delivered, "authorized.example");
    expect(external?.rcptTo).toEqual(["dmarc@reports.example.net"]);
    expect(gunzipSync(parseMime(external!.raw).parts[1]!.content).toString("utf8")).toBe(await dryRunXml("authorized.example"));
    expect(reportFor(delivered, "unauthorized.example")).toBeUndefined();
  });

  it("mails through the local sendmail with --sendmail, from --from", async () => {
    const before = pf.delivered().length;
    const r = await cli([...base, "--sendmail", `/usr/sbin/sendmail -C ${pf.configDir}`, "--from", "bounces@mx.receiver.example"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${FILE("example.com")}: sent to agg@example.com via sendmail /usr/sbin/sendmail -C ${pf.configDir}`);
    const delivered = (await pf.waitForDelivered(before + 2)).slice(before);
    const mail = reportFor(delivered, "example.com");
    expect(mail?.mailFrom).toBe("bounces@mx.receiver.example");
    expect(mail?.rcptTo).toEqual(["agg@example.com"]);
    const m = parseMime(mail!.raw);
    expect(header(m, "From")).toBe("bounces@mx.receiver.example");
    expect(gunzipSync(m.parts[1]!.content).toString("utf8")).toBe(await dryRunXml("example.com"));
  });

  it("exits 75 and names each report it could not hand over when the relay is down", async () => {
    const port = await freePort();
    const r = await cli([...base, "--smtp", `127.0.0.1:${port}`]);
    expect(r.code).toBe(75);
    expect(r.stderr).toContain(`${FILE("example.com")}: sending to agg@example.com via smtp://127.0.0.1:${port} failed: cannot connect to 127.0.0.1:${port}`);
    expect(r.stdout).toMatch(/: 0 message\(s\) sent, 2 destination\(s\) skipped, 2 failed/);
  });

  it("refuses contradictory or malformed sending options with exit 64", async () => {
    const both = await cli([...base, "--smtp", "127.0.0.1:25", "--sendmail", "/usr/sbin/sendmail"]);
    expect(both.code).toBe(64);
    expect(both.stderr).toMatch(/give --smtp or --sendmail, not both/);
    const from = await cli([...base, "--from", "not an address"]);
    expect(from.code).toBe(64);
    expect(from.stderr).toMatch(/report sender "not an address" is not a plain mailbox address/);
    const dnsOption = await cli([...base, "--dns", "resolver.example"]);
    expect(dnsOption.code).toBe(64);
    expect(dnsOption.stderr).toMatch(/--dns: DNS server must be an IP address/);
  });
});
