// Kernel channels over WebSocket: both framings, routing by session, queueing while a kernel
// starts, buffering and replay for a client that drops, bad frames, lifecycle statuses.
// Providers here are test peers (./testing/provider-peer.ts), NOT the real provider.
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { encodeV1, V1_SUBPROTOCOL, type JupyterMessage } from '@kinesis/protocol';
import { ProviderPeer, sleep } from './testing/provider-peer.ts';
import { startTestGateway, TestClient, TOKEN, until, type TestGateway } from './testing/harness.ts';
import type { StartGatewayOptions } from './index.ts';

let gw: TestGateway | undefined;
const peers: ProviderPeer[] = [];
const clients: TestClient[] = [];

async function setup(o: Partial<StartGatewayOptions> = {}, peerOpts: Parameters<typeof ProviderPeer.connect>[1] = {}): Promise<{ gw: TestGateway; peer: ProviderPeer; kernelId: string }> {
  gw = await startTestGateway(o);
  const peer = await ProviderPeer.connect(gw.url, peerOpts);
  peers.push(peer);
  const { body } = await gw.api('/api/kernels', { method: 'POST', json: { name: 'python3-cpu' } });
  return { gw, peer, kernelId: body.id };
}

async function connect(kernelId: string, o: Parameters<typeof TestClient.connect>[2] = {}): Promise<TestClient> {
  const c = await TestClient.connect(gw!.url, kernelId, o);
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  for (const p of peers.splice(0)) p.kill();
  await gw?.stop();
  gw = undefined;
});

const isStatus = (state: string) => (m: JupyterMessage) => m.header.msg_type === 'status' && m.content['execution_state'] === state;

describe('framings', () => {
  for (const v1 of [true, false]) {
    it(`${v1 ? 'v1' : 'legacy'}: execute round trip with stream output and binary buffers`, async () => {
      const { kernelId } = await setup();
      const c = await connect(kernelId, { v1 });
      expect(c.ws.protocol).toBe(v1 ? V1_SUBPROTOCOL : '');
      const info = c.request('shell', 'kernel_info_request');
      expect((await c.reply(info)).header.msg_type).toBe('kernel_info_reply');
      const ex = c.request('shell', 'execute_request', { code: 'print hello', silent: false });
      const reply = await c.reply(ex);
      expect(reply.content).toMatchObject({ status: 'ok', execution_count: 1 });
      const out = await c.waitFor((m) => m.header.msg_type === 'stream' && m.parent_header.msg_id === ex.header.msg_id);
      expect(out.content).toEqual({ name: 'stdout', text: 'hello\n' });
      const bx = c.request('shell', 'execute_request', { code: 'buffers ' });
      const comm = await c.waitFor((m) => m.header.msg_type === 'comm_msg' && m.parent_header.msg_id === bx.header.msg_id);
      expect([...comm.buffers[0]!]).toEqual([1, 2, 3, 255]);
      // A client's own binary buffers reach the kernel intact.
      const withBuf = c.request('shell', 'comm_msg', { comm_id: 'c1', data: {} }, [new Uint8Array([9, 8, 7])]);
      await c.waitFor((m) => m.parent_header.msg_id === withBuf.header.msg_id && isStatus('idle')(m));
      const got = peers[0]!.received.find((r) => r.msg.header.msg_id === withBuf.header.msg_id);
      expect([...got!.msg.buffers[0]!]).toEqual([9, 8, 7]);
    });
  }

  it('serves v1 and legacy clients of one kernel at once', async () => {
    const { kernelId } = await setup();
    const a = await connect(kernelId, { v1: true });
    const b = await connect(kernelId, { v1: false });
    const ex = a.request('shell', 'execute_request', { code: 'print both' });
    await a.reply(ex);
    await b.waitFor((m) => m.header.msg_type === 'stream' && m.parent_header.msg_id === ex.header.msg_id);
    expect((await gw!.api(`/api/kernels/${kernelId}`)).body.connections).toBe(2);
  });
});

