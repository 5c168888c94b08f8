import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, writeFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

export const FIXTURES = fileURLToPath(new URL("../fixtures/keys/", import.meta.url));

export { tempDir } from "../support/temp-dir.ts";

export async function writeKey(dir: string, name: string, data: string | Buffer, mode: number): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, data);
  await chmod(path, mode);
  return path;
}

// opendkim-genkey lives in /usr/sbin, which is not on every user's PATH.
function findGenkey(): string | undefined {
  const dirs = [...(process.env["PATH"] ?? "").split(delimiter), "/usr/sbin", "/usr/bin"];
  for (const d of dirs) {
    const p = join(d, "opendkim-genkey");
    if (d !== "" && existsSync(p)) {
      const r = spawnSync(p, ["-V"], { encoding: "utf8" });
      if (r.status === 0) return p;
    }
  }
  return undefined;
}

export const OPENDKIM_GENKEY = findGenkey();
/** CI installs opendkim-tools, so there a missing binary is a failure, not a skip. */
export const REQUIRE_INTEROP = process.env["CI"] === "true";

export function runGenkey(dir: string, args: readonly string[]): void {
  if (OPENDKIM_GENKEY === undefined) throw new Error("opendkim-genkey is not installed but CI=true requires the interop tests");
  const r = spawnSync(OPENDKIM_GENKEY, ["-D", dir, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`opendkim-genkey failed (${r.status}): ${r.stderr}`);
}
