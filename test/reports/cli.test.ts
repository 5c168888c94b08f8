// The real command, as cron or an operator runs it: a separate Node process on main.ts.

import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { reportInterval } from "../../src/cli/report.ts";
import { openHistoryStore } from "../../src/reports/history-sqlite.ts";
import { freePort } from "../support/ports.ts";
import { at, captureLogger, cli, message, SKIP_XMLLINT, T1, tempDir, validateReport, xpathString } from "./helpers.ts";

let dir: string;
let cleanup: () => Promise<void>;
let db: string;
let out: string;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  db = join(dir, "history.sqlite");
  out = join(dir, "out");
});
afterEach(async () => {
  await cleanup();
});

async function seed(): Promise<void> {
  const store = openHistoryStore(db, { logger: captureLogger().logger });
  const policy = (domain: string, rua: string[]) => ({ domain, p: "quarantine" as const, pct: 100, rua, ruf: [] });
  for (let i = 0; i < 3; i++) store.record(message({ policy: policy("example.com", ["mailto:agg@example.com"]) }));
  store.record(
    message({
      sourceIp: "198.51.100.20",
      dkim: [{ domain: "example.com", selector: "s1", result: "fail" }],
      dkimAligned: "fail",
      spfAligned: "fail",
      dmarc: "fail",
      disposition: "quarantine",
      policy: policy("example.com", ["mailto:agg@example.com"]),
    }),
  );
  store.record(message({ headerFrom: "quiet.example", policy: policy("quiet.example", []) }));
  store.record(message({ time: T1, policy: policy("example.com", ["mailto:agg@example.com"]) }));
  await store.close();
}

const IDENTITY = ["--org-name", "Receiver & Co", "--org-email", "dmarc-reports@mx.receiver.example"];

describe("authmilter report aggregate", () => {
  it.skipIf(SKIP_XMLLINT)("--dry-run writes one valid .xml.gz per domain that asked, named per RFC 7489", async () => {
    await seed();
    const r = await cli(["report", "aggregate", "--since", "2024-05-01", "--until", "2024-05-02", "--db", db, ...IDENTITY, "--dry-run", "--out", out]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const name = "mx.receiver.example!example.com!1714521600!1714607999.xml.gz";
    expect(await readdir(out)).toEqual([name]);
    expect(r.stdout).toContain(`${join(out, name)}: 4 message(s) in 2 record(s); rua=mailto:agg@example.com`);
    expect(r.stdout).toMatch(/1 aggregate report\(s\) .* \(dry run: nothing mailed\)/);

    const xml = gunzipSync(await readFile(join(out, name))).toString("utf8");
    expect((await validateReport(xml, dir)).ok).toBe(true);
    const read = (xpath: string) => xpathString(xml, dir, xpath);
    expect(await read("//report_metadata/org_name")).toBe("Receiver & Co");
    expect(await read("//report_metadata/email")).toBe("dmarc-reports@mx.receiver.example");
    expect(await read("//date_range/begin")).toBe("1714521600");
    expect(await read("//date_range/end")).toBe("1714607999");
    expect(await read("//policy_published/p")).toBe("quarantine");
    expect(await read("sum(//row/count)")).toBe("4");
    expect(await read("//record[row/source_ip='198.51.100.20']/row/policy_evaluated/disposition")).toBe("quarantine");
    expect(await read("//record[row/source_ip='192.0.2.10']/row/count")).toBe("3");
  });

  it("without --dry-run mails instead of writing files: nothing lands in --out, a dead relay exits 75", async () => {
    await seed();
    const port = await freePort();
    const r = await cli(["report", "aggregate", "--since", "2024-05-01", "--until", "2024-05-02", "--db", db, ...IDENTITY, "--out", out, "--smtp", `127.0.0.1:${port}`]);
    expect(r.code).toBe(75);
    expect(r.stderr).toContain(`sending to agg@example.com via smtp://127.0.0.1:${port} failed`);
    await expect(readdir(out)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("says so when no report is due, and exits 0", async () => {
    await seed();
    const r = await cli(["report", "aggregate", "--since", "2024-06-01", "--until", "2024-06-02", "--db", db, ...IDENTITY, "--dry-run", "--out", out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/no aggregate reports due for 2024-06-01T00:00:00.000Z to 2024-06-02T00:00:00.000Z/);
    await expect(readdir(out)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("rejects bad times with exit 64 and an unreadable database with exit 1", async () => {
    const base = ["report", "aggregate", "--db", db, "--dry-run", "--out", out];
    const local = await cli([...base, "--since", "2024-05-01T00:00:00"]);
    expect(local.code).toBe(64);
    expect(local.stderr).toMatch(/--since "2024-05-01T00:00:00": expected an ISO 8601 date/);
    expect((await cli([...base, "--until", "2024-02-30"])).code).toBe(64);
    const backwards = await cli([...base, "--since", "2024-05-02", "--until", "2024-05-01"]);
    expect(backwards.code).toBe(64);
    expect(backwards.stderr).toMatch(/must be before --until/);

    const missing = await cli([...base, "--since", "2024-05-01"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`cannot read history database ${db}`);
  });

  it("--help documents the options", async () => {
    const r = await cli(["report", "aggregate", "--help"]);
    expect(r.code).toBe(0);
    for (const option of ["--since", "--until", "--db", "--org-name", "--org-email", "--receiver", "--dry-run", "--out", "--smtp", "--sendmail", "--from", "--dns"]) {
      expect(r.stdout).toContain(option);
    }
    expect(r.stdout).toContain("receiver!policy-domain!begin!end.xml.gz");
    expect(r.stdout).toContain("_report._dmarc.");
    expect(r.stdout).toMatch(/75 some report could not be sent/);
  });
});

describe("report interval", () => {
  it("defaults to the previous UTC day and takes dates and zoned times", () => {
    const now = at("2024-05-02T13:45:00Z");
    expect(reportInterval({}, now)).toEqual({ since: at("2024-05-01T00:00:00Z"), until: at("2024-05-02T00:00:00Z") });
    expect(reportInterval({ since: "2024-04-01", until: "2024-04-01T06:00:00+02:00" }, now)).toEqual({
      since: at("2024-04-01T00:00:00Z"),
      until: at("2024-04-01T04:00:00Z"),
    });
    expect(reportInterval({ until: "2024-04-10T00:00:00Z" }, now).since).toEqual(at("2024-04-09T00:00:00Z"));
  });
});
