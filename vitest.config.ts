import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // Integration tests share one machine's Redis (each with its own prefix) and spawn
    // servers; two workers keep a 2-core machine responsive.
    maxWorkers: 2,
  },
});
