// miltertest (OpenDKIM's libmilter client, independent of our codec) replays the rhythm of
// Postfix's milter traffic against the real daemon: repeated and mid-header ABORTs, the queue id
// arriving only at end of message, a fresh connection after QUIT (milter-cadence.lua).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SOFTWARE_HEADER } from "../../src/auth/handler.ts";
import { VERSION } from "../../src/version.ts";
import { startDaemon, type Daemon } from "../support/daemon-process.ts";
import { startDnsServer, type DnsTestServer } from "../support/dns-server.ts";
import { runMiltertest, scriptPath } from "../support/miltertest.ts";
import { e2eGate } from "../support/prereq.ts";

const gate = e2eGate({ tools: ["miltertest"] });
const HOSTNAME = "milter.e2e.authmilter.test";
const script = scriptPath("milter-cadence.lua");

describe.skipIf(gate.skip)(`miltertest: Postfix's event cadence against the daemon${gate.label}`, () => {
  let dns: DnsTestServer | undefined;
  let daemon: Daemon | undefined;
  const socket = () => `inet:${daemon?.port ?? expect.fail("daemon did not start")}@127.0.0.1`;

  beforeAll(async () => {
    gate.assertReady();
    // An empty zone: the SPF and DMARC lookups for example.org get NXDOMAIN from loopback
    // instead of going to whatever resolver the machine has.
    dns = await startDnsServer({ zone: {} });
    daemon = await startDaemon({
      hostname: HOSTNAME,
      dns: { servers: dns.servers },
      milter: { socket: "inet:0@127.0.0.1" },
    });
  });

  afterAll(async () => {
    await daemon?.stop();
    await dns?.close();
  });

  it("adds exactly one software header per message, with that message's queue id, across ABORTs and connections", async () => {
    const result = await runMiltertest(script, {
      socket: socket(),
      vars: { header_name: SOFTWARE_HEADER, expected_prefix: `authmilter ${VERSION} ${HOSTNAME}` },
    });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain(`message 3 (queue id only at end of message): ${SOFTWARE_HEADER}: authmilter ${VERSION} ${HOSTNAME} 4ABC0000C3`);
    expect(result.stdout.trimEnd().split("\n").at(-1)).toBe("milter-cadence: all checks passed");
  });

  it("fails, saying why, when the header is not what the script expects (the checks can fail)", async () => {
    const result = await runMiltertest(script, {
      socket: socket(),
      vars: { header_name: SOFTWARE_HEADER, expected_prefix: `authmilter ${VERSION} not-${HOSTNAME}` },
    });
    expect(result.code).not.toBe(0);
    expect(result.stdout).toContain(`milter-cadence: FAILED: message 1 (queue id at MAIL): ${SOFTWARE_HEADER} is 'authmilter ${VERSION} ${HOSTNAME} 4ABC0000A1'`);
    expect(result.stdout).not.toContain("all checks passed");
  });

  it("leaves the daemon serving and exiting cleanly on SIGTERM afterwards", async () => {
    const running = daemon ?? expect.fail("daemon did not start");
    expect(running.logs.filter((line) => line.level >= 50)).toEqual([]);
    expect(await running.stop()).toBe(0);
  });
});
