import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['core/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests open real TLS sockets and spawn processes; two cores, so keep parallelism modest.
    pool: 'forks',
    maxWorkers: 2,
  },
});
