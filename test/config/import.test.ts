// `authmilter import` as a library: opendkim.conf/opendmarc.conf read as those programs read them,
// every option mapped or listed with its reason, and the YAML written loadable by our own loader
// (and, where it names keys, by buildAuthState).

import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { buildAuthState } from "../../src/auth/build.ts";
import { readConfFile, parseConfBoolean, parseConfInteger } from "../../src/config/import-conf.ts";
import { OPENDKIM_OPTIONS } from "../../src/config/import-options.ts";
import { ConfReadError, ImportError, importConfigs, postfixMilter, type ImportResult } from "../../src/config/import.ts";
import { parseConfig } from "../../src/config/load.ts";
import { matchesHost } from "../../src/keys/hosts.ts";
import { DEFAULT_HISTORY_PATH } from "../../src/reports/history.ts";
import { generateKey } from "../../src/keys/genkey.ts";
import { DEBIAN_OPENDKIM, DEBIAN_OPENDMARC, prepareMulti, type MultiSetup } from "../fixtures/import/multi.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "authmilter-import-unit-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes the given files into the temp dir and imports the opendkim/opendmarc ones. */
async function importTexts(files: { opendkim?: string; opendmarc?: string; [name: string]: string | undefined }, hostname = "mx1.example.com"): Promise<ImportResult> {
  for (const [name, text] of Object.entries(files)) {
    if (text === undefined) continue;
    const path = join(dir, name === "opendkim" ? "opendkim.conf" : name === "opendmarc" ? "opendmarc.conf" : name);
    await mkdir(join(path, ".."), { recursive: true });
    await writeFile(path, text.replaceAll("@DIR@", dir));
  }
  return importConfigs({
    ...(files.opendkim !== undefined && { opendkim: join(dir, "opendkim.conf") }),
    ...(files.opendmarc !== undefined && { opendmarc: join(dir, "opendmarc.conf") }),
    hostname,
  });
}

const unmappedNames = (r: ImportResult) => r.unmapped.map((u) => u.option);
const reasonOf = (r: ImportResult, option: string) => r.unmapped.find((u) => u.option === option)?.reason;
const notesText = (r: ImportResult) => r.notes.map((n) => `${n.where ?? ""} ${n.text}`).join("\n");

describe("reading opendkim.conf / opendmarc.conf like the programs do", () => {
  it("names match case-insensitively, values lose surrounding blanks, # and CR end a line, the last setting wins", async () => {
    const path = join(dir, "a.conf");
    await writeFile(path, "# comment\n\n  canonicalization \t relaxed/simple   # trailing\r\nMODE sv\r\nMode\t\ts\nSocket inet:8891@localhost#x\n");
    const conf = await readConfFile(path, "opendkim", OPENDKIM_OPTIONS);
    expect(conf.get("Canonicalization")).toMatchObject({ name: "Canonicalization", value: "relaxed/simple", line: 3 });
    expect(conf.get("mode")).toMatchObject({ name: "Mode", value: "s", line: 5 });
    expect(conf.all("Mode").map((e) => e.value)).toEqual(["sv", "s"]);
    expect(conf.get("Socket")?.value).toBe("inet:8891@localhost");
    expect(conf.problems).toEqual([]);
  });

  it("booleans are judged by their first character, integers as strtol(..., 0) reads them", () => {
    for (const v of ["yes", "Yes", "true", "T", "1"]) expect(parseConfBoolean(v)).toBe(true);
    for (const v of ["no", "False", "n", "0"]) expect(parseConfBoolean(v)).toBe(false);
    expect(parseConfBoolean("maybe")).toBeUndefined();
    expect(parseConfInteger("007")).toBe(7);
    expect(parseConfInteger("0022")).toBe(0o22);
    expect(parseConfInteger("22")).toBe(22);
    expect(parseConfInteger("0x1F")).toBe(31);
    expect(parseConfInteger("-3")).toBe(-3);
    expect(parseConfInteger("08")).toBeUndefined();
    expect(parseConfInteger("5s")).toBeUndefined();
  });

  it("lines opendkim would refuse become problems; unknown names are kept as written; Include is read in place", async () => {
    await writeFile(join(dir, "inc.conf"), "Canonicalization simple\nSyslog yes\n");
    const path = join(dir, "a.conf");
    await writeFile(path, "Canonicalization relaxed\nInclude inc.conf\nSyslog maybe\nMode\nFrobnicate 3\nUMask 08\n");
    const conf = await readConfFile(path, "opendkim", OPENDKIM_OPTIONS);
    // The included file comes after line 1, so its Canonicalization wins.
    expect(conf.get("Canonicalization")).toMatchObject({ value: "simple", file: join(dir, "inc.conf"), line: 1 });
    expect(conf.get("Syslog")?.value).toBe("yes");
    expect(conf.get("Frobnicate")).toMatchObject({ name: "Frobnicate", value: "3" });
    expect(conf.problems.map((p) => `${p.line}: ${p.message}`)).toEqual([
      '3: Syslog maybe: not a boolean (yes/no, true/false, 1/0); opendkim refuses this ("illegal value")',
      '4: Mode has no value; opendkim refuses this ("required value missing")',
      '6: UMask 08: not an integer; opendkim refuses this ("illegal value")',
    ]);
  });

  it("an input that cannot be read is a ConfReadError; no input at all is an ImportError", async () => {
    await expect(importConfigs({ opendkim: join(dir, "missing.conf") })).rejects.toThrow(ConfReadError);
    await expect(importConfigs({ opendkim: join(dir, "missing.conf") })).rejects.toThrow(/missing\.conf: cannot read: no such file/);
    await expect(importConfigs({})).rejects.toThrow(ImportError);
  });
});