describe('routing', () => {
  it('sends replies only to the session that asked and iopub to everyone', async () => {
    const { kernelId } = await setup();
    const a = await connect(kernelId);
    const b = await connect(kernelId);
    const ex = a.request('shell', 'execute_request', { code: 'print x' });
    await a.reply(ex);
    await b.waitFor((m) => m.header.msg_type === 'stream' && m.parent_header.msg_id === ex.header.msg_id);
    await sleep(50);
    expect(b.messages.some((m) => m.channel === 'shell')).toBe(false);
  });

  it('gives every reply to a client that named no session (a proxying Jupyter Server)', async () => {
    const { kernelId } = await setup();
    const proxy = await connect(kernelId, { sessionId: '', v1: false });
    const ex = proxy.request('shell', 'execute_request', { code: 'print p' });
    // the proxy forwards its browsers' messages under their own session ids
    expect((await proxy.reply(ex)).header.msg_type).toBe('execute_reply');
  });
});

describe('starting kernels', () => {
  it('queues messages sent while the kernel starts and delivers them in order once it is ready', async () => {
    const { kernelId, peer } = await setup({}, { startDelayMs: 1500 });
    const c = await connect(kernelId);
    const sent = [1, 2, 3].map((i) => c.request('shell', 'execute_request', { code: `print ${i}` }));
    await sleep(200);
    expect(peer.received.length).toBe(0);
    for (const m of sent) await c.reply(m, 5000);
    expect(peer.received.map((r) => r.msg.header.msg_id)).toEqual(sent.map((m) => m.header.msg_id));
  });
});

