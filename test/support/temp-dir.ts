// Private temporary directories for tests (mode 0700 from mkdtemp), removed afterwards.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach } from "vitest";

export async function tempDir(prefix = "authmilter-test-"): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A fresh directory for every test of the file, handed to `use` before each and removed after. */
export function freshDirEachTest(use: (dir: string) => void, prefix?: string): void {
  let cleanup: (() => Promise<void>) | undefined;
  beforeEach(async () => {
    const t = await tempDir(prefix);
    cleanup = t.cleanup;
    use(t.dir);
  });
  afterEach(async () => {
    await cleanup?.();
  });
}
