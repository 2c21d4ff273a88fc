// The Jupyter Server REST surface, against a gateway on a real port with test peers
// (../testing/provider-peer.ts, NOT the real provider) standing in for providers.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CPU_HARDWARE, gpuHardware, ProviderPeer, PYTHON_SPEC } from './testing/provider-peer.ts';
import { startTestGateway, TOKEN, until, type TestGateway } from './testing/harness.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ISO_MS_Z = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

let gw: TestGateway;
const peers: ProviderPeer[] = [];
const peer = async (o: Parameters<typeof ProviderPeer.connect>[1] = {}): Promise<ProviderPeer> => {
  const p = await ProviderPeer.connect(gw.url, o);
  peers.push(p);
  return p;
};

beforeEach(async () => {
  gw = await startTestGateway();
});
afterEach(async () => {
  for (const p of peers.splice(0)) p.kill();
  await gw.stop();
});

describe('auth', () => {
  it('accepts the token in the Authorization header or the query, refuses others with 403 JSON', async () => {
    expect((await gw.api('/api/status')).status).toBe(200);
    expect((await fetch(`${gw.url}/api/status?token=${TOKEN}`)).status).toBe(200);
    expect((await fetch(`${gw.url}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    for (const headers of [{} as Record<string, string>, { authorization: 'token nope' }, { authorization: `token ${TOKEN}x` }, { authorization: TOKEN }]) {
      const r = await fetch(`${gw.url}/api/kernels`, { headers });
      expect(r.status).toBe(403);
      expect(await r.json()).toMatchObject({ message: expect.stringContaining('token') });
    }
    expect((await fetch(`${gw.url}/kernelspecs/x/logo-64x64.png`)).status).toBe(403);
  });
});

describe('GET /api, /api/status', () => {
  it('answers as Jupyter Server', async () => {
    const api = await gw.api('/api');
    expect(api.body).toMatchObject({ version: expect.stringMatching(/^2\./) });
    const st = await gw.api('/api/status');
    expect(st.body).toMatchObject({ started: expect.stringMatching(ISO_MS_Z), last_activity: expect.stringMatching(ISO_MS_Z), connections: 0, kernels: 0 });
  });

  it('gives JSON 404s for unknown API paths and 405 for wrong methods', async () => {
    expect((await gw.api('/api/nope')).status).toBe(404);
    expect((await gw.api('/api/kernels', { method: 'PUT' })).status).toBe(405);
  });
});

describe('kernelspecs', () => {
  it('is empty with default "" while no provider is connected', async () => {
    expect((await gw.api('/api/kernelspecs')).body).toEqual({ default: '', kernelspecs: {} });
  });

  it('aggregates providers into hardware-class names with price and hardware in the display name', async () => {
    const cpu = await peer({ pricePerKwh: 500n });
    await peer({ pricePerKwh: 300n });
    const gpu = await peer({ hardware: gpuHardware('NVIDIA GeForce RTX 4090', 24564), pricePerKwh: 2000n });
    const { body } = await gw.api('/api/kernelspecs');
    expect(Object.keys(body.kernelspecs).sort()).toEqual(['python3', 'python3-cpu', 'python3-nvidia-rtx-4090-24g']);
    // The bare name is on offer too (cheapest of any hardware) and is the default, as in Jupyter.
    expect(body.default).toBe('python3');
    expect(body.kernelspecs['python3'].spec.display_name).toBe('Python 3 (ipykernel) · cheapest available (CPU, 32 GB RAM / NVIDIA RTX 4090 24 GB) · from 300 per kWh');
    expect(body.kernelspecs['python3'].spec.metadata.kinesis).toMatchObject({ alias: true, hardwareClass: 'any', hardwareClasses: ['cpu', 'nvidia-rtx-4090-24g'], pricePerKwh: '300' });
    expect(body.kernelspecs['python3'].spec.metadata.kinesis.providers).toHaveLength(3);
    const c = body.kernelspecs['python3-cpu'];
    expect(c.name).toBe('python3-cpu');
    expect(c.spec).toMatchObject({ language: 'python', argv: expect.any(Array), env: {}, interrupt_mode: 'signal' });
    expect(c.spec.display_name).toBe('Python 3 (ipykernel) · CPU, 32 GB RAM · from 300 per kWh');
    expect(c.spec.metadata.debugger).toBe(true);
    expect(c.spec.metadata.kinesis).toMatchObject({ gpu: null, pricePerKwh: '300', memoryMiB: CPU_HARDWARE.memoryMiB });
    expect(c.spec.metadata.kinesis.providers.map((p: { id: string }) => p.id).sort()).toEqual([cpu.address, peers[1]!.address].sort());
    expect(c.resources).toEqual({ 'logo-64x64': '/kernelspecs/python3-cpu/logo-64x64.png' });
    const g = body.kernelspecs['python3-nvidia-rtx-4090-24g'];
    expect(g.spec.display_name).toBe('Python 3 (ipykernel) · NVIDIA RTX 4090 24 GB · 2,000 per kWh');
    expect(g.spec.metadata.kinesis).toMatchObject({ provider: gpu.address, gpu: 'NVIDIA GeForce RTX 4090', memoryMiB: 24564, providers: [{ id: gpu.address, pricePerKwh: '2000' }] });
    expect(c.spec.metadata.kinesis.provider).toBe(peers[1]!.address); // the cheaper CPU provider
    expect(typeof g.spec.metadata.kinesis.latencyMs === 'number' || g.spec.metadata.kinesis.latencyMs === null).toBe(true);

    const one = await gw.api('/api/kernelspecs/python3-cpu');
    expect(one.body).toEqual(c);
    expect((await gw.api('/api/kernelspecs/nope')).status).toBe(404);
    const logo = await fetch(`${gw.url}/kernelspecs/python3-cpu/logo-64x64.png?token=${TOKEN}`);
    expect(logo.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await logo.arrayBuffer()).toString('utf8')).toBe('\x89PNG fake logo bytes');
    expect((await fetch(`${gw.url}/kernelspecs/python3-cpu/nope.png?token=${TOKEN}`)).status).toBe(404);
  });

  it('drops a provider\'s specs when it disconnects', async () => {
    const p = await peer();
    expect(Object.keys((await gw.api('/api/kernelspecs')).body.kernelspecs)).toEqual(['python3', 'python3-cpu']);
    await p.close();
    await until(async () => Object.keys((await gw.api('/api/kernelspecs')).body.kernelspecs).length === 0);
  });
});

describe('kernels', () => {
  it('starts promptly as `starting` with a UUID, a Location and the Jupyter model', async () => {
    await peer({ startDelayMs: 2000 });
    const t0 = Date.now();
    const r = await gw.api('/api/kernels', { method: 'POST', json: { name: 'python3-cpu' } });
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ id: expect.stringMatching(UUID), name: 'python3-cpu', execution_state: 'starting', connections: 0, last_activity: expect.stringMatching(ISO_MS_Z) });
    expect(r.headers.get('location')).toBe(`/api/kernels/${r.body.id}`);
    expect((await gw.api('/api/kernels')).body.map((k: { id: string }) => k.id)).toEqual([r.body.id]);
    await until(async () => (await gw.api(`/api/kernels/${r.body.id}`)).body.execution_state === 'idle', 5000, 'idle');
  });

  it('starts the default spec with no body, and a bare base name on any class', async () => {
    await peer();
    expect((await gw.api('/api/kernels', { method: 'POST' })).body.name).toBe('python3-cpu');
    expect((await gw.api('/api/kernels', { method: 'POST', json: { name: 'python3' } })).body.name).toBe('python3-cpu');
  });

  it('places on the cheapest provider that fits the constraints, with load as tie-break', async () => {
    const cheap = await peer({ pricePerKwh: 100n });
    const dear = await peer({ pricePerKwh: 900n });
    const gpu = await peer({ hardware: gpuHardware('NVIDIA A100-SXM4-40GB', 40960), pricePerKwh: 5000n });
    const start = async (json: unknown): Promise<{ status: number; body: any }> => gw.api('/api/kernels', { method: 'POST', json });
    expect((await start({ name: 'python3' })).body.kinesis.provider).toBe(cheap.address);
    expect((await start({ name: 'python3-cpu', kinesis: { provider: dear.address.toLowerCase() } })).body.kinesis.provider).toBe(dear.address);
    expect((await start({ name: 'python3', kinesis: { minGpuMemoryMiB: 16000 } })).body).toMatchObject({ name: 'python3-nvidia-a100-sxm4-40g', kinesis: { provider: gpu.address } });
    expect((await start({ name: 'python3', kinesis: { maxPricePerKwh: '50' } })).status).toBe(400);
    expect((await start({ name: 'python3-nvidia-a100-sxm4-40g', kinesis: { maxPricePerKwh: 1000 } })).status).toBe(400);
    // Same price: the less loaded one wins.
    const a = await peer({ pricePerKwh: 10n });
    const b = await peer({ pricePerKwh: 10n });
    const first = (await start({ name: 'python3-cpu' })).body.kinesis.provider;
    const second = (await start({ name: 'python3-cpu' })).body.kinesis.provider;
    expect(new Set([first, second])).toEqual(new Set([a.address, b.address]));
  });

  it('rejects unknown specs and malformed bodies with 400 JSON', async () => {
    await peer();
    for (const init of [
      { json: { name: 'nope' } },
      { json: { name: 5 } },
      { json: [1, 2] },
      { body: '{not json', headers: { 'content-type': 'application/json' } },
      { json: { name: 'python3', kinesis: { provider: 'alice' } } },
      { json: { name: 'python3', kinesis: { minGpuMemoryMiB: -1 } } },
      { json: { name: 'python3', env: 'PATH=/evil' } },
    ]) {
      const r = await gw.api('/api/kernels', { method: 'POST', ...init });
      expect(r.status, JSON.stringify(init)).toBe(400);
      expect(r.body.message).toEqual(expect.any(String));
    }
  });

  it('forwards only KERNEL_* and allow-listed environment variables', async () => {
    const p = await peer();
    await gw.api('/api/kernels', { method: 'POST', json: { name: 'python3', env: { KERNEL_USERNAME: 'ada', LANG: 'C.UTF-8', PATH: '/evil', LD_PRELOAD: 'x.so' } } });
    await until(() => p.requests.some((r) => r.type === 'start_kernel'));
    const req = p.requests.find((r) => r.type === 'start_kernel');
    expect(req && 'env' in req ? req.env : undefined).toEqual({ KERNEL_USERNAME: 'ada', LANG: 'C.UTF-8' });
  });

  it('gives 404 for unknown kernels on every route', async () => {
    const id = crypto.randomUUID();
    expect((await gw.api(`/api/kernels/${id}`)).status).toBe(404);
    expect((await gw.api(`/api/kernels/${id}`, { method: 'DELETE' })).status).toBe(404);
    expect((await gw.api(`/api/kernels/${id}/interrupt`, { method: 'POST' })).status).toBe(404);
    expect((await gw.api(`/api/kernels/${id}/restart`, { method: 'POST' })).status).toBe(404);
    const ws = await fetch(`${gw.url}/api/kernels/${id}/channels?token=${TOKEN}`, { headers: { connection: 'upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } }).catch((e: unknown) => e);
    expect(ws instanceof Response ? ws.status : 404).toBe(404);
  });

  it('interrupts, restarts and deletes through the provider', async () => {
    const p = await peer();
    const { body: k } = await gw.api('/api/kernels', { method: 'POST', json: {} });
    await until(async () => (await gw.api(`/api/kernels/${k.id}`)).body.execution_state === 'idle');
    expect((await gw.api(`/api/kernels/${k.id}/interrupt`, { method: 'POST' })).status).toBe(204);
    const rs = await gw.api(`/api/kernels/${k.id}/restart`, { method: 'POST' });
    expect(rs.status).toBe(200);
    expect(rs.body).toMatchObject({ id: k.id, execution_state: 'idle' });
    expect((await gw.api(`/api/kernels/${k.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await gw.api(`/api/kernels/${k.id}`)).status).toBe(404);
    expect(p.requests.map((r) => r.type)).toEqual(['start_kernel', 'interrupt_kernel', 'restart_kernel', 'shutdown_kernel']);
  });

  it('marks a kernel dead when its start fails', async () => {
    await peer({ failStart: 'no such kernelspec' });
    const { body: k } = await gw.api('/api/kernels', { method: 'POST', json: {} });
    await until(async () => (await gw.api(`/api/kernels/${k.id}`)).body.execution_state === 'dead');
    expect((await gw.api(`/api/kernels/${k.id}/restart`, { method: 'POST' })).status).toBe(409);
  });
});

describe('sessions', () => {
  it('does full CRUD as Jupyter Server', async () => {
    await peer();
    const created = await gw.api('/api/sessions', { method: 'POST', json: { path: 'a.ipynb', name: 'a.ipynb', type: 'notebook', kernel: { name: 'python3-cpu' } } });
    expect(created.status).toBe(201);
    const s = created.body;
    expect(s).toMatchObject({ id: expect.stringMatching(UUID), path: 'a.ipynb', name: 'a.ipynb', type: 'notebook', kernel: { name: 'python3-cpu', execution_state: 'starting' }, notebook: { path: 'a.ipynb', name: 'a.ipynb' } });
    expect(created.headers.get('location')).toBe(`/api/sessions/${s.id}`);
    // Same path: the existing session.
    expect((await gw.api('/api/sessions', { method: 'POST', json: { path: 'a.ipynb', type: 'notebook' } })).body.id).toBe(s.id);
    expect((await gw.api('/api/sessions')).body.map((x: { id: string }) => x.id)).toEqual([s.id]);
    expect((await gw.api(`/api/sessions/${s.id}`)).body.kernel.id).toBe(s.kernel.id);

    const renamed = await gw.api(`/api/sessions/${s.id}`, { method: 'PATCH', json: { path: 'b.ipynb', name: 'b.ipynb' } });
    expect(renamed.body).toMatchObject({ path: 'b.ipynb', kernel: { id: s.kernel.id } });
    const swapped = await gw.api(`/api/sessions/${s.id}`, { method: 'PATCH', json: { kernel: { name: 'python3-cpu' } } });
    expect(swapped.body.kernel.id).not.toBe(s.kernel.id);
    await until(async () => (await gw.api(`/api/kernels/${s.kernel.id}`)).status === 404, 5000, 'the old kernel to be shut down');

    // Attach a second session to an existing kernel by id.
    const other = await gw.api('/api/sessions', { method: 'POST', json: { path: 'c.py', type: 'console', kernel: { id: swapped.body.kernel.id } } });
    expect(other.body.kernel.id).toBe(swapped.body.kernel.id);
    expect(other.body.notebook).toBeUndefined();

    expect((await gw.api(`/api/sessions/${s.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await gw.api(`/api/sessions/${s.id}`)).status).toBe(404);
    // Its kernel went with it, and so did the other session on that kernel.
    expect((await gw.api(`/api/kernels/${swapped.body.kernel.id}`)).status).toBe(404);
    expect((await gw.api('/api/sessions')).body).toEqual([]);
  });

  it('validates bodies and ids', async () => {
    await peer();
    expect((await gw.api('/api/sessions', { method: 'POST', json: { name: 'x' } })).status).toBe(400);
    expect((await gw.api('/api/sessions', { method: 'POST', json: { path: 'x', kernel: 'python3' } })).status).toBe(400);
    expect((await gw.api('/api/sessions', { method: 'POST', json: { path: 'x', kernel: { name: 'nope' } } })).status).toBe(400);
    expect((await gw.api(`/api/sessions/${crypto.randomUUID()}`, { method: 'PATCH', json: {} })).status).toBe(404);
    expect((await gw.api(`/api/sessions/${crypto.randomUUID()}`, { method: 'DELETE' })).status).toBe(404);
    const s = (await gw.api('/api/sessions', { method: 'POST', json: { path: 'x' } })).body;
    expect((await gw.api(`/api/sessions/${s.id}`, { method: 'PATCH', json: { kernel: { id: crypto.randomUUID() } } })).status).toBe(400);
  });
});

describe('providers', () => {
  it('lists connected providers with hardware, specs, price, since and kernel count', async () => {
    const p = await peer({ name: 'rig', hardware: gpuHardware('NVIDIA GeForce RTX 3090', 24576, 2), pricePerKwh: 1234n, kernelspecs: [PYTHON_SPEC] });
    await gw.api('/api/kernels', { method: 'POST', json: {} });
    await until(async () => (await gw.api('/api/providers')).body[0]?.latencyMs !== null);
    const { body } = await gw.api('/api/providers');
    expect(body).toEqual([
      {
        id: p.address,
        address: p.address,
        name: 'rig',
        hardware: gpuHardware('NVIDIA GeForce RTX 3090', 24576, 2),
        hardwareClass: '2x-nvidia-rtx-3090-24g',
        hardwareLabel: '2× NVIDIA RTX 3090 24 GB',
        kernelspecs: ['python3-2x-nvidia-rtx-3090-24g'],
        pricePerKwh: '1234',
        connectedSince: expect.stringMatching(ISO_MS_Z),
        kernels: 1,
        latencyMs: expect.any(Number),
      },
    ]);
    expect((await gw.api(`/api/providers/${p.address.toLowerCase()}`)).body.id).toBe(p.address);
    expect((await gw.api(`/api/providers/0x${'0'.repeat(40)}`)).status).toBe(404);
  });
});
