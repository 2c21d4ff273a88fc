// A gateway restart keeps its kernels and sessions (state-file.ts): they are listed at once,
// `starting`, and re-attached when their provider reconnects, so that a client polling the
// REST API (as @jupyterlab/services does) never sees its session vanish and start another
// kernel. Providers here are test peers (./testing/provider-peer.ts), NOT the real provider.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wallet } from 'ethers';
import { afterEach, describe, expect, it } from 'vitest';
import type { StartGatewayOptions } from './index.ts';
import { ProviderPeer } from './testing/provider-peer.ts';
import { startTestGateway, TestClient, until, type TestGateway } from './testing/harness.ts';

const dirs: string[] = [];
const gws: TestGateway[] = [];
const peers: ProviderPeer[] = [];

afterEach(async () => {
  for (const p of peers.splice(0)) p.kill();
  for (const g of gws.splice(0)) await g.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'kinesis-restart-'));
  dirs.push(d);
  return d;
}

async function gateway(dir: string, o: Partial<StartGatewayOptions> = {}): Promise<TestGateway> {
  const g = await startTestGateway({ ...o, dataDir: dir });
  gws.push(g);
  return g;
}

async function stop(g: TestGateway): Promise<void> {
  gws.splice(gws.indexOf(g), 1);
  await g.stop();
}

async function peer(g: TestGateway, wallet: Wallet, kernels: { kernelId: string; specName: string; status: 'idle' }[] = []): Promise<ProviderPeer> {
  const p = await ProviderPeer.connect(g.url, { wallet, kernels });
  peers.push(p);
  return p;
}

const state = async (g: TestGateway, id: string): Promise<string | undefined> => {
  const r = await g.api(`/api/kernels/${id}`);
  return r.status === 200 ? r.body.execution_state : undefined;
};

/** A gateway with a provider and one notebook session on it; the gateway is then stopped. */
async function before(dir: string): Promise<{ wallet: Wallet; sessionId: string; kernelId: string }> {
  const wallet = Wallet.createRandom() as unknown as Wallet;
  const g = await gateway(dir);
  const p = await peer(g, wallet);
  const created = await g.api('/api/sessions', { method: 'POST', json: { path: 'work/a.ipynb', name: 'a.ipynb', type: 'notebook', kernel: { name: 'python3-cpu' } } });
  expect(created.status).toBe(201);
  const kernelId: string = created.body.kernel.id;
  await until(async () => (await state(g, kernelId)) === 'idle');
  await stop(g);
  p.kill();
  return { wallet, sessionId: created.body.id, kernelId };
}

