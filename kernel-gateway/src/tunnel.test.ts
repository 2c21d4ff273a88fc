// The gateway side of the tunnel (docs/protocols.md): handshake, replacement, liveness,
// re-attach after a provider reconnects or the gateway restarts, bad frames. Providers here
// are test peers (./testing/provider-peer.ts), NOT the real provider.
import { afterEach, describe, expect, it } from 'vitest';
import { Wallet } from 'ethers';
import { WebSocket } from 'ws';
import { encodeControl, TUNNEL_SUBPROTOCOL, type JupyterMessage } from '@kinesis/protocol';
import { TUNNEL_HIGH_WATER } from './providers/link.ts';
import { ProviderPeer, sleep } from './testing/provider-peer.ts';
import { startTestGateway, TestClient, until, type TestGateway } from './testing/harness.ts';

const gws: TestGateway[] = [];
const peers: ProviderPeer[] = [];
const clients: TestClient[] = [];
const start = async (o: Parameters<typeof startTestGateway>[0] = {}): Promise<TestGateway> => {
  const g = await startTestGateway(o);
  gws.push(g);
  return g;
};
const peer = async (gw: TestGateway, o: Parameters<typeof ProviderPeer.connect>[1] = {}): Promise<ProviderPeer> => {
  const p = await ProviderPeer.connect(gw.url, o);
  peers.push(p);
  return p;
};

afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  for (const p of peers.splice(0)) p.kill();
  for (const g of gws.splice(0)) await g.stop();
});

const isStatus = (state: string) => (m: JupyterMessage) => m.header.msg_type === 'status' && m.content['execution_state'] === state;

