import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['core/**/*.test.ts', 'test/**/*.test.ts'],
    // Spawned fleetgate processes run build/ (bin/fleetgate.js): compile it before any test starts.
    globalSetup: ['test/helpers/compiled-build.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests open real TLS sockets and spawn processes; two cores, so keep parallelism modest.
    pool: 'forks',
    maxWorkers: 2,
  },
});
