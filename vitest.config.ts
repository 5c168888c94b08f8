import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The end-to-end tests start private Postfix instances and daemons; they need room.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
