import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    // One throwaway CA per run, trusted by every worker (NODE_EXTRA_CA_CERTS), for the HTTPS stand-ins.
    globalSetup: ['test/support/global-setup.ts'],
    // vitest's own summary, then one plain `N passed, N failed, N skipped` line for CI.
    reporters: ['default', './test/support/summary-reporter.ts'],
    // vitest's default is one worker per core less one: a single worker on CI's 2 cores. Most files wait on child
    // processes, sockets and timers (the local DPS, the fake az, Azurite, Chromium), so two workers halve the run.
    maxWorkers: 2,
    // Hang guards, not speed goals (bench/ measures speed): a script test starts a few hundred fake-az processes and
    // an end-to-end test a DPS, a webhook and SDK clients, which on a busy two-core machine take three times as long.
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