describe('buffering and replay', () => {
  it('replays what a session missed while disconnected', async () => {
    const { kernelId, peer } = await setup();
    const a = await connect(kernelId);
    const ex = a.request('shell', 'execute_request', { code: 'print before' });
    await a.reply(ex);
    await a.close();
    await until(async () => (await gw!.api(`/api/kernels/${kernelId}`)).body.connections === 0);
    peer.stream(kernelId, 'while away 1\n', ex.header);
    peer.stream(kernelId, 'while away 2\n', ex.header);
    await sleep(100);
    const back = await connect(kernelId, { sessionId: a.sessionId });
    await back.waitFor((m) => m.content['text'] === 'while away 2\n');
    const texts = back.messages.filter((m) => m.header.msg_type === 'stream').map((m) => m.content['text']);
    expect(texts).toEqual(['while away 1\n', 'while away 2\n']);
    // A different session does not get another's replay.
    const stranger = await connect(kernelId);
    await sleep(100);
    expect(stranger.messages.filter((m) => m.header.msg_type === 'stream')).toEqual([]);
  });

  it('says, as a stderr stream in the right cell, when the bounded buffer had to drop output', async () => {
    const { kernelId, peer } = await setup({ bufferBytes: 4096 });
    const a = await connect(kernelId);
    const ex = a.request('shell', 'execute_request', { code: 'print go' });
    await a.reply(ex);
    await a.close();
    await until(async () => (await gw!.api(`/api/kernels/${kernelId}`)).body.connections === 0);
    for (let i = 0; i < 50; i++) peer.stream(kernelId, `line ${i} ${'x'.repeat(200)}\n`, ex.header);
    peer.stream(kernelId, 'last\n', ex.header);
    await sleep(200);
    const back = await connect(kernelId, { sessionId: a.sessionId });
    await back.waitFor((m) => m.content['text'] === 'last\n');
    const first = back.messages[0]!;
    expect(first.header.msg_type).toBe('stream');
    expect(first.content['name']).toBe('stderr');
    expect(String(first.content['text'])).toMatch(/\d+ message\(s\) .* were dropped/);
    expect(first.parent_header.msg_id).toBe(ex.header.msg_id);
    const streams = back.messages.filter((m) => m.content['name'] === 'stdout');
    expect(streams.length).toBeGreaterThan(0);
    expect(streams.length).toBeLessThan(51);
    expect(streams.reduce((n, m) => n + Buffer.byteLength(encodeV1(m)), 0)).toBeLessThanOrEqual(4096);
  });

  it('forgets a disconnected session that does not come back in time', async () => {
    const { kernelId, peer } = await setup({ tuning: { detachedTtlMs: 100, clientPingIntervalMs: 50 } });
    const a = await connect(kernelId);
    const ex = a.request('shell', 'execute_request', { code: 'print x' });
    await a.reply(ex);
    await a.close();
    await until(async () => (await gw!.api(`/api/kernels/${kernelId}`)).body.connections === 0);
    peer.stream(kernelId, 'kept briefly\n', ex.header);
    await sleep(400);
    const back = await connect(kernelId, { sessionId: a.sessionId });
    await sleep(100);
    expect(back.messages.filter((m) => m.header.msg_type === 'stream')).toEqual([]);
  });

  it('hands output produced before anyone connected to the first client', async () => {
    const { kernelId, peer } = await setup();
    await until(async () => (await gw!.api(`/api/kernels/${kernelId}`)).body.execution_state === 'idle');
    peer.stream(kernelId, 'early\n');
    await sleep(100);
    const c = await connect(kernelId);
    await c.waitFor((m) => m.content['text'] === 'early\n');
  });

  it('returns credit for everything it handed on or buffered', async () => {
    const { kernelId, peer } = await setup({ tuning: { creditBatchBytes: 1 } });
    const c = await connect(kernelId);
    for (let i = 0; i < 20; i++) await c.reply(c.request('shell', 'execute_request', { code: `print ${i}` }));
    await sleep(50);
    expect(peer.credit.get(kernelId)).toBeGreaterThan(20 * 4 * 200);
  });

  it('returns credit in batches, never holding back more than a batch', async () => {
    const batch = 64 * 1024;
    const { kernelId, peer } = await setup({ tuning: { creditBatchBytes: batch } });
    const c = await connect(kernelId);
    // Small round trips owe less than a batch: no CREDIT frame (and no system call) for them.
    for (let i = 0; i < 5; i++) await c.reply(c.request('shell', 'execute_request', { code: `print ${i}` }));
    await sleep(50);
    expect(peer.credit.get(kernelId) ?? 0).toBe(0);
    // Output past the batch is paid back at once, all but less than one batch of it.
    const text = 'y'.repeat(10_000);
    for (let i = 0; i < 30; i++) peer.stream(kernelId, text);
    await c.waitFor((m) => m.header.msg_type === 'stream' && m.content['text'] === text && c.messages.filter((x) => x.content['text'] === text).length === 30);
    await sleep(50);
    const granted = peer.credit.get(kernelId) ?? 0;
    expect(granted).toBeGreaterThanOrEqual(batch);
    expect(granted).toBeGreaterThan(30 * 10_000 - batch);
  });
});

