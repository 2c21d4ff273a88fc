// Idle culling with Jupyter's knobs, against a gateway with a test peer (NOT the real provider).
import { afterEach, describe, expect, it } from 'vitest';
import { ProviderPeer, sleep } from '../testing/provider-peer.ts';
import { startTestGateway, TestClient, until, type TestGateway } from '../testing/harness.ts';
import type { CullOptions } from './culler.ts';

let gw: TestGateway | undefined;
const closers: (() => void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) c();
  await gw?.stop();
  gw = undefined;
});

async function setup(cull: CullOptions): Promise<{ kernelId: string; peer: ProviderPeer }> {
  gw = await startTestGateway({ cull });
  const peer = await ProviderPeer.connect(gw.url);
  closers.push(() => peer.kill());
  const { body } = await gw.api('/api/kernels', { method: 'POST', json: {} });
  await until(async () => (await gw!.api(`/api/kernels/${body.id}`)).body.execution_state === 'idle');
  return { kernelId: body.id, peer };
}

const exists = async (id: string): Promise<boolean> => (await gw!.api(`/api/kernels/${id}`)).status === 200;

describe('culling', () => {
  it('shuts down an idle, unconnected kernel after cull_idle_timeout and tells the provider', async () => {
    const { kernelId, peer } = await setup({ cull_idle_timeout: 0.3, cull_interval: 0.1 });
    await until(async () => !(await exists(kernelId)), 3000, 'the kernel to be culled');
    await until(() => peer.requests.some((r) => r.type === 'shutdown_kernel'));
  });

  it('spares connected kernels unless cull_connected', async () => {
    const { kernelId } = await setup({ cull_idle_timeout: 0.2, cull_interval: 0.1 });
    const c = await TestClient.connect(gw!.url, kernelId);
    closers.push(() => c.ws.terminate());
    await sleep(600);
    expect(await exists(kernelId)).toBe(true);
  });

  it('culls connected kernels with cull_connected', async () => {
    const { kernelId } = await setup({ cull_idle_timeout: 0.2, cull_interval: 0.1, cull_connected: true });
    const c = await TestClient.connect(gw!.url, kernelId);
    closers.push(() => c.ws.terminate());
    await until(async () => !(await exists(kernelId)), 3000, 'the kernel to be culled');
    expect((await c.closed).code).toBe(1000);
  });

  it('spares busy kernels unless cull_busy', async () => {
    for (const cull_busy of [false, true]) {
      const { kernelId, peer } = await setup({ cull_idle_timeout: 0.2, cull_interval: 0.1, cull_busy });
      // The kernel reports busy (a long-running cell) and then says nothing.
      peer.sendKernelMessage(kernelId, (await import('@kinesis/protocol')).makeMessage({ channel: 'iopub', msgType: 'status', session: 's', content: { execution_state: 'busy' } }));
      await until(async () => (await gw!.api(`/api/kernels/${kernelId}`)).body.execution_state === 'busy');
      await sleep(600);
      expect(await exists(kernelId)).toBe(!cull_busy);
      for (const c of closers.splice(0)) c();
      await gw!.stop();
      gw = undefined;
    }
  });

  it('does nothing with cull_idle_timeout 0', async () => {
    const { kernelId } = await setup({ cull_idle_timeout: 0, cull_interval: 0.05 });
    await sleep(300);
    expect(await exists(kernelId)).toBe(true);
  });
});