describe("a multi-domain installation: five domains, KeyTable, refile SigningTable, TrustedHosts, opendmarc enforcing", () => {
  let m: MultiSetup;
  let r: ImportResult;
  beforeAll(async () => {
    m = await prepareMulti();
    r = await importConfigs({ opendkim: m.opendkim, opendmarc: m.opendmarc, hostname: "mail" });
  });
  afterAll(async () => {
    await m.cleanup();
  });

  it("maps every option that has an equivalent", () => {
    const etc = `${m.root}/etc`;
    const trusted = ["127.0.0.1", "::1", "localhost", "192.168.10.0/24", "10.20.0.5", ".example.com"];
    expect(r.values).toEqual({
      mode: "sign+verify",
      authservId: "mail.example.com",
      internalHosts: trusted,
      externalIgnoreList: trusted,
      signing: {
        keyTable: `${etc}/opendkim/key.table`,
        signingTable: `refile:${etc}/opendkim/signing.table`,
        multipleSignatures: true,
        requireSafeKeys: true,
        minimumKeyBits: 1024,
        submissionDaemons: ["ORIGINATING"],
        oversign: ["From"],
        canonicalization: "relaxed/simple",
      },
      verify: { spfSelfValidate: true, trustedAuthservIds: ["mx-backup.example.net"], spfIgnoreResults: true, ignoreAuthenticatedClients: true },
      policy: { requiredHeaders: true, dmarc: { enforce: true, quarantine: "mark", ignoreHosts: ["127.0.0.1", "192.168.10.0/24"] } },
      actions: { dnsError: "tempfail", internalError: "tempfail", badSignature: "accept", noSignature: "accept", securityConcern: "reject" },
      limits: { maxSignatures: 3 },
      dns: { servers: ["127.0.0.1"], timeout: "5s" },
      milter: { socket: "inet:8891@localhost", socketUmask: "0007" },
      log: { syslog: "/dev/log", success: true, why: true },
      reports: { history: DEFAULT_HISTORY_PATH },
    });
  });

  it("lists every option it did not carry over, each with its reason", () => {
    expect(r.unmapped.map((u) => `${u.program} ${u.option}`)).toEqual([
      "opendkim SubDomains",
      "opendkim AutoRestart",
      "opendkim AutoRestartRate",
      "opendkim Background",
      "opendkim UserID",
      "opendkim PidFile",
      "opendkim TrustAnchorFile",
      "opendmarc PidFile",
      "opendmarc FailureReports",
      "opendmarc UMask",
      "opendmarc UserID",
      "opendmarc PublicSuffixList",
    ]);
    expect(reasonOf(r, "SubDomains")).toBe("opendkim ignores it because KeyTable is set");
    expect(reasonOf(r, "AutoRestart")).toMatch(/systemd .*Restart=on-failure/);
    expect(reasonOf(r, "TrustAnchorFile")).toMatch(/DNSSEC/);
    expect(reasonOf(r, "FailureReports")).toMatch(/^reports: /);
    expect(r.unmapped.find((u) => u.program === "opendmarc" && u.option === "UMask")?.reason).toMatch(/opendmarc's socket/);
    expect(r.unmapped.find((u) => u.option === "TrustAnchorFile")?.where).toBe(`${m.opendkim}:45`);
  });

  it("explains what changed: the dropped own authserv-id, the socket that wins, refile patterns", () => {
    const notes = notesText(r);
    expect(notes).toContain("TrustedAuthservIDs: mail.example.com left out: they are this host's own ids");
    expect(notes).toContain("keeps opendkim's because Postfix already sends mail to it. Remove inet:localhost:54321 from smtpd_milters and non_smtpd_milters");
    expect(notes).toContain('InternalHosts pattern "*.example.com" written as ".example.com"');
    expect(notes).toContain(`${m.opendmarc}:11 HistoryFile /run/opendmarc/opendmarc.dat: opendmarc's text history is not imported`);
    expect(notes).toContain("`authmilter report aggregate`");
    // Both programs logged to syslog with SyslogSuccess on: nothing to warn about.
    expect(notes).not.toContain("log.success is false");
  });

  it("writes YAML that our loader accepts, with a header naming the sources and the unmapped options as comments", () => {
    const config = parseConfig(r.yaml, "imported.yaml");
    expect(config.milter.socketUmask).toBe(0o007);
    expect(config.dns.timeoutMs).toBe(5000);
    expect(config.authservId).toBe("mail.example.com");
    expect(r.yaml).toMatch(/^# authmilter configuration written by `authmilter import`/);
    expect(r.yaml).toContain(`#   opendkim:  ${m.opendkim}\n#   opendmarc: ${m.opendmarc}\n`);
    expect(r.yaml).toContain(`# Not carried over (${r.unmapped.length}):`);
    for (const u of r.unmapped) expect(r.yaml).toContain(`#   ${u.where}: ${u.option} ${u.value}\n#       ${u.reason}\n`);
    expect(r.yaml).toContain(`  # Canonicalization relaxed/simple (${m.opendkim}:8)\n  canonicalization: relaxed/simple\n`);
    expect(config.log).toMatchObject({ syslog: "/dev/log", facility: "mail", stdout: true, success: true, why: true });
    expect(config.reports.history).toBe(DEFAULT_HISTORY_PATH);
    expect(r.yaml).toContain(`  # Syslog yes (${m.opendkim}:4); Syslog true (${m.opendmarc}:14): syslog(3) wrote to /dev/log.`);
    expect(r.yaml).toMatch(/\nlog:\n(?:  .*\n)+reports:\n  # HistoryFile .*\n  history: \/var\/lib\/authmilter\/history\.sqlite\n$/);
  });

  it("loads in buildAuthState and signs what opendkim signed: both example.com keys, one key per other domain", async () => {
    const state = await buildAuthState(parseConfig(r.yaml, "imported.yaml"));
    expect(state.signing.keyCount).toBe(6);
    const sign = async (from: string) => (await state.signing.keysFor(from)).map((k) => `${k.selector}._domainkey.${k.domain}`);
    expect(await sign("alice@example.com")).toEqual(["2024._domainkey.example.com", "ed2024._domainkey.example.com"]);
    expect(await sign("bob@shop.example")).toEqual(["mail._domainkey.shop.example"]);
    expect(await sign("list@lists.example.com")).toEqual(["lists._domainkey.lists.example.com"]);
    expect(await sign("someone@example.info")).toEqual([]);
    // The TrustedHosts file, inlined: LAN and web servers are ours, the rest of the world not.
    const internal = state.settings.internalHosts;
    expect(matchesHost(internal, "192.168.10.77")).toBe(true);
    expect(matchesHost(internal, "203.0.113.9", "web3.example.com")).toBe(true);
    expect(matchesHost(internal, "192.168.11.1")).toBe(false);
    expect(matchesHost(state.settings.dmarcIgnoreHosts, "192.168.10.4")).toBe(true);
    expect(matchesHost(state.settings.dmarcIgnoreHosts, "10.20.0.5")).toBe(false);
  });
});

describe("Debian's shipped opendkim.conf and opendmarc.conf", () => {
  const expectDebian = (r: ImportResult) => {
    expect(r.values).toEqual({
      mode: "sign+verify",
      signing: { oversign: ["From"], canonicalization: "relaxed/simple" },
      policy: { requiredHeaders: false },
      milter: { socket: "local:/run/opendkim/opendkim.sock", socketUmask: "0007" },
      log: { syslog: "/dev/log", success: true, why: false },
    });
    expect(r.unmapped.map((u) => `${u.program} ${u.option} ${u.value}`)).toEqual([
      "opendkim UserID opendkim",
      "opendkim PidFile /run/opendkim/opendkim.pid",
      "opendkim TrustAnchorFile /usr/share/dns/root.key",
      "opendmarc PidFile /run/opendmarc/opendmarc.pid",
      "opendmarc PublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat",
      "opendmarc UMask 0002",
      "opendmarc UserID opendmarc",
    ]);
    expect(notesText(r)).toContain("Remove unix:/run/opendmarc/opendmarc.sock from smtpd_milters and non_smtpd_milters in main.cf");
    expect(notesText(r)).toContain("nothing is signed until you add signing.keys");
    // Debian sets Canonicalization and OversignHeaders, so no default-difference note for them.
    expect(notesText(r)).not.toContain("Canonicalization was not set");
    expect(notesText(r)).not.toContain("OversignHeaders was not set");
    // Debian sets no LogWhy: opendkim's default (no) is written down, with the reason.
    expect(r.yaml).toContain("  # LogWhy was not set: opendkim did not log why it signed or verified a message; authmilter's default is true (at info); false logs it at debug\n  why: false\n");
  };

  it("the copies in test/fixtures/import/debian map as expected and load", async () => {
    const r = await importConfigs({ opendkim: DEBIAN_OPENDKIM, opendmarc: DEBIAN_OPENDMARC, hostname: "mx" });
    expectDebian(r);
    const state = await buildAuthState(parseConfig(r.yaml, "debian.yaml"));
    expect(state.signing.keyCount).toBe(0);
  });

  const installed = existsSync("/etc/opendkim.conf") && existsSync("/etc/opendmarc.conf");
  it.skipIf(!installed)("the files installed in /etc load, and every unmapped option has a reason", async () => {
    const r = await importConfigs({ opendkim: "/etc/opendkim.conf", opendmarc: "/etc/opendmarc.conf" });
    expect(() => parseConfig(r.yaml, "etc.yaml")).not.toThrow();
    for (const u of r.unmapped) expect(u.reason.length, `${u.option}`).toBeGreaterThan(10);
    expect(r.values["milter"]).toBeDefined();
  });
});

describe("mapping details", () => {
  it("Domain + KeyFile + Selector (+ SubDomains) become native signing.keys entries that sign subdomains with d= the parent", async () => {
    const key = await generateKey({ domain: "example.com", selector: "s1", directory: dir, bits: 1024 });
    const r = await importTexts({ opendkim: `Domain example.com, Example.ORG\nKeyFile ${key.privateKeyPath}\nSelector s1\nSubDomains yes\n` });
    expect(r.values["signing"]).toEqual({
      keys: [
        { domain: "example.com", selector: "s1", keyFile: key.privateKeyPath },
        { domain: "*.example.com", signingDomain: "example.com", selector: "s1", keyFile: key.privateKeyPath },
        { domain: "example.org", selector: "s1", keyFile: key.privateKeyPath },
        { domain: "*.example.org", signingDomain: "example.org", selector: "s1", keyFile: key.privateKeyPath },
      ],
    });
    const state = await buildAuthState(parseConfig(r.yaml, "x"));
    expect((await state.signing.keysFor("a@news.example.com")).map((k) => k.domain)).toEqual(["example.com"]);
    expect((await state.signing.keysFor("a@example.org")).map((k) => k.domain)).toEqual(["example.org"]);
    expect(await state.signing.keysFor("a@example.net")).toEqual([]);
  });

  it("a Domain list in a file is followed; a KeyFile relative to BaseDirectory is made absolute", async () => {
    // Without "file:" or a leading "/", opendkim reads a data set as an inline list.
    await mkdir(join(dir, "keys"));
    const key = await generateKey({ domain: "example.net", selector: "k", directory: join(dir, "keys"), bits: 1024 });
    const r = await importTexts({ opendkim: `BaseDirectory @DIR@\nDomain file:domains.txt\nKeyFile keys/k.private\nSelector k\n`, "domains.txt": "example.net\n# old\nexample.info\n" });
    expect(r.values["signing"]).toEqual({
      keys: [
        { domain: "example.net", selector: "k", keyFile: key.privateKeyPath },
        { domain: "example.info", selector: "k", keyFile: key.privateKeyPath },
      ],
    });
    expect(unmappedNames(r)).not.toContain("BaseDirectory");
  });

  it("single-key signing without all three of Domain, KeyFile, Selector is reported, not half-mapped", async () => {
    const r = await importTexts({ opendkim: "Domain example.com\nSelector s1\n" });
    expect(r.values["signing"]).toBeUndefined();
    expect(reasonOf(r, "Domain")).toMatch(/needs Domain, KeyFile and Selector together; KeyFile missing/);
    expect(reasonOf(r, "Selector")).toMatch(/KeyFile missing/);
  });

  it("On-Default applies to every action unless one is set on its own; discard has no equivalent", async () => {
    const r = await importTexts({ opendkim: "On-Default reject\nOn-NoSignature a\nOn-BadSignature discard\nOn-KeyNotFound tempfail\n" });
    expect(r.values["actions"]).toEqual({ dnsError: "reject", internalError: "reject", noSignature: "accept", securityConcern: "reject" });
    expect(reasonOf(r, "On-BadSignature")).toMatch(/never discards/);
    expect(reasonOf(r, "On-KeyNotFound")).toMatch(/actions\.badSignature applies/);
  });

  it("two AuthservIDs: opendmarc's wins and the note says so; own ids and HOSTNAME leave TrustedAuthservIDs", async () => {
    const r = await importTexts({
      opendkim: "AuthservID dkim.example.com\n",
      opendmarc: "AuthservID mx.example.com\nTrustedAuthservIDs HOSTNAME, dkim.example.com,upstream.example.net , mx.example.com\n",
    });
    expect(r.values["authservId"]).toBe("mx.example.com");
    expect(r.values["verify"]).toMatchObject({ trustedAuthservIds: ["upstream.example.net"] });
    expect(notesText(r)).toContain("AuthservID differs: opendkim dkim.example.com, opendmarc mx.example.com");
    expect(notesText(r)).toContain("TrustedAuthservIDs: HOSTNAME, dkim.example.com, mx.example.com left out");
  });

  it("AuthservID HOSTNAME is authmilter's default and is not written", async () => {
    const r = await importTexts({ opendmarc: "AuthservID HOSTNAME\n" });
    expect(r.values["authservId"]).toBeUndefined();
    expect(r.yaml).toContain("AuthservID HOSTNAME");
  });

  it("SPFSelfValidate false: kept only when trusted upstream ids can supply SPF, otherwise authmilter checks SPF itself", async () => {
    const alone = await importTexts({ opendmarc: "SPFSelfValidate false\n" });
    expect(alone.values["verify"]).toMatchObject({ spfSelfValidate: true });
    expect(notesText(alone)).toContain("authmilter checks SPF itself");
    const upstream = await importTexts({ opendmarc: "SPFSelfValidate false\nTrustedAuthservIDs mx-in.example.net\n" });
    expect(upstream.values["verify"]).toMatchObject({ spfSelfValidate: false, trustedAuthservIds: ["mx-in.example.net"] });
  });

  it("UMask is read as opendkim reads it: 007 is octal, 22 is decimal (octal 026)", async () => {
    const a = await importTexts({ opendkim: "Socket local:/run/authmilter/a.sock\nUMask 22\n" });
    expect(a.values["milter"]).toEqual({ socket: "local:/run/authmilter/a.sock", socketUmask: "0026" });
    expect(a.yaml).toContain("read as the decimal number 22");
    expect(parseConfig(a.yaml, "x").milter.socketUmask).toBe(0o026);
  });

  it("SignHeaders \"*\" deltas and OmitHeaders shape signing.headers; OversignHeaders drops what cannot be over-signed", async () => {
    const r = await importTexts({ opendkim: "SignHeaders *,+X-Ticket,-List-Id\nOmitHeaders Subject\nOversignHeaders From,DKIM-Signature,Subject\n" });
    const signing = r.values["signing"] as { headers: string[]; oversign: string[] };
    expect(signing.headers).toContain("X-Ticket");
    expect(signing.headers).toContain("From");
    expect(signing.headers).not.toContain("List-Id");
    expect(signing.headers).not.toContain("Subject");
    expect(signing.oversign).toEqual(["From", "Subject"]);
    expect(() => parseConfig(r.yaml, "x")).not.toThrow();
  });

  it("MTA and MacroList daemon_name values become submissionDaemons; other macros are reported", async () => {
    const ok = await importTexts({ opendkim: "MTA MSA\nMacroList daemon_name=ORIGINATING|SUBMISSION,auth_type\n" });
    expect(ok.values["signing"]).toEqual({ submissionDaemons: ["MSA", "ORIGINATING", "SUBMISSION"] });
    expect(unmappedNames(ok)).not.toContain("MacroList");
    const other = await importTexts({ opendkim: "MacroList client_name=relay.example.net\n" });
    expect(reasonOf(other, "MacroList")).toMatch(/not carried over: client_name=relay\.example\.net/);
  });

  it("IgnoreMailFrom becomes ignoreDomains; an IgnoreDomains line is not an opendmarc option", async () => {
    const r = await importTexts({ opendmarc: "IgnoreMailFrom Example.COM, example.net\nIgnoreDomains example.org\n" });
    expect(r.values["policy"]).toMatchObject({ dmarc: { ignoreDomains: ["example.com", "example.net"] } });
    expect(reasonOf(r, "IgnoreDomains")).toMatch(/not an opendmarc option.*IgnoreMailFrom/);
  });

  it("an option set twice: the last applies and a note says so", async () => {
    const r = await importTexts({ opendkim: "Canonicalization simple\nSyslog yes\nCanonicalization relaxed\n" });
    expect(r.values["signing"]).toEqual({ canonicalization: "relaxed/simple" });
    expect(notesText(r)).toContain("Canonicalization is set 2 times (line 1, line 3); the last one applies");
  });

  it("relative table paths follow BaseDirectory, and relative key paths inside the KeyTable are flagged", async () => {
    const r = await importTexts({
      opendkim: "BaseDirectory @DIR@/etc\nKeyTable file:tables/keys\nSigningTable refile:tables/signing\n",
      "etc/tables/keys": "k1 example.com:s1:./keys/s1.private\n",
      "etc/tables/signing": "*@example.com k1\n",
    });
    expect(r.values["signing"]).toEqual({ keyTable: `${dir}/etc/tables/keys`, signingTable: `refile:${dir}/etc/tables/signing` });
    expect(notesText(r)).toContain(`KeyTable entries with relative key paths (${dir}/etc/tables/keys:1): opendkim resolves them against BaseDirectory ${dir}/etc`);
  });

  it("a SigningTable naming a key the KeyTable lacks is written but flagged; a KeyTable alone is not carried over", async () => {
    const bad = await importTexts({ opendkim: "KeyTable @DIR@/kt\nSigningTable @DIR@/st\n", kt: "k1 example.com:s1:/k/s1.private\n", st: "example.com k2\n" });
    expect(notesText(bad)).toMatch(/key name "k2" is not defined in KeyTable/);
    const alone = await importTexts({ opendkim: "KeyTable @DIR@/kt\n", kt: "k1 example.com:s1:/k/s1.private\n" });
    expect(alone.values["signing"]).toBeUndefined();
    expect(reasonOf(alone, "KeyTable")).toMatch(/without a SigningTable/);
  });

  it("RequiredHeaders: unset keeps the old behaviour (false); set in either file turns it on", async () => {
    expect((await importTexts({ opendkim: "Mode v\n" })).values["policy"]).toEqual({ requiredHeaders: false });
    expect((await importTexts({ opendkim: "RequiredHeaders yes\n", opendmarc: "RequiredHeaders false\n" })).values["policy"]).toMatchObject({ requiredHeaders: true });
  });

  it("enforcing without IgnoreHosts keeps opendmarc's default of leaving 127.0.0.1 alone when it is not internal", async () => {
    const r = await importTexts({ opendkim: "InternalHosts 192.168.1.0/24\n", opendmarc: "RejectFailures yes\nHoldQuarantinedMessages yes\n" });
    expect(r.values["policy"]).toEqual({ requiredHeaders: false, dmarc: { enforce: true, quarantine: "hold", ignoreHosts: ["127.0.0.1"] } });
  });

  it("PeerList has no equivalent: reported with its entries; a bad host-list entry is left out with a note", async () => {
    const r = await importTexts({ opendkim: "PeerList @DIR@/peers\nInternalHosts @DIR@/internal\n", peers: "10.1.1.1\n.relay.example.net\n", internal: "127.0.0.1\n10.0.0.1/8\n!10.9.0.0/16\n" });
    expect(reasonOf(r, "PeerList")).toMatch(/no equivalent.*Entries \(2\): 10\.1\.1\.1, \.relay\.example\.net/);
    expect(r.values["internalHosts"]).toEqual(["127.0.0.1", "!10.9.0.0/16"]);
    expect(notesText(r)).toMatch(/internal:2 InternalHosts entry "10\.0\.0\.1\/8" left out of internalHosts: .*host bits set/);
  });

  it("only opendmarc.conf: verify mode, its socket", async () => {
    const r = await importTexts({ opendmarc: "Socket inet:8893@127.0.0.1\nUMask 002\n" });
    expect(r.values).toMatchObject({ mode: "verify", milter: { socket: "inet:8893@127.0.0.1", socketUmask: "0002" } });
  });

  it("MinimumKeyBits below 1024 has no equivalent; above, it becomes the signing minimum", async () => {
    expect(reasonOf(await importTexts({ opendkim: "MinimumKeyBits 512\n" }), "MinimumKeyBits")).toMatch(/never accepts RSA keys under 1024/);
    expect((await importTexts({ opendkim: "MinimumKeyBits 2048\n" })).values["signing"]).toEqual({ minimumKeyBits: 2048 });
  });

  it("lines opendkim refuses are reported as notes and unknown options as unmapped", async () => {
    const r = await importTexts({ opendkim: "Canonicalization\nSyslog perhaps\nFrobnicate yes\n" });
    expect(notesText(r)).toContain('Canonicalization has no value; opendkim refuses this ("required value missing"); the line is ignored here');
    expect(notesText(r)).toContain("Syslog perhaps: not a boolean");
    expect(reasonOf(r, "Frobnicate")).toBe('not an opendkim option (opendkim refuses to start: "unrecognized parameter")');
  });

  it("Nameservers and DNSTimeout reach dns.*; invalid servers are left out", async () => {
    const r = await importTexts({ opendkim: "Nameservers 127.0.0.1, ns.example.net,::1\nDNSTimeout 0\n" });
    expect(r.values["dns"]).toEqual({ servers: ["127.0.0.1", "::1"] });
    expect(notesText(r)).toContain('Nameservers entry "ns.example.net" left out');
    expect(reasonOf(r, "DNSTimeout")).toMatch(/wait forever/);
  });

  it("postfixMilter names sockets as main.cf does", () => {
    expect(postfixMilter("inet:8891@localhost")).toBe("inet:localhost:8891");
    expect(postfixMilter("inet:8891")).toBe("inet:localhost:8891");
    expect(postfixMilter("inet6:8891@[::1]")).toBe("inet:[::1]:8891");
    expect(postfixMilter("local:/run/opendkim/opendkim.sock")).toBe("unix:/run/opendkim/opendkim.sock");
  });
});

describe("logging and the DMARC history", () => {
  it("Syslog yes becomes log.syslog: /dev/log; SyslogFacility one we log with becomes log.facility", async () => {
    const r = await importTexts({ opendkim: "Syslog yes\nSyslogFacility LOCAL3\nSyslogSuccess yes\nLogWhy no\n" });
    expect(r.values["log"]).toEqual({ syslog: "/dev/log", facility: "local3", success: true, why: false });
    expect(r.unmapped).toEqual([]);
    expect(r.yaml).toContain("log.stdout stays true");
    expect(parseConfig(r.yaml, "x").log).toEqual({ level: "info", syslog: "/dev/log", facility: "local3", stdout: true, success: true, why: false });
  });

  it("Syslog no leaves log.syslog unset, and a SyslogFacility with no syslog had no effect", async () => {
    const r = await importTexts({ opendkim: "Syslog no\nSyslogFacility local1\n" });
    expect(r.values["log"]).toEqual({ success: false, why: false });
    expect(r.yaml).toContain("# Syslog no (");
    expect(r.yaml).toContain("no syslog, authmilter's default (log.syslog unset)");
    expect(reasonOf(r, "SyslogFacility")).toBe("opendkim did not log to syslog (Syslog not on), so it had no effect; log.facility applies to log.syslog only");
    expect(parseConfig(r.yaml, "x").log.syslog).toBeUndefined();
  });

  it("a facility authmilter does not log with is reported, and log.facility stays mail", async () => {
    const r = await importTexts({ opendkim: "Syslog yes\nSyslogFacility user\n" });
    expect(r.values["log"]).toEqual({ syslog: "/dev/log", success: false, why: false });
    expect(reasonOf(r, "SyslogFacility")).toBe(
      '"user" is not a facility authmilter logs with (mail, daemon, local0, local1, local2, local3, local4, local5, local6, local7); ' +
        "log.facility stays mail: adjust the syslog.conf rules that select user",
    );
  });

  it("two programs logging with different facilities: opendkim's is kept, opendmarc's reported", async () => {
    const r = await importTexts({ opendkim: "Syslog yes\nSyslogFacility daemon\n", opendmarc: "Syslog true\nSyslogFacility local5\n" });
    expect(r.values["log"]).toMatchObject({ syslog: "/dev/log", facility: "daemon" });
    expect(reasonOf(r, "SyslogFacility")).toBe("authmilter logs with one facility and log.facility is daemon (opendkim's): adjust the syslog.conf rules that select local5");
    // opendmarc logging with its default (mail) while opendkim used local0: a note, as there is no line to report.
    const mixed = await importTexts({ opendkim: "Syslog yes\nSyslogFacility local0\n", opendmarc: "Syslog true\n" });
    expect(mixed.values["log"]).toMatchObject({ facility: "local0" });
    expect(notesText(mixed)).toContain("opendmarc logged with facility mail (its default); authmilter logs with one facility and log.facility is local0 (opendkim's)");
  });

  it("only one program logged to syslog: the comment says the other's lines go there now", async () => {
    const r = await importTexts({ opendkim: "Syslog no\nSyslogSuccess yes\n", opendmarc: "Syslog yes\n" });
    expect(r.values["log"]).toEqual({ syslog: "/dev/log", success: true, why: false });
    expect(r.yaml).toContain("opendkim did not log there, but authmilter has one log, so its DKIM, SPF and DMARC lines all go there");
  });

  it("SyslogSuccess and LogWhy unset: opendkim's defaults (no, no) are written, each with the reason", async () => {
    const r = await importTexts({ opendkim: "Mode sv\n" });
    expect(r.values["log"]).toEqual({ success: false, why: false });
    expect(r.yaml).toContain("  # SyslogSuccess was not set: opendkim did not log successful signing and verification; authmilter's default is true (at info); false logs them at debug\n  success: false\n");
    expect(r.yaml).toContain("  # LogWhy was not set: opendkim did not log why it signed or verified a message; authmilter's default is true (at info); false logs it at debug\n  why: false\n");
    const config = parseConfig(r.yaml, "x");
    expect(config.log).toMatchObject({ success: false, why: false });
    const state = await buildAuthState(config);
    expect(state.settings).toMatchObject({ logSuccess: false, logWhy: false });
  });

  it("with log.success off and opendmarc logging, a note says DMARC passes move to debug", async () => {
    const r = await importTexts({ opendkim: "Syslog yes\nSyslogSuccess no\n", opendmarc: "Syslog yes\n" });
    expect(r.values["log"]).toMatchObject({ success: false });
    expect(notesText(r)).toMatch(/opendkim\.conf:2 log\.success is false: authmilter logs DMARC results that pass at debug, where opendmarc logged every DMARC result/);
  });

  it("only opendmarc.conf: log.why off (opendmarc said nothing of the kind), log.success stays on", async () => {
    const r = await importTexts({ opendmarc: "Syslog true\n" });
    expect(r.values["log"]).toEqual({ syslog: "/dev/log", why: false });
    expect(r.yaml).toContain("log.success stays true (the default): opendmarc logged every DMARC result, passes included");
    expect(parseConfig(r.yaml, "x").log).toMatchObject({ success: true, why: false });
  });

  it("SyslogName and LogResults are not carried over, with what authmilter logs instead", async () => {
    const r = await importTexts({ opendkim: "Syslog yes\nSyslogName opendkim-out\nLogResults yes\nSyslogSuccess yes\n" });
    expect(reasonOf(r, "SyslogName")).toMatch(/the syslog tag is fixed: lines read "authmilter\[PID\]: QUEUEID: \.\.\.".*must match "authmilter" instead/);
    expect(reasonOf(r, "LogResults")).toMatch(/no switch: it always has one line per DKIM signature verified \(d=, s=, the result and why a failure failed\)/);
    expect(reasonOf(r, "LogResults")).not.toContain("set log.success: true");
    // LogResults showed passing signatures; with SyslogSuccess off they would now be at debug.
    const quiet = await importTexts({ opendkim: "Syslog yes\nLogResults yes\n" });
    expect(reasonOf(quiet, "LogResults")).toMatch(/LogResults logged passing signatures too: set log\.success: true to keep them at info/);
  });

  it("HistoryFile becomes reports.history (our own store) with a note; RecordAllMessages and IgnoreMailTo are explained", async () => {
    const r = await importTexts({ opendmarc: "HistoryFile /var/run/opendmarc/opendmarc.dat\nRecordAllMessages yes\nIgnoreMailTo dmarc-reports@example.com\n" });
    expect(r.values["reports"]).toEqual({ history: "/var/lib/authmilter/history.sqlite" });
    expect(r.yaml).toContain("  # HistoryFile /var/run/opendmarc/opendmarc.dat (");
    expect(notesText(r)).toMatch(
      /opendmarc\.conf:1 HistoryFile \/var\/run\/opendmarc\/opendmarc\.dat: opendmarc's text history is not imported .*authmilter records from now on in \/var\/lib\/authmilter\/history\.sqlite .*`authmilter report aggregate`/,
    );
    expect(unmappedNames(r)).toEqual(["RecordAllMessages", "IgnoreMailTo"]);
    expect(reasonOf(r, "RecordAllMessages")).toMatch(/^no switch: authmilter records every verified message .*reports\.history.*as RecordAllMessages yes did/);
    expect(reasonOf(r, "IgnoreMailTo")).toMatch(/^no equivalent: .*mail to your own rua=\/ruf= addresses is recorded too/);
    expect(parseConfig(r.yaml, "x").reports.history).toBe("/var/lib/authmilter/history.sqlite");
  });
});
