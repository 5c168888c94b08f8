// The shipped unit, checked by systemd's own tools offline: it parses, and its sandboxing
// keeps the exposure score low (the README quotes the score).

import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { findExecutable } from "../support/prereq.ts";

const run = promisify(execFile);
const unit = readFileSync(new URL("../../systemd/authmilter.service", import.meta.url), "utf8");
const dir = mkdtempSync(join(tmpdir(), "authmilter-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const analyze = findExecutable("systemd-analyze");
const required = process.env["CI"] === "true";

describe.skipIf(!analyze && !required)("systemd/authmilter.service", () => {
  // verify checks that ExecStart exists; the package installs /usr/bin/authmilter, this machine may not have it.
  const path = join(dir, "authmilter.service");
  writeFileSync(path, unit.replace("ExecStart=/usr/bin/authmilter", `ExecStart=${process.execPath} /usr/lib/authmilter/dist/cli/main.js`));

  it("passes systemd-analyze verify", async () => {
    const r = await run(analyze ?? "systemd-analyze", ["verify", path]);
    expect(r.stderr).toBe("");
  });

  it("has an exposure score of 2.0 or less (systemd-analyze security --offline)", async () => {
    const r = await run(analyze ?? "systemd-analyze", ["security", "--offline=true", path]);
    const score = Number(/Overall exposure level for authmilter\.service: ([0-9.]+)/.exec(r.stdout)?.[1]);
    expect(score).toBeLessThanOrEqual(2.0);
  });

  it("is Type=notify, reloads with SIGHUP and runs as its own user", () => {
    for (const line of ["Type=notify", "NotifyAccess=all", "ExecReload=/bin/kill -HUP $MAINPID", "User=authmilter", "RuntimeDirectory=authmilter", "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=", "SystemCallFilter=@system-service", "RestartPreventExitStatus=78"]) {
      expect(unit.split("\n")).toContain(line);
    }
  });
});
