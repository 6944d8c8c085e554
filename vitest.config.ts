import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // Integration tests share one machine's Redis (each with its own prefix) and spawn
    // servers; two workers keep a 2-core machine responsive. One pool for all projects.
    maxWorkers: 2,
    // Each project's name prefixes its tests' names, so the output says which store ran.
    projects: [
      {
        extends: true,
        test: {
          name: "sqlite",
          include: ["test/**/*.test.ts"],
          // No project-level `exclude`: it would replace the command line's --exclude
          // (npm test's 'test/chaos/**'). test/integration/postgres.test.ts skips itself here.
        },
      },
      {
        // The same integration suite on PostgreSQL: the harness puts each app on a schema
        // of its own (dropped at stop). Unit, store-contract and chaos tests choose their
        // stores themselves, so they run once, in the sqlite project.
        extends: true,
        test: {
          name: "postgres",
          include: ["test/integration/**/*.test.ts"],
          env: { COUNTERSIGN_TEST_STORE: "postgres" },
        },
      },
    ],
  },
});
