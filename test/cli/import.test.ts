// `authmilter import`, run as the real command line on the multi-domain fixture and on Debian's
// shipped files: the YAML it writes loads and its keys load, the options it could not carry over
// are on standard error, and it refuses what it should (exit 1 and 2).

import { chmod, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildAuthState } from "../../src/auth/build.ts";
import { loadConfig } from "../../src/config/load.ts";
import { DEBIAN_OPENDKIM, DEBIAN_OPENDMARC, prepareMulti, type MultiSetup } from "../fixtures/import/multi.ts";
import { describeResult, run } from "../support/run.ts";

const NODE = fileURLToPath(new URL("../../node_modules/.bin/node", import.meta.url));
const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const cli = (args: readonly string[]) => run(NODE, [MAIN, ...args], { timeoutMs: 60_000 });

let m: MultiSetup;
beforeAll(async () => {
  m = await prepareMulti();
});
afterAll(async () => {
  await m.cleanup();
});

describe("authmilter import (command line)", () => {
  it("writes --out, lists every option it did not carry over on stderr, and the file loads with its keys", async () => {
    const out = join(m.root, "authmilter.yaml");
    const r = await cli(["import", "--opendkim", m.opendkim, "--opendmarc", m.opendmarc, "--out", out, "--hostname", "mail"]);
    expect(r.code, describeResult("import", r)).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`authmilter import: wrote ${out}`);
    expect(r.stderr).toContain("not carried over (12):");
    for (const [line, option] of [
      [`${m.opendkim}:17`, "AutoRestart yes"],
      [`${m.opendkim}:22`, "UserID opendkim:opendkim"],
      [`${m.opendkim}:45`, "TrustAnchorFile /usr/share/dns/root.key"],
      [`${m.opendmarc}:12`, "FailureReports false"],
      [`${m.opendmarc}:17`, "PublicSuffixList /usr/share/publicsuffix"],
    ]) {
      expect(r.stderr).toContain(`  ${line}: ${option}\n`);
    }
    expect(r.stderr).toContain("Remove inet:localhost:54321 from smtpd_milters and non_smtpd_milters in main.cf");
    expect(r.stderr).toContain(`  - ${m.opendmarc}:11: HistoryFile /run/opendmarc/opendmarc.dat: opendmarc's text history is not imported`);
    expect(r.stderr).not.toContain("warning:");

    expect((await stat(out)).mode & 0o777).toBe(0o644);
    const loaded = loadConfig(out);
    expect(loaded.config.signing.signingTable).toBe(`refile:${m.root}/etc/opendkim/signing.table`);
    expect(loaded.config.policy.dmarc.enforce).toBe(true);
    expect(loaded.config.log).toMatchObject({ syslog: "/dev/log", facility: "mail", success: true, why: true });
    expect(loaded.config.reports.history).toBe("/var/lib/authmilter/history.sqlite");
    const state = await buildAuthState(loaded.config);
    expect(state.signing.keyCount).toBe(6);
    const text = await readFile(out, "utf8");
    expect(text).toContain("# Not carried over (12):");
    expect(text).toContain(`#   ${m.opendmarc}:12: FailureReports false\n#       reports: `);
    expect(text).toContain(`log:\n  # Syslog yes (${m.opendkim}:4); Syslog true (${m.opendmarc}:14): syslog(3) wrote to /dev/log.`);
  });

  it("refuses to replace --out unless --force", async () => {
    const out = join(m.root, "again.yaml");
    await writeFile(out, "# keep me\n");
    const again = await cli(["import", "--opendkim", m.opendkim, "--out", out]);
    expect(again.code, describeResult("import", again)).toBe(1);
    expect(again.stderr).toContain(`${out}: already exists; move it away or use --force`);
    expect(await readFile(out, "utf8")).toBe("# keep me\n");
    const forced = await cli(["import", "--opendkim", m.opendkim, "--out", out, "--force"]);
    expect(forced.code, describeResult("import --force", forced)).toBe(0);
    expect(await readFile(out, "utf8")).toMatch(/^# authmilter configuration written by `authmilter import`/);
  });

  it("without --out the YAML goes to stdout: Debian's shipped files", async () => {
    const r = await cli(["import", "--opendkim", DEBIAN_OPENDKIM, "--opendmarc", DEBIAN_OPENDMARC]);
    expect(r.code, describeResult("import", r)).toBe(0);
    expect(r.stdout).toMatch(/^# authmilter configuration/);
    expect(r.stdout).toContain("\nmilter:\n");
    expect(r.stdout).toContain("  socket: local:/run/opendkim/opendkim.sock\n");
    expect(r.stderr).toContain("not carried over (7):");
    expect(r.stdout).toContain("\nlog:\n");
    expect(r.stdout).toContain("  syslog: /dev/log\n");
    expect(r.stdout).toContain("  success: true\n");
    expect(r.stdout).toContain("  why: false\n");
    expect(r.stderr).toContain("Remove unix:/run/opendmarc/opendmarc.sock from smtpd_milters and non_smtpd_milters in main.cf");
  });

  it("warns when the keys it names would not load yet (e.g. readable by others), but still writes the file", async () => {
    const keyFile = join(m.root, "etc/opendkim/keys/example.org/2024.private");
    await chmod(keyFile, 0o644);
    try {
      const out = join(m.root, "unsafe.yaml");
      const r = await cli(["import", "--opendkim", m.opendkim, "--out", out]);
      expect(r.code, describeResult("import", r)).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`warning: authmilter would not start with this file yet: .*${keyFile.replaceAll(".", "\\.")}.*chmod 600`));
      await stat(out);
    } finally {
      await chmod(keyFile, 0o600);
      await rm(join(m.root, "unsafe.yaml"), { force: true });
    }
  });

  it("exit 1 when an input cannot be read, exit 2 for bad arguments", async () => {
    const missing = await cli(["import", "--opendkim", join(m.root, "nope.conf")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/authmilter import: .*nope\.conf: cannot read: no such file/);
    const none = await cli(["import"]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/give --opendkim FILE, --opendmarc FILE or both/);
    const force = await cli(["import", "--opendkim", m.opendkim, "--force"]);
    expect(force.code).toBe(2);
    expect(force.stderr).toMatch(/--force needs --out/);
  });
});