describe('handshake', () => {
  it('welcomes a provider whose signature matches its address', async () => {
    const gw = await start();
    const p = await peer(gw);
    expect(p.welcomed).toBe(true);
    expect((await gw.api('/api/providers')).body.map((x: { id: string }) => x.id)).toEqual([p.address]);
  });

  it('closes with 4401 on a bad signature and lists no provider', async () => {
    const gw = await start();
    const p = await peer(gw, { badSignature: true });
    expect(p.welcomed).toBe(false);
    expect(p.closeCode).toBe(4401);
    expect((await gw.api('/api/providers')).body).toEqual([]);
  });

  it('closes with 4400 on an address whose EIP-55 checksum is wrong, and takes one in lower case', async () => {
    const gw = await start();
    // One letter's case flipped: the same key's address, but a checksum that does not hold.
    const flip = (a: string): string => {
      const i = [...a].findIndex((ch, k) => k > 1 && /[a-f]/i.test(ch));
      const ch = a[i]!;
      return a.slice(0, i) + (ch === ch.toLowerCase() ? ch.toUpperCase() : ch.toLowerCase()) + a.slice(i + 1);
    };
    const bad = await peer(gw, { spellAddress: flip });
    expect(bad.welcomed).toBe(false);
    expect(bad.closeCode).toBe(4400);
    const lower = await peer(gw, { spellAddress: (a) => a.toLowerCase() });
    expect(lower.welcomed).toBe(true);
    expect((await gw.api('/api/providers')).body.map((x: { id: string }) => x.id)).toEqual([lower.address]);
  });

  it('closes with 4400 on a malformed hello, 1003 on a text frame, 4408 on silence', async () => {
    const gw = await start({ tuning: { handshakeTimeoutMs: 300 } });
    const dial = (): Promise<WebSocket> =>
      new Promise((r, j) => {
        const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/api/tunnel`, [TUNNEL_SUBPROTOCOL]);
        ws.once('message', () => r(ws)); // the challenge
        ws.once('error', j);
      });
    const codeOf = (ws: WebSocket): Promise<number> => new Promise((r) => ws.once('close', (c) => r(c)));
    const a = await dial();
    const ca = codeOf(a);
    a.send(Buffer.concat([Buffer.from([1]), Buffer.from(JSON.stringify({ type: 'hello', version: 1 }))]));
    expect(await ca).toBe(4400);
    const b = await dial();
    const cb = codeOf(b);
    b.send('hello?');
    expect(await cb).toBe(1003);
    const c = await dial();
    expect(await codeOf(c)).toBe(4408);
    const d = await dial();
    const cd = codeOf(d);
    d.send(encodeControl({ type: 'welcome', providerId: Wallet.createRandom().address, initialCredit: 4096 }));
    expect(await cd).toBe(4400);
  });

  it('refuses new tunnels with 503 while too many are still in their handshake, and takes them again after', async () => {
    const gw = await start({ tuning: { maxPendingTunnels: 1, handshakeTimeoutMs: 5000 } });
    const url = `${gw.url.replace('http', 'ws')}/api/tunnel`;
    const silent = new WebSocket(url, [TUNNEL_SUBPROTOCOL]);
    await new Promise((r) => silent.once('message', r)); // the challenge; it never answers
    const refused = new WebSocket(url, [TUNNEL_SUBPROTOCOL]);
    expect(await new Promise<number>((r) => refused.once('unexpected-response', (_q, res) => r(res.statusCode ?? 0)))).toBe(503);
    silent.terminate();
    await until(async () => (await ProviderPeer.connect(gw.url).then((p) => (peers.push(p), p.welcomed)).catch(() => false)) === true);
  });

  it('refuses a tunnel upgrade without the subprotocol', async () => {
    const gw = await start();
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/api/tunnel`);
    const status = await new Promise<number>((r) => ws.once('unexpected-response', (_q, res) => r(res.statusCode ?? 0)));
    expect(status).toBe(400);
  });

  it('replaces an older connection from the same address (4409) and keeps its kernels', async () => {
    const gw = await start();
    const wallet = Wallet.createRandom() as unknown as Wallet;
    const first = await peer(gw, { wallet });
    const { body: k } = await gw.api('/api/kernels', { method: 'POST', json: {} });
    await until(async () => (await gw.api(`/api/kernels/${k.id}`)).body.execution_state === 'idle');
    const firstClosed = new Promise<number>((r) => first.ws.once('close', (c) => r(c)));
    const second = await peer(gw, { wallet, kernels: [{ kernelId: k.id, specName: 'python3', status: 'idle' }] });
    expect(await firstClosed).toBe(4409);
    expect((await gw.api('/api/providers')).body.length).toBe(1);
    const c = await TestClient.connect(gw.url, k.id);
    clients.push(c);
    await c.reply(c.request('shell', 'kernel_info_request'));
    expect(second.received.length).toBe(1);
  });
});

describe('bad frames after the handshake', () => {
  it('closes that tunnel only, with the frame\'s close code', async () => {
    const gw = await start({ tuning: { maxTunnelFrameBytes: 1024 * 1024 } });
    const good = await peer(gw);
    const cases: [Buffer | string, number][] = [
      [Buffer.from([9, 1, 2]), 1003],
      [Buffer.concat([Buffer.from([1]), Buffer.from('{nope')]), 1007],
      [Buffer.concat([Buffer.from([3]), Buffer.alloc(20)]), 1007],
      [Buffer.alloc(2 * 1024 * 1024, 2), 1009],
      ['text', 1003],
    ];
    for (const [frame, code] of cases) {
      const p = await peer(gw);
      const closed = new Promise<number>((r) => p.ws.once('close', (c) => r(c)));
      p.ws.send(frame);
      expect(await closed).toBe(code);
    }
    expect(good.ws.readyState).toBe(WebSocket.OPEN);
    expect((await gw.api('/api/providers')).body.map((x: { id: string }) => x.id)).toEqual([good.address]);
  });
});

describe('backpressure', () => {
  it("stops reading a client while its provider's tunnel is backed up, and delivers everything, in order, once it drains", async () => {
    const gw = await start();
    const p = await peer(gw);
    const { body: k } = await gw.api('/api/kernels', { method: 'POST', json: {} });
    const c = await TestClient.connect(gw.url, k.id);
    clients.push(c);
    await c.reply(c.request('shell', 'kernel_info_request'));
    p.ws.pause(); // the provider stops reading its tunnel
    const N = 64;
    const buf = Buffer.alloc(1 << 20, 7);
    for (let i = 0; i < N; i++) c.request('shell', 'execute_request', { code: `x${i}` }, [buf]);
    const link = gw.gateway.providers.list()[0]!;
    // Once nothing moves any more, what the client sent waits in the client's own socket...
    let last = -1;
    await until(
      async () => {
        const now = c.ws.bufferedAmount;
        const still = now === last;
        last = now;
        await sleep(250);
        return still;
      },
      15_000,
      'the client to stop draining',
    );
    expect(c.ws.bufferedAmount).toBeGreaterThan(8 << 20);
    // ...not in the gateway, which holds at most the mark and what was in flight past it.
    expect(link.ws.bufferedAmount).toBeLessThan(TUNNEL_HIGH_WATER + (4 << 20));
    p.ws.resume();
    const codes = (): string[] => p.received.filter((r) => r.msg.header.msg_type === 'execute_request').map((r) => String(r.msg.content['code']));
    await until(() => codes().length === N, 20_000, 'every message to reach the provider');
    expect(codes()).toEqual(Array.from({ length: N }, (_, i) => `x${i}`));
  });
});

describe('liveness and re-attach', () => {
  it('drops a provider that stops answering pings', async () => {
    const gw = await start({ tuning: { providerPingIntervalMs: 100, providerPingTimeoutMs: 300 } });
    const p = await peer(gw, { ignorePings: true });
    await until(async () => (await gw.api('/api/providers')).body.length === 0, 3000, 'the silent provider to be dropped');
    expect(p.ws.readyState).not.toBe(WebSocket.OPEN);
  });

  it('re-attaches kernels when their provider reconnects within the grace period; messages wait meanwhile', async () => {
    const gw = await start({ tuning: { graceMs: 3000 } });
    const wallet = Wallet.createRandom() as unknown as Wallet;
    const p1 = await peer(gw, { wallet });
    const { body: k } = await gw.api('/api/kernels', { method: 'POST', json: {} });
    const c = await TestClient.connect(gw.url, k.id);
    clients.push(c);
    await c.reply(c.request('shell', 'kernel_info_request'));
    p1.kill();
    await until(async () => (await gw.api('/api/providers')).body.length === 0);
    const queued = c.request('shell', 'execute_request', { code: 'print after reconnect' });
    await sleep(100);
    await peer(gw, { wallet, kernels: [{ kernelId: k.id, specName: 'python3', status: 'idle' }] });
    expect((await c.reply(queued)).content['status']).toBe('ok');
    expect(c.messages.some(isStatus('dead'))).toBe(false);
    expect((await gw.api(`/api/kernels/${k.id}`)).body.execution_state).toBe('idle');
  });

  it('declares dead the kernels a reconnecting provider no longer lists', async () => {
    const gw = await start();
    const wallet = Wallet.createRandom() as unknown as Wallet;
    const p1 = await peer(gw, { wallet });
    const { body: k } = await gw.api('/api/kernels', { method: 'POST', json: {} });
    await until(async () => (await gw.api(`/api/kernels/${k.id}`)).body.execution_state === 'idle');
    p1.kill();
    await peer(gw, { wallet });
    await until(async () => (await gw.api(`/api/kernels/${k.id}`)).body.execution_state === 'dead');
  });

  it('adopts the kernels a provider lists after a gateway restart', async () => {
    const gw1 = await start();
    const wallet = Wallet.createRandom() as unknown as Wallet;
    const p1 = await peer(gw1, { wallet });
    const { body: k } = await gw1.api('/api/kernels', { method: 'POST', json: {} });
    await until(async () => (await gw1.api(`/api/kernels/${k.id}`)).body.execution_state === 'idle');
    const dataDir = gw1.dataDir;
    await gw1.close();
    p1.kill();
    const gw2 = await start({ dataDir });
    await peer(gw2, { wallet, kernels: [{ kernelId: k.id, specName: 'python3', status: 'idle' }] });
    const model = (await gw2.api(`/api/kernels/${k.id}`)).body;
    expect(model).toMatchObject({ id: k.id, name: 'python3-cpu', execution_state: 'idle' });
    const c = await TestClient.connect(gw2.url, k.id);
    clients.push(c);
    expect((await c.reply(c.request('shell', 'execute_request', { code: 'print adopted' }))).content['status']).toBe('ok');
  });

  it('asks a provider to stop a kernel that was deleted while it was away', async () => {
    const gw = await start({ tuning: { graceMs: 5000 } });
    const wallet = Wallet.createRandom() as unknown as Wallet;
    const p1 = await peer(gw, { wallet });
    const { body: k } = await gw.api('/api/kernels', { method: 'POST', json: {} });
    await until(async () => (await gw.api(`/api/kernels/${k.id}`)).body.execution_state === 'idle');
    p1.kill();
    await until(async () => (await gw.api('/api/providers')).body.length === 0);
    expect((await gw.api(`/api/kernels/${k.id}`, { method: 'DELETE' })).status).toBe(204);
    const p2 = await peer(gw, { wallet, kernels: [{ kernelId: k.id, specName: 'python3', status: 'idle' }] });
    await until(() => p2.requests.some((r) => r.type === 'shutdown_kernel' && r.kernelId === k.id));
    expect((await gw.api(`/api/kernels/${k.id}`)).status).toBe(404);
  });
});