describe('a gateway restart', () => {
  it('lists its kernels and sessions at once, starting, and re-attaches them when their provider reconnects', async () => {
    const dir = dataDir();
    const { wallet, sessionId, kernelId } = await before(dir);
    expect(JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'))).toMatchObject({ version: 1, kernels: [{ id: kernelId, name: 'python3-cpu', baseSpec: 'python3', providerId: wallet.address }], sessions: [{ id: sessionId, kernelId }] });

    const g = await gateway(dir);
    expect((await g.api('/api/kernels')).body).toMatchObject([{ id: kernelId, name: 'python3-cpu', execution_state: 'starting' }]);
    expect((await g.api('/api/sessions')).body).toMatchObject([{ id: sessionId, path: 'work/a.ipynb', kernel: { id: kernelId } }]);
    // Asking for the same path again joins that session rather than starting a kernel.
    const again = await g.api('/api/sessions', { method: 'POST', json: { path: 'work/a.ipynb', type: 'notebook', kernel: { name: 'python3-cpu' } } });
    expect(again.body.id).toBe(sessionId);

    // A client that connects before the provider is back: its request waits, then is answered.
    const c = await TestClient.connect(g.url, kernelId, { v1: true });
    const req = c.request('shell', 'kernel_info_request');
    await peer(g, wallet, [{ kernelId, specName: 'python3', status: 'idle' }]);
    expect((await c.reply(req, 10_000)).header.msg_type).toBe('kernel_info_reply');
    expect(await state(g, kernelId)).toBe('idle');
    c.ws.terminate();

    // Deleting the session and its kernel is remembered too.
    expect((await g.api(`/api/sessions/${sessionId}`, { method: 'DELETE' })).status).toBe(204);
    await until(async () => (await state(g, kernelId)) === undefined);
    await stop(g);
    const g2 = await gateway(dir);
    expect((await g2.api('/api/sessions')).body).toEqual([]);
    expect((await g2.api('/api/kernels')).body).toEqual([]);
  });

  it('a restored kernel whose provider is late is forgotten, not condemned: adopted when it comes back; one its provider no longer runs is dead at once', async () => {
    const dir = dataDir();
    const first = await before(dir);
    const g = await gateway(dir, { tuning: { restoreGraceMs: 300 } });
    expect(await state(g, first.kernelId)).toBe('starting');
    await until(async () => (await state(g, first.kernelId)) === undefined, 5000);
    expect((await g.api('/api/sessions')).body).toEqual([]);
    // The provider still runs it: when it reconnects at last, the kernel is adopted, alive.
    const late = await peer(g, first.wallet, [{ kernelId: first.kernelId, specName: 'python3', status: 'idle' }]);
    await until(async () => (await state(g, first.kernelId)) === 'idle', 5000);
    expect(late.requests.filter((r) => r.type === 'shutdown_kernel')).toEqual([]);
    await until(() => JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')).kernels.some((k: { id: string }) => k.id === first.kernelId), 2000);
    await stop(g);

    const dir2 = dataDir();
    const second = await before(dir2);
    const g2 = await gateway(dir2);
    await peer(g2, second.wallet); // reconnects without the kernel
    await until(async () => (await state(g2, second.kernelId)) === 'dead', 5000);
  });

  it('a kernel dead before the restart stays dead, and one deleted while its provider was away is stopped when it returns', async () => {
    const dir = dataDir();
    const wallet = Wallet.createRandom() as unknown as Wallet;
    const g = await gateway(dir);
    const p = await peer(g, wallet);
    const start = async (): Promise<string> => {
      const r = await g.api('/api/kernels', { method: 'POST', json: { name: 'python3-cpu' } });
      await until(async () => (await state(g, r.body.id)) === 'idle');
      return r.body.id;
    };
    const [dying, deleted] = [await start(), await start()];
    p.kernelStatus(dying, 'dead', 'killed');
    await until(async () => (await state(g, dying)) === 'dead');
    await stop(g);
    p.kill();

    // Restart 1: the provider is still away; `deleted` is deleted meanwhile (nothing to tell it).
    const g1 = await gateway(dir);
    expect(await state(g1, dying)).toBe('dead');
    expect((await g1.api(`/api/kernels/${deleted}`, { method: 'DELETE' })).status).toBe(204);
    await stop(g1);

    // Restart 2: the provider returns still running both; both are stopped on it, neither adopted.
    const g2 = await gateway(dir);
    const back = await peer(g2, wallet, [dying, deleted].map((kernelId) => ({ kernelId, specName: 'python3', status: 'idle' as const })));
    await until(() => back.requests.filter((r) => r.type === 'shutdown_kernel').length === 2, 5000);
    expect(back.requests.filter((r) => r.type === 'shutdown_kernel').map((r) => (r as { kernelId: string }).kernelId).sort()).toEqual([dying, deleted].sort());
    expect(await state(g2, deleted)).toBeUndefined();
    expect(await state(g2, dying)).toBe('dead');
  });

  it('starts without a state file it cannot read, and skips the rows it cannot trust', async () => {
    const dir = dataDir();
    writeFileSync(join(dir, 'state.json'), '{"version":1,"kernels":[{"id":');
    const g = await gateway(dir);
    expect((await g.api('/api/kernels')).body).toEqual([]);
    await stop(g);

    const good = { id: crypto.randomUUID(), name: 'python3-cpu', baseSpec: 'python3', providerId: Wallet.createRandom().address };
    writeFileSync(
      join(dir, 'state.json'),
      JSON.stringify({
        version: 1,
        kernels: [good, { ...good, id: 'not-a-uuid' }, { ...good, id: crypto.randomUUID(), providerId: 'nobody' }, 7, null],
        sessions: [
          { id: crypto.randomUUID(), path: 'ok.ipynb', name: 'ok.ipynb', type: 'notebook', kernelId: good.id },
          { id: crypto.randomUUID(), path: 'orphan.ipynb', name: 'orphan.ipynb', type: 'notebook', kernelId: crypto.randomUUID() },
          { id: 'x', path: 'bad.ipynb', name: 'bad', type: 'notebook', kernelId: good.id },
        ],
      }),
    );
    const g2 = await gateway(dir);
    expect((await g2.api('/api/kernels')).body.map((k: { id: string }) => k.id)).toEqual([good.id]);
    expect((await g2.api('/api/sessions')).body.map((s: { path: string }) => s.path)).toEqual(['ok.ipynb']);
    await stop(g2);

    writeFileSync(join(dir, 'state.json'), JSON.stringify({ version: 2, kernels: [good], sessions: [] }));
    const g3 = await gateway(dir);
    expect((await g3.api('/api/kernels')).body).toEqual([]);
  });
});
