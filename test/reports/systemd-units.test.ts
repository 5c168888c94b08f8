// The report timer and service, checked by systemd's own tools offline (as
// test/systemd/unit.test.ts does for the daemon's unit): they parse, the timer finds its
// service, and the service is sandboxed like the daemon.

import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { findExecutable } from "../support/prereq.ts";

const run = promisify(execFile);
const read = (name: string) => readFileSync(new URL(`../../systemd/${name}`, import.meta.url), "utf8");
const service = read("authmilter-report.service");
const timer = read("authmilter-report.timer");
const daemon = read("authmilter.service");
const dir = mkdtempSync(join(tmpdir(), "authmilter-report-units-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const analyze = findExecutable("systemd-analyze");
const required = process.env["CI"] === "true";

const lines = (unit: string) => unit.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));

describe.skipIf(!analyze && !required)("systemd/authmilter-report.{service,timer}", () => {
  // verify checks that ExecStart's program exists; /usr/bin/authmilter may not be installed here.
  const servicePath = join(dir, "authmilter-report.service");
  const timerPath = join(dir, "authmilter-report.timer");
  writeFileSync(servicePath, service.replace("ExecStart=/usr/bin/authmilter", `ExecStart=${process.execPath} /usr/lib/authmilter/dist/cli/main.js`));
  writeFileSync(timerPath, timer);

  it("pass systemd-analyze verify", async () => {
    const r = await run(analyze ?? "systemd-analyze", ["verify", servicePath, timerPath]);
    expect(r.stderr).toBe("");
  });

  it("the timer's OnCalendar= elapses once a day, after UTC midnight (systemd-analyze calendar)", async () => {
    const spec = /^OnCalendar=(.*)$/m.exec(timer)?.[1];
    expect(spec).toBeDefined();
    const r = await run(analyze ?? "systemd-analyze", ["calendar", "--iterations=3", spec!], { env: { ...process.env, TZ: "UTC", LC_ALL: "C" } });
    const elapses = [...r.stdout.matchAll(/(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC/g)].map((m) => Date.parse(`${m[1]!.replace(" ", "T")}Z`));
    expect(elapses).toHaveLength(3);
    expect(elapses[1]! - elapses[0]!).toBe(86_400_000);
    expect(elapses[2]! - elapses[1]!).toBe(86_400_000);
    // After 00:00 UTC, so the default interval (the previous UTC day) is complete; before 01:00.
    expect(new Date(elapses[0]!).getUTCHours()).toBe(0);
  });

  it("the service has an exposure score of 2.0 or less (systemd-analyze security --offline)", async () => {
    const r = await run(analyze ?? "systemd-analyze", ["security", "--offline=true", servicePath]);
    const score = Number(/Overall exposure level for authmilter-report\.service: ([0-9.]+)/.exec(r.stdout)?.[1]);
    expect(score).toBeLessThanOrEqual(2.0);
  });

  it("runs report aggregate once a day, catching up on missed runs", () => {
    const t = lines(timer);
    expect(t).toContain("Persistent=true");
    expect(t).toContain("Unit=authmilter-report.service");
    expect(t).toContain("WantedBy=timers.target");
    expect(t.find((l) => l.startsWith("OnCalendar="))).toMatch(/^OnCalendar=\*-\*-\* \d\d:\d\d:\d\d UTC$/);
    const s = lines(service);
    expect(s).toContain("Type=oneshot");
    expect(s.find((l) => l.startsWith("ExecStart="))).toMatch(/^ExecStart=\/usr\/bin\/authmilter report aggregate /);
    expect(s).not.toContainEqual(expect.stringMatching(/--dry-run/));
  });

  it("is hardened like the daemon's unit, as the daemon's user", () => {
    const s = lines(service);
    const hardening = lines(daemon.slice(daemon.indexOf("NoNewPrivileges=")))
      .filter((l) => !l.startsWith("[") && !l.startsWith("WantedBy="));
    expect(hardening.length).toBeGreaterThan(15);
    for (const line of [...hardening, "User=authmilter", "Group=authmilter"]) expect(s).toContain(line);
  });
});