describe('bad input', () => {
  async function rawClient(kernelId: string, protocols: string[]): Promise<WebSocket> {
    const ws = new WebSocket(`${gw!.url.replace('http', 'ws')}/api/kernels/${kernelId}/channels?session_id=s&token=${TOKEN}`, protocols);
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    return ws;
  }
  const closeCode = (ws: WebSocket): Promise<number> => new Promise((r) => ws.once('close', (code) => r(code)));

  it('closes only the offending socket, with 1003 / 1007 / 1009', async () => {
    const { kernelId } = await setup({ tuning: { maxClientFrameBytes: 64 * 1024 } });
    const good = await connect(kernelId);
    const cases: [string[], string | Buffer, number][] = [
      [[V1_SUBPROTOCOL], 'text on v1', 1003],
      [[V1_SUBPROTOCOL], Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]), 1007],
      [[], '{"not": "a message"}', 1007],
      [[], 'not json at all', 1007],
      [[], Buffer.from([0, 0, 0, 9, 0, 0, 0, 1]), 1007],
      [[V1_SUBPROTOCOL], Buffer.alloc(70 * 1024), 1009],
    ];
    for (const [protocols, data, code] of cases) {
      const ws = await rawClient(kernelId, protocols);
      const closed = closeCode(ws);
      ws.send(data);
      expect(await closed, String(data).slice(0, 20)).toBe(code);
    }
    // The well-behaved client is undisturbed.
    expect((await good.reply(good.request('shell', 'execute_request', { code: 'print ok' }))).content['status']).toBe('ok');
  });

  it('refuses upgrades with a bad token (403) or an unknown kernel (404)', async () => {
    const { kernelId } = await setup();
    await expect(TestClient.connect(gw!.url, kernelId, { token: 'wrong' })).rejects.toThrow(/403/);
    await expect(TestClient.connect(gw!.url, crypto.randomUUID())).rejects.toThrow(/404/);
  });
});

describe('lifecycle statuses', () => {
  it('emits status: restarting on restart and the kernel answers again after it', async () => {
    const { kernelId } = await setup();
    const c = await connect(kernelId);
    await c.reply(c.request('shell', 'kernel_info_request'));
    const r = await gw!.api(`/api/kernels/${kernelId}/restart`, { method: 'POST' });
    expect(r.body.execution_state).toBe('idle');
    await c.waitFor(isStatus('restarting'));
    expect((await c.reply(c.request('shell', 'execute_request', { code: 'print again' }))).content['execution_count']).toBe(1);
  });

  it('emits status: dead when the provider reports the kernel died, and the model says dead', async () => {
    const { kernelId, peer } = await setup();
    const c = await connect(kernelId);
    await c.reply(c.request('shell', 'kernel_info_request'));
    peer.kernelStatus(kernelId, 'dead', 'exit code 137');
    await c.waitFor(isStatus('dead'));
    expect((await gw!.api(`/api/kernels/${kernelId}`)).body.execution_state).toBe('dead');
    // A client connecting afterwards is told at once.
    const late = await connect(kernelId);
    await late.waitFor(isStatus('dead'));
  });

  it('declares kernels dead after the grace period when their provider vanishes', async () => {
    const { kernelId, peer } = await setup({ tuning: { graceMs: 300 } });
    const c = await connect(kernelId);
    await c.reply(c.request('shell', 'kernel_info_request'));
    const t0 = Date.now();
    peer.kill();
    await c.waitFor(isStatus('dead'), 5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect((await gw!.api(`/api/kernels/${kernelId}`)).body.execution_state).toBe('dead');
  });

  it('closes client sockets with 1000 when the kernel is deleted', async () => {
    const { kernelId } = await setup();
    const c = await connect(kernelId);
    await gw!.api(`/api/kernels/${kernelId}`, { method: 'DELETE' });
    expect((await c.closed).code).toBe(1000);
  });
});

describe('keepalive', () => {
  it('pings idle clients and drops one that stops answering', async () => {
    const { kernelId } = await setup({ tuning: { clientPingIntervalMs: 100 } });
    let pings = 0;
    const alive = await connect(kernelId);
    alive.ws.on('ping', () => pings++);
    const mute = new WebSocket(`${gw!.url.replace('http', 'ws')}/api/kernels/${kernelId}/channels?token=${TOKEN}`, [V1_SUBPROTOCOL], { autoPong: false });
    await new Promise((r) => mute.once('open', r));
    const muteClosed = new Promise<number>((r) => mute.once('close', (code) => r(code)));
    expect(await muteClosed).toBe(1006);
    await sleep(250);
    expect(pings).toBeGreaterThanOrEqual(2);
    expect(alive.ws.readyState).toBe(WebSocket.OPEN);
  });
});
