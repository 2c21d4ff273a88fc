import { defineConfig } from 'vitest/config';

// One test run for every package. Tests sit beside the code as `*.test.ts`;
// integration tests start real neighbours (ipykernel, anvil, chromium, jupyter_server)
// and so get generous timeouts. CI has 2 cores: files run in forks, at most 2 at once.
export default defineConfig({
  test: {
    include: ['{protocol,kernel-gateway,provider-kernel,contracts,ide,scripts,bench,e2e}/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**', 'contracts/out/**', 'contracts/lib/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
  },
});
