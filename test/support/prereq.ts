// Whether the end-to-end suites can run here. On a developer machine without Postfix they skip
// with the reason in the suite name; under CI (CI=true) a missing tool must fail the run, or a
// broken CI image would pass with every end-to-end test silently skipped.

import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** Where Debian puts the Postfix programs; sbin is often not on a non-root PATH. */
const EXTRA_DIRS = ["/usr/sbin", "/sbin", "/usr/lib/postfix/sbin"];

export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env["PATH"] ?? "").split(delimiter).filter((d) => d !== ""), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

export interface E2EGate {
  /** True when the suite should be skipped (never under CI). */
  readonly skip: boolean;
  /** Suffix for the suite name, e.g. " [skipped: swaks not installed]". */
  readonly label: string;
  /** Call in beforeAll: throws the reason when the suite runs without what it needs (CI). */
  assertReady(): void;
}

export interface GateOptions {
  /** Executables that must be installed (looked up in PATH and the sbin directories). */
  readonly tools: readonly string[];
  /** A private Postfix instance can only be started by root. */
  readonly root?: boolean;
}

export function e2eGate(options: GateOptions): E2EGate {
  const problems: string[] = [];
  const missing = options.tools.filter((tool) => findExecutable(tool) === undefined);
  if (missing.length > 0) problems.push(`not installed: ${missing.join(", ")} (apt-get install postfix swaks miltertest)`);
  if (options.root === true && process.getuid?.() !== 0) problems.push("must run as root to start a private Postfix instance");
  const reason = problems.join("; ");
  const ci = process.env["CI"] === "true";
  return {
    skip: problems.length > 0 && !ci,
    label: problems.length === 0 ? "" : ci ? ` [CI: ${reason}]` : ` [skipped: ${reason}]`,
    assertReady() {
      if (problems.length > 0) throw new Error(`end-to-end prerequisites missing under CI=true: ${reason}`);
    },
  };
}
