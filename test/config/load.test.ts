import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseConfig, parseDuration } from "../../src/config/load.ts";
import { defaultConfig } from "../../src/config/schema.ts";

const dir = mkdtempSync(join(tmpdir(), "authmilter-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function error(text: string): ConfigError {
  try {
    parseConfig(text, "/etc/authmilter/authmilter.yaml");
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("parseConfig", () => {
  it("returns the defaults for an empty file", () => {
    expect(parseConfig("", "f.yaml")).toEqual(defaultConfig());
  });

  it("reads every milter option, durations and octal umask included", () => {
    const config = parseConfig(
      [
        "hostname: mx.example.org",
        "milter:",
        "  socket: local:/run/authmilter/authmilter.sock",
        "  socketUmask: 0027",
        "  maxConnections: 500",
        "  idleTimeout: 10m",
        "  commandTimeout: 45s",
        "  progressInterval: 500ms",
        "  maxPacketSize: 2097152",
        "  drainTimeout: 2",
        "  workers: 3",
        "log:",
        "  level: debug",
      ].join("\n"),
      "f.yaml",
    );
    expect(config.hostname).toBe("mx.example.org");
    expect(config.milter).toEqual({
      socket: "local:/run/authmilter/authmilter.sock",
      socketUmask: 0o027,
      maxConnections: 500,
      idleTimeoutMs: 600_000,
      commandTimeoutMs: 45_000,
      progressIntervalMs: 500,
      maxPacketBytes: 2_097_152,
      drainTimeoutMs: 2_000,
      workers: 3,
    });
    expect(config.log.level).toBe("debug");
  });

  it("names file, line and column of an unknown option and suggests the right one", () => {
    const err = error("milter:\n  soket: inet:8891@127.0.0.1\n");
    expect(err.message).toBe('/etc/authmilter/authmilter.yaml:2:3: unknown option "milter.soket"; did you mean "milter.socket"?');
  });

  it("explains a bad socket spec where it stands", () => {
    const err = error("milter:\n  socket: tcp:8891\n");
    expect(err.line).toBe(2);
    expect(err.column).toBe(11);
    expect(err.message).toMatch(/"milter.socket": socket "tcp:8891" is not one of inet:PORT@HOST/);
  });

  it.each([
    ["milter:\n  maxConnections: many\n", 2, /"milter.maxConnections": expected a whole number, got many/],
    ["milter:\n  maxConnections: 0\n", 2, /0 is outside 1\.\.1000000/],
    ["milter:\n  idleTimeout: forever\n", 2, /expected a duration such as 30s/],
    ["milter:\n  socketUmask: 0999\n", 2, /expected an octal mode/],
    ["actions:\n  internalError: drop\n", 2, /"actions.internalError": expected one of tempfail, accept, reject, got drop/],
    ["actions:\n  dnsError: ignore\n", 2, /expected one of accept, tempfail, reject, quarantine, got ignore/],
    ["policy:\n  dmarc:\n    enforce: yes please\n", 3, /"policy.dmarc.enforce": expected true or false/],
    ["internalHosts:\n  - 10.0.0.0/33\n", 2, /internalHosts/],
    ["signing:\n  keys:\n    - domain: example.com\n      selector: s1\n", 3, /"signing.keys" entry 1 lacks "keyFile"/],
    ["signing:\n  keys:\n    - domain: exa mple.com\n      selector: s1\n      keyFile: /k\n", 3, /is not a domain/],
    ["dns:\n  servers: [dns.example]\n", 2, /DNS server must be an IP address/],
    ["log: debug\n", 1, /"log" must be a section of options/],
    ["milter:\n  socket: [a, b]\n", 2, /"milter.socket" must be a single value/],
    ["- just\n- a list\n", 1, /must be a mapping of options/],
    ["milter:\n  socket: a\n  socket: b\n", 3, /YAML syntax/],
    ["milter:\n\tsocket: x\n", 2, /YAML syntax/],
  ])("rejects %j at line %i", (text, line, message) => {
    const err = error(text);
    expect(err.line).toBe(line);
    expect(err.message).toMatch(message);
  });
});

describe("loadConfig", () => {
  it("uses the embedded defaults when no path is given and the default file is absent", () => {
    const loaded = loadConfig();
    expect(loaded.source).toBeUndefined();
    expect(loaded.config.milter.socket).toBe("inet:8891@127.0.0.1");
  });

  it("fails with the path when an explicit file is missing", () => {
    expect(() => loadConfig(join(dir, "missing.yaml"))).toThrow(/missing\.yaml:0:0: cannot read the file/);
  });

  it("reads an explicit file", () => {
    const path = join(dir, "a.yaml");
    writeFileSync(path, "milter:\n  socket: inet:9999@127.0.0.1\n");
    expect(loadConfig(path)).toEqual({ source: path, config: { ...defaultConfig(), milter: { ...defaultConfig().milter, socket: "inet:9999@127.0.0.1" } } });
  });
});

describe("parseDuration", () => {
  it.each([
    [30, 30_000],
    ["30s", 30_000],
    ["1.5m", 90_000],
    ["250ms", 250],
    ["2h", 7_200_000],
    ["5", undefined],
    ["-1s", undefined],
    [true, undefined],
  ])("%j → %j", (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });
});

describe("config/authmilter.example.yaml", () => {
  it("is valid and states exactly the defaults", async () => {
    const { readFileSync } = await import("node:fs");
    const text = readFileSync(new URL("../../config/authmilter.example.yaml", import.meta.url), "utf8");
    expect(parseConfig(text, "authmilter.example.yaml")).toEqual(defaultConfig());
  });
});
