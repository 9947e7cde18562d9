import { defineConfig } from 'vitest/config';

// Integration tests start real processes (nats-server, CRIU, workloads on cudasim): give them time, and
// run files in parallel only as far as 2 cores allow.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['default'],
  },
});
