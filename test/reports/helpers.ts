import { execFile, spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { writeFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino, type Logger } from "pino";
import type { HistoryRecord } from "../../src/reports/history.ts";

export const XSD = fileURLToPath(new URL("../fixtures/reports/rfc7489-appendix-c.xsd", import.meta.url));
export const REPO = fileURLToPath(new URL("../../", import.meta.url));

const NODE = join(REPO, "node_modules/.bin/node");
const MAIN = join(REPO, "src/cli/main.ts");

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The real command, as cron or an operator runs it: a separate Node process on main.ts. */
export function cli(args: readonly string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(NODE, [MAIN, ...args], { cwd: REPO, encoding: "utf8" }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

export { tempDir } from "../support/temp-dir.ts";

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

/** A real pino logger whose JSON lines land in an array, so tests can see what was logged. */
export function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines };
}

export const LEVEL = { debug: 20, info: 30, warn: 40, error: 50 } as const;

function findExecutable(name: string): string | undefined {
  for (const dir of (process.env["PATH"] ?? "").split(delimiter).filter((d) => d !== "")) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

export const XMLLINT = findExecutable("xmllint");
/**
 * Without xmllint (Debian: libxml2-utils) the schema tests skip on a workstation; under CI they
 * run and fail, so a CI image that lost the package cannot pass with validation silently off.
 */
export const SKIP_XMLLINT = XMLLINT === undefined && process.env["CI"] !== "true";

export interface Validation {
  readonly ok: boolean;
  readonly output: string;
}

export async function validateReport(xml: string, dir: string, name = "report.xml"): Promise<Validation> {
  if (XMLLINT === undefined) throw new Error("xmllint is not installed (apt-get install libxml2-utils)");
  const file = join(dir, name);
  await writeFile(file, xml);
  const r = spawnSync(XMLLINT, ["--noout", "--schema", XSD, file], { encoding: "utf8" });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

/** Text of the first node an XPath selects, as an XML parser (not our writer) reads it back. */
export async function xpathString(xml: string, dir: string, xpath: string): Promise<string> {
  if (XMLLINT === undefined) throw new Error("xmllint is not installed (apt-get install libxml2-utils)");
  const file = join(dir, "xpath.xml");
  await writeFile(file, xml);
  const r = spawnSync(XMLLINT, ["--xpath", `string(${xpath})`, file], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`xmllint --xpath failed: ${r.stderr}`);
  // xmllint ends its answer with a newline of its own.
  return r.stdout.replace(/\n$/, "");
}

export const T0 = new Date("2024-05-01T00:00:00Z");
export const T1 = new Date("2024-05-02T00:00:00Z");
export const T0_S = 1714521600;

export function at(iso: string): Date {
  return new Date(iso);
}

/** An ordinary message from example.com that passed everything; tests override what they need. */
export function message(over: Partial<HistoryRecord> = {}): HistoryRecord {
  return {
    time: at("2024-05-01T10:00:00Z"),
    queueId: "4Vabc123",
    sourceIp: "192.0.2.10",
    headerFrom: "example.com",
    envelopeFrom: "example.com",
    dkim: [{ domain: "example.com", selector: "s1", result: "pass" }],
    spf: [{ domain: "example.com", scope: "mfrom", result: "pass" }],
    dmarc: "pass",
    dkimAligned: "pass",
    spfAligned: "pass",
    policy: { domain: "example.com", p: "reject", rua: ["mailto:dmarc@example.com"], ruf: [] },
    disposition: "none",
    ...over,
  };
}

/** A message with every field of a record set, none of them to its default. */
export const FULL: HistoryRecord = {
  time: at("2024-05-01T12:34:56.789Z"),
  queueId: "4VXYZ1",
  sourceIp: "2001:db8::25",
  headerFrom: "news.example.com",
  envelopeFrom: "bounce.example.com",
  dkim: [
    { domain: "example.com", selector: "2024a", result: "pass" },
    { domain: "esp.example", selector: "k1", result: "fail", humanResult: "signature did not verify" },
  ],
  spf: [
    { domain: "mx.esp.example", scope: "helo", result: "pass" },
    { domain: "bounce.example.com", scope: "mfrom", result: "softfail" },
  ],
  dmarc: "pass",
  dkimAligned: "pass",
  spfAligned: "fail",
  policy: {
    domain: "example.com",
    p: "quarantine",
    sp: "reject",
    pct: 50,
    testing: false,
    adkim: "s",
    aspf: "r",
    fo: "1",
    rua: ["mailto:agg@example.com", "mailto:third@party.example!10m"],
    ruf: ["mailto:forensic@example.com"],
  },
  disposition: "none",
  overrides: [{ type: "sampled_out", comment: "pct=50" }],
};
