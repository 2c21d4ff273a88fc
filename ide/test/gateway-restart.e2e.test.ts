// The IDE across a gateway restart (as a deploy does it: graceful stop, start on the same
// port and data dir): the notebook keeps its session and its kernel's state, and is usable
// again within seconds. The gateway closes client channels with 1012 so that the client
// library reconnects; the IDE's ReconnectWatcher (src/kernel/reconnect.ts) reconnects as soon
// as the kernel is ready again instead of the library's random 10-30 s wait.
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensureBuilt, hasJupyter, launchChromium, startKinesis, type Proc } from './harness.ts';
import * as P from './pages.ts';

const TOKEN = `tok-${Math.random().toString(36).slice(2)}-secret`;
let kinesis: Proc;
let browser: Browser;

if (!hasJupyter()) throw new Error('these tests need Debian python3-ipykernel (apt-get install python3-ipykernel)');

beforeAll(async () => {
  ensureBuilt();
  kinesis = await startKinesis(TOKEN);
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await kinesis?.close();
});

it('a notebook keeps its kernel and its state across a gateway restart', async () => {
  const { page, errors } = await P.newNotebook(browser, kinesis.url, TOKEN);
  const c0 = await P.addAndRun(page, 'x = 41');
  await expect.poll(() => P.cellAt(page, c0).locator('.prompt').textContent()).toBe('[1]');
  await P.waitIdle(page);

  const restartedAt = Date.now();
  // Down for 2 s, as a process restart is: the library's first reconnect fails meanwhile.
  await kinesis.restartGateway!(2000);
  await P.waitIdle(page, 30_000);
  const c1 = await P.addAndRun(page, 'print(x + 1)');
  await expect.poll(() => P.cellAt(page, c1).locator('.out-stream').textContent(), { timeout: 30_000 }).toContain('42');
  // Well inside the client library's own 10-30 s wait.
  expect(Date.now() - restartedAt).toBeLessThan(15_000);
  await expect.poll(() => P.cellAt(page, c1).locator('.prompt').textContent()).toBe('[2]');
  expect(errors).toEqual([]);
}, 90_000);
