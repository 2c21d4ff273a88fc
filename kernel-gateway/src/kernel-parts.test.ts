// Large kernel output crossing the tunnel as KERNEL PART frames (docs/protocols.md): v1 clients
// get it cut-through, everyone else whole at the end; nothing ever writes into the middle of a
// streamed frame; the link enforces the part rules; a message cut off mid-way disconnects
// only the clients it was being streamed to. Providers here are test peers
// (./testing/provider-peer.ts), NOT the real provider.
import { afterEach, describe, expect, it } from 'vitest';
import { Wallet } from 'ethers';
import { WebSocket } from 'ws';
import { encodeKernelFrame, encodeV1, makeMessage, V1_SUBPROTOCOL, type JupyterMessage } from '@kinesis/protocol';
import { kernelPartFrame, ProviderPeer, sleep } from './testing/provider-peer.ts';
import { startTestGateway, TestClient, TOKEN, until, type TestGateway } from './testing/harness.ts';
import type { StartGatewayOptions } from './index.ts';

const PART = 64 * 1024;
const WAIT = 15_000;

const gws: TestGateway[] = [];
const peers: ProviderPeer[] = [];
const clients: TestClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  for (const p of peers.splice(0)) p.kill();
  for (const g of gws.splice(0)) await g.stop();
});

async function gateway(o: Partial<StartGatewayOptions> = {}): Promise<TestGateway> {
  // creditBatchBytes 1: every frame is credited at once, so "credit == bytes sent" says the
  // gateway has handled everything the peer sent.
  const g = await startTestGateway({ ...o, tuning: { creditBatchBytes: 1, ...o.tuning } });
  gws.push(g);
  return g;
}

async function peer(gw: TestGateway, o: Parameters<typeof ProviderPeer.connect>[1] = {}): Promise<ProviderPeer> {
  const p = await ProviderPeer.connect(gw.url, o);
  peers.push(p);
  return p;
}

async function setup(o: Partial<StartGatewayOptions> = {}): Promise<{ gw: TestGateway; peer: ProviderPeer; kernelId: string }> {
  const gw = await gateway(o);
  const p = await peer(gw);
  const { body } = await gw.api('/api/kernels', { method: 'POST', json: { name: 'python3-cpu' } });
  await until(async () => (await gw.api(`/api/kernels/${body.id}`)).body.execution_state === 'idle');
  return { gw, peer: p, kernelId: body.id };
}

async function connect(gw: TestGateway, kernelId: string, o: Parameters<typeof TestClient.connect>[2] = {}): Promise<TestClient> {
  const c = await TestClient.connect(gw.url, kernelId, o);
  clients.push(c);
  return c;
}

/** The gateway has handled (and credited) every kernel frame the peer sent for `kernelId`. */
const settled = (p: ProviderPeer, kernelId: string): Promise<void> =>
  until(() => (p.credit.get(kernelId) ?? 0) === (p.sent.get(kernelId) ?? 0), WAIT, 'credit for every kernel frame sent');

const connections = async (gw: TestGateway, kernelId: string): Promise<number> => (await gw.api(`/api/kernels/${kernelId}`)).body.connections;

/** About `bytes` of numbered lines, so a part delivered twice, lost or out of order shows. */
function bigText(bytes: number): string {
  const lines: string[] = [];
  for (let i = 0, n = 0; n < bytes; i++) {
    const line = `line ${String(i).padStart(7, '0')} ${'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(2)}\n`;
    lines.push(line);
    n += line.length;
  }
  return lines.join('');
}

function bigOutput(p: ProviderPeer, kernelId: string, bytes = 3 * 1024 * 1024): { msg: JupyterMessage; frame: Buffer; text: string } {
  const text = bigText(bytes);
  const msg = makeMessage({ channel: 'iopub', msgType: 'stream', session: p.kernels.get(kernelId)?.session ?? 'k', content: { name: 'stdout', text } });
  return { msg, frame: encodeV1(msg), text };
}

/** The KERNEL PART frames of `frame`, not yet sent. */
function partsOf(kernelId: string, frame: Buffer, partBytes = PART): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < frame.length; o += partBytes) out.push(kernelPartFrame(kernelId, frame.length, o, frame.subarray(o, o + partBytes)));
  return out;
}

const isStatus = (state: string) => (m: JupyterMessage): boolean => m.header.msg_type === 'status' && m.content['execution_state'] === state;
const withId = (id: string) => (m: JupyterMessage): boolean => m.header.msg_id === id;
const count = (c: TestClient, id: string): number => c.messages.filter(withId(id)).length;

describe('welcome', () => {
  it('names the kernel-parts feature', async () => {
    const gw = await gateway();
    const p = await peer(gw);
    expect(p.welcomed).toBe(true);
    expect(p.features).toEqual(['kernel-parts']);
    expect(p.maxPartialBytes).toBe(256 * 1024 * 1024);
  });

  it('never names a budget for parts below the largest tunnel frame', async () => {
    const gw = await gateway({ tuning: { maxTunnelFrameBytes: 8 * 1024 * 1024, maxPartialBytes: 2 * 1024 * 1024 } });
    expect((await peer(gw)).maxPartialBytes).toBe(8 * 1024 * 1024);
  });
});

describe('delivery', () => {
  it('a 3 MB output in 64 KiB parts reaches v1 and legacy clients intact, and every part is credited', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const v1 = await connect(gw, kernelId, { v1: true });
    const legacy = await connect(gw, kernelId, { v1: false });
    const { msg, frame, text } = bigOutput(p, kernelId);
    const sizes = p.sendParts(kernelId, frame, PART);
    expect(sizes.length).toBe(Math.ceil(frame.length / PART));
    for (const c of [v1, legacy]) {
      const got = await c.waitFor(withId(msg.header.msg_id), WAIT);
      expect(got.content['text'] === text, `${c.v1 ? 'v1' : 'legacy'} text matches`).toBe(true);
      expect(got.channel).toBe('iopub');
      expect(got.parent_header).toEqual(msg.parent_header);
    }
    await settled(p, kernelId);
    expect(p.credit.get(kernelId)!).toBeGreaterThan(sizes.reduce((a, b) => a + b, 0));
    // Output after it flows as usual, in order.
    p.stream(kernelId, 'after\n');
    for (const c of [v1, legacy]) {
      await c.waitFor((m) => m.content['text'] === 'after\n');
      expect(count(c, msg.header.msg_id)).toBe(1);
      const i = c.messages.findIndex(withId(msg.header.msg_id));
      expect(c.messages[i + 1]?.content['text']).toBe('after\n');
    }
    expect(v1.ws.readyState).toBe(WebSocket.OPEN);
    expect(legacy.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('is cut-through: a v1 client has nearly all of the message before its last part reaches the gateway', async () => {
    const { gw, peer: p, kernelId } = await setup();
    // A bare ws client, to count the bytes on its TCP socket as they come.
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/api/kernels/${kernelId}/channels?session_id=cut&token=${TOKEN}`, [V1_SUBPROTOCOL], { perMessageDeflate: false });
    let bytesIn = 0;
    ws.once('upgrade', (res) => res.socket.on('data', (d: Buffer) => (bytesIn += d.length)));
    const got: Buffer[] = [];
    ws.on('message', (d: Buffer) => got.push(d));
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    const { frame } = bigOutput(p, kernelId);
    const parts = partsOf(kernelId, frame);
    await until(() => got.length === 2, WAIT, 'the startup statuses'); // replayed on attach
    const before = bytesIn;
    for (const part of parts.slice(0, -1)) p.sendRaw(part);
    await settled(p, kernelId);
    await until(() => bytesIn - before >= frame.length - PART, WAIT, 'the streamed bytes');
    expect(got.length).toBe(2);
    p.sendRaw(parts.at(-1)!);
    await until(() => got.length === 3, WAIT, 'the message');
    expect(got[2]!.equals(frame)).toBe(true);
    ws.terminate();
  });

  it('a message in a single part, and one with binary buffers, arrive intact', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const c = await connect(gw, kernelId);
    const small = makeMessage({ channel: 'iopub', msgType: 'stream', session: 's', content: { name: 'stdout', text: 'one part\n' } });
    p.sendParts(kernelId, encodeV1(small), 1 << 20);
    const buf = Buffer.alloc(300_000);
    for (let i = 0; i < buf.length; i++) buf[i] = (i * 31) & 0xff;
    const withBuffers = makeMessage({ channel: 'iopub', msgType: 'display_data', session: 's', content: { data: {}, metadata: {} }, buffers: [buf] });
    p.sendParts(kernelId, encodeV1(withBuffers), 16384);
    expect((await c.waitFor(withId(small.header.msg_id))).content['text']).toBe('one part\n');
    const got = await c.waitFor(withId(withBuffers.header.msg_id), WAIT);
    expect(Buffer.from(got.buffers[0]!).equals(buf)).toBe(true);
    await settled(p, kernelId);
  });
});

describe('nothing cuts into a streamed frame', () => {
  it("a client's ping mid-stream is answered after the message, which arrives intact", async () => {
    const { gw, peer: p, kernelId } = await setup();
    const c = await connect(gw, kernelId);
    const { msg, frame, text } = bigOutput(p, kernelId, 1024 * 1024);
    const parts = partsOf(kernelId, frame);
    // Messages read before the pong came.
    let readAtPong: number | undefined;
    c.ws.on('pong', () => (readAtPong ??= c.messages.length));
    p.answering = false;
    p.sendRaw(parts[0]!);
    await settled(p, kernelId); // the frame header and first part went out to `c`
    c.ws.ping(Buffer.from('mid-stream'));
    // A message sent after the ping reaching the peer means the gateway has read the ping.
    const marker = c.request('shell', 'kernel_info_request');
    await until(() => p.received.some((r) => r.msg.header.msg_id === marker.header.msg_id), WAIT, 'the marker to reach the peer');
    expect(readAtPong).toBeUndefined();
    for (const part of parts.slice(1)) p.sendRaw(part);
    const got = await c.waitFor(withId(msg.header.msg_id), WAIT);
    expect(got.content['text'] === text).toBe(true);
    await until(() => readAtPong !== undefined, WAIT, 'the pong');
    expect(c.messages[readAtPong! - 1]?.header.msg_id).toBe(msg.header.msg_id);
    await p.answer();
    expect((await c.reply(marker)).header.msg_type).toBe('kernel_info_reply');
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('a status the gateway emits mid-stream reaches the streamed client after the message, a legacy client at once', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const v1 = await connect(gw, kernelId, { v1: true });
    const legacy = await connect(gw, kernelId, { v1: false });
    const { msg, frame, text } = bigOutput(p, kernelId, 1024 * 1024);
    const parts = partsOf(kernelId, frame);
    p.answering = false;
    p.sendRaw(parts[0]!);
    await settled(p, kernelId);
    const restart = gw.api(`/api/kernels/${kernelId}/restart`, { method: 'POST' });
    await legacy.waitFor(isStatus('restarting'), WAIT);
    expect(v1.messages.some(isStatus('restarting'))).toBe(false);
    for (const part of parts.slice(1)) p.sendRaw(part);
    await v1.waitFor(isStatus('restarting'), WAIT);
    await legacy.waitFor(withId(msg.header.msg_id), WAIT);
    const at = (c: TestClient, pred: (m: JupyterMessage) => boolean): number => c.messages.findIndex(pred);
    expect(at(v1, withId(msg.header.msg_id))).toBeLessThan(at(v1, isStatus('restarting')));
    expect(at(legacy, isStatus('restarting'))).toBeLessThan(at(legacy, withId(msg.header.msg_id)));
    for (const c of [v1, legacy]) expect(c.messages.find(withId(msg.header.msg_id))!.content['text'] === text).toBe(true);
    await p.answer();
    expect((await restart).status).toBe(200);
  });

  it('a client that attaches mid-stream gets the whole message at the end, never a torn frame', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const first = await connect(gw, kernelId);
    const { msg, frame, text } = bigOutput(p, kernelId, 2 * 1024 * 1024);
    const parts = partsOf(kernelId, frame);
    const half = Math.floor(parts.length / 2);
    for (const part of parts.slice(0, half)) p.sendRaw(part);
    await settled(p, kernelId);
    const lateV1 = await connect(gw, kernelId, { v1: true });
    const lateLegacy = await connect(gw, kernelId, { v1: false });
    await until(async () => (await connections(gw, kernelId)) === 3);
    for (const part of parts.slice(half)) p.sendRaw(part);
    await settled(p, kernelId);
    p.stream(kernelId, 'after\n');
    for (const c of [first, lateV1, lateLegacy]) {
      await c.waitFor((m) => m.content['text'] === 'after\n', WAIT);
      expect(count(c, msg.header.msg_id)).toBe(1);
      expect(c.messages.find(withId(msg.header.msg_id))!.content['text'] === text).toBe(true);
      expect(c.ws.readyState).toBe(WebSocket.OPEN);
    }
  });
});

describe('client connections while streaming', () => {
  it('keepalive pings skip a client mid-stream; it stays connected and gets the message intact', async () => {
    const { gw, peer: p, kernelId } = await setup({ tuning: { clientPingIntervalMs: 20 } });
    const c = await connect(gw, kernelId);
    let pings = 0;
    c.ws.on('ping', () => pings++);
    const { msg, frame, text } = bigOutput(p, kernelId, 1024 * 1024);
    const parts = partsOf(kernelId, frame);
    // Slowly, so that several ping rounds fall inside the frame (only the chance of catching
    // a bug depends on timing here, not the outcome).
    for (const part of parts) {
      p.sendRaw(part);
      await settled(p, kernelId);
      await sleep(5);
    }
    expect((await c.waitFor(withId(msg.header.msg_id), WAIT)).content['text'] === text).toBe(true);
    const before = pings;
    await until(() => pings > before, WAIT, 'pings to resume after the frame');
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('a client that closes mid-stream gets the message whole, then the answer to its close (1000); the others carry on', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const a = await connect(gw, kernelId);
    const other = await connect(gw, kernelId);
    const { msg, frame, text } = bigOutput(p, kernelId);
    const parts = partsOf(kernelId, frame);
    for (const part of parts.slice(0, 8)) p.sendRaw(part);
    await settled(p, kernelId);
    // ws answers a close frame at once; the gateway holds that answer until the frame being
    // streamed is whole, so it does not land inside it.
    const closing = a.close();
    await sleep(50);
    for (const part of parts.slice(8)) p.sendRaw(part);
    await settled(p, kernelId);
    expect((await closing).code).toBe(1000);
    expect(a.messages.find(withId(msg.header.msg_id))?.content['text'] === text).toBe(true);
    expect((await other.waitFor(withId(msg.header.msg_id), WAIT)).content['text'] === text).toBe(true);
    await until(async () => (await connections(gw, kernelId)) === 1, WAIT, 'the gateway to let the client go');
    // It had the message whole: its session does not get it again on return.
    const back = await connect(gw, kernelId, { sessionId: a.sessionId });
    p.stream(kernelId, 'after\n');
    await back.waitFor((m) => m.content['text'] === 'after\n');
    expect(count(back, msg.header.msg_id)).toBe(0);
    expect(other.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('a resuming connection that supersedes one mid-stream: the old one is cut off, the new one gets the message once', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const a = await connect(gw, kernelId, { lastMsgId: '' });
    await a.waitFor(isStatus('idle'));
    const lastRead = a.messages.at(-1)!.header.msg_id;
    const { msg, frame, text } = bigOutput(p, kernelId);
    const parts = partsOf(kernelId, frame);
    p.sendRaw(parts[0]!);
    await settled(p, kernelId);
    // The client believes `a` dead (half-open TCP) and reconnects; the gateway still has `a`.
    const a2 = await connect(gw, kernelId, { sessionId: a.sessionId, lastMsgId: lastRead });
    expect((await a.closed).code).toBe(1006);
    for (const part of parts.slice(1)) p.sendRaw(part);
    expect((await a2.waitFor(withId(msg.header.msg_id), WAIT)).content['text'] === text).toBe(true);
    p.stream(kernelId, 'after\n');
    await a2.waitFor((m) => m.content['text'] === 'after\n');
    expect(count(a2, msg.header.msg_id)).toBe(1);
    expect(a2.messages.filter(isStatus('idle'))).toEqual([]);
  });
});

describe('sessions that are away', () => {
  it('a session that dropped before the stream gets the whole message replayed on its return', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const live = await connect(gw, kernelId);
    const away = await connect(gw, kernelId);
    await away.close();
    await until(async () => (await connections(gw, kernelId)) === 1);
    const { msg, frame, text } = bigOutput(p, kernelId);
    p.sendParts(kernelId, frame, PART);
    await live.waitFor(withId(msg.header.msg_id), WAIT);
    await settled(p, kernelId);
    const back = await connect(gw, kernelId, { sessionId: away.sessionId });
    const got = await back.waitFor(withId(msg.header.msg_id), WAIT);
    expect(got.content['text'] === text).toBe(true);
    p.stream(kernelId, 'after\n');
    await back.waitFor((m) => m.content['text'] === 'after\n');
    expect(count(back, msg.header.msg_id)).toBe(1);
  });

  it('a session that drops mid-stream gets the whole message replayed, once', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const a = await connect(gw, kernelId);
    const { msg, frame, text } = bigOutput(p, kernelId);
    const parts = partsOf(kernelId, frame);
    p.sendRaw(parts[0]!);
    await settled(p, kernelId);
    a.ws.terminate();
    await until(async () => (await connections(gw, kernelId)) === 0);
    for (const part of parts.slice(1)) p.sendRaw(part);
    await settled(p, kernelId);
    const back = await connect(gw, kernelId, { sessionId: a.sessionId });
    expect((await back.waitFor(withId(msg.header.msg_id), WAIT)).content['text'] === text).toBe(true);
    p.stream(kernelId, 'after\n');
    await back.waitFor((m) => m.content['text'] === 'after\n');
    expect(count(back, msg.header.msg_id)).toBe(1);
  });

  it('a resuming client that drops mid-stream gets the message once (not from both its sent log and the replay buffer)', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const a = await connect(gw, kernelId, { lastMsgId: '' });
    await a.waitFor(isStatus('idle')); // the startup statuses, replayed
    const lastRead = a.messages.at(-1)!.header.msg_id;
    const { msg, frame, text } = bigOutput(p, kernelId);
    const parts = partsOf(kernelId, frame);
    p.sendRaw(parts[0]!);
    await settled(p, kernelId);
    a.ws.terminate();
    await until(async () => (await connections(gw, kernelId)) === 0);
    for (const part of parts.slice(1)) p.sendRaw(part);
    await settled(p, kernelId);
    const back = await connect(gw, kernelId, { sessionId: a.sessionId, lastMsgId: lastRead });
    expect((await back.waitFor(withId(msg.header.msg_id), WAIT)).content['text'] === text).toBe(true);
    p.stream(kernelId, 'after\n');
    await back.waitFor((m) => m.content['text'] === 'after\n');
    expect(count(back, msg.header.msg_id)).toBe(1);
    expect(back.messages.filter(isStatus('idle'))).toEqual([]);
  });

  it('what waited behind the frame for a connection that dropped mid-stream is replayed to its session too', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const a = await connect(gw, kernelId, { lastMsgId: '' });
    await a.waitFor(isStatus('idle'));
    const lastRead = a.messages.at(-1)!.header.msg_id;
    const { msg, frame, text } = bigOutput(p, kernelId);
    const parts = partsOf(kernelId, frame);
    p.answering = false;
    p.sendRaw(parts[0]!);
    await settled(p, kernelId);
    // A status the gateway writes while `a` is mid-frame waits behind the frame…
    const restart = gw.api(`/api/kernels/${kernelId}/restart`, { method: 'POST' });
    await until(() => p.requests.some((r) => r.type === 'restart_kernel'), WAIT, 'the restart request');
    // …and `a` drops before the frame is done.
    a.ws.terminate();
    await until(async () => (await connections(gw, kernelId)) === 0);
    for (const part of parts.slice(1)) p.sendRaw(part);
    await settled(p, kernelId);
    const back = await connect(gw, kernelId, { sessionId: a.sessionId, lastMsgId: lastRead });
    expect((await back.waitFor(withId(msg.header.msg_id), WAIT)).content['text'] === text).toBe(true);
    await back.waitFor(isStatus('restarting'));
    await p.answer();
    expect((await restart).status).toBe(200);
    expect(count(back, msg.header.msg_id)).toBe(1);
    expect(back.messages.filter(isStatus('restarting')).length).toBe(1);
  });
});

describe('cut off mid-message', () => {
  it('the provider vanishing disconnects the streamed client; a legacy client is untouched and carries on after the provider returns', async () => {
    const gw = await gateway({ tuning: { graceMs: 10_000 } });
    const wallet = Wallet.createRandom() as unknown as Wallet;
    const p1 = await peer(gw, { wallet });
    const { body } = await gw.api('/api/kernels', { method: 'POST', json: {} });
    const kernelId: string = body.id;
    await until(async () => (await gw.api(`/api/kernels/${kernelId}`)).body.execution_state === 'idle');
    const streamed = await connect(gw, kernelId, { v1: true });
    const legacy = await connect(gw, kernelId, { v1: false });
    const { msg, frame } = bigOutput(p1, kernelId);
    const parts = partsOf(kernelId, frame);
    for (const part of parts.slice(0, 4)) p1.sendRaw(part);
    await settled(p1, kernelId);
    p1.kill();
    // Terminated, not closed: a close frame would land inside the frame in flight.
    expect((await streamed.closed).code).toBe(1006);
    expect(streamed.messages.some(withId(msg.header.msg_id))).toBe(false);
    expect(legacy.ws.readyState).toBe(WebSocket.OPEN);
    const p2 = await peer(gw, { wallet, kernels: [{ kernelId, specName: 'python3', status: 'idle' }] });
    const ex = legacy.request('shell', 'execute_request', { code: 'print back' });
    expect((await legacy.reply(ex)).content['status']).toBe('ok');
    expect(legacy.messages.some(withId(msg.header.msg_id))).toBe(false);
    // The new tunnel starts clean: a message in parts from the start goes through.
    const again = bigOutput(p2, kernelId, 512 * 1024);
    p2.sendParts(kernelId, again.frame, PART);
    expect((await legacy.waitFor(withId(again.msg.header.msg_id), WAIT)).content['text'] === again.text).toBe(true);
    expect(p2.closeCode).toBeUndefined();
  });

  it('the kernel dying mid-message disconnects the streamed client; a legacy client gets status dead', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const streamed = await connect(gw, kernelId, { v1: true });
    const legacy = await connect(gw, kernelId, { v1: false });
    const { msg, frame } = bigOutput(p, kernelId);
    const parts = partsOf(kernelId, frame);
    p.sendRaw(parts[0]!);
    await settled(p, kernelId);
    p.kernelStatus(kernelId, 'dead', 'killed');
    expect((await streamed.closed).code).toBe(1006);
    await legacy.waitFor(isStatus('dead'));
    // The rest of the message is still the provider's to finish; the gateway drops it quietly.
    for (const part of parts.slice(1)) p.sendRaw(part);
    await settled(p, kernelId);
    expect(legacy.messages.some(withId(msg.header.msg_id))).toBe(false);
    expect(legacy.ws.readyState).toBe(WebSocket.OPEN);
    expect(p.closeCode).toBeUndefined();
  });

  it('parts the provider already sent for a kernel deleted mid-message are dropped; the tunnel and its other kernels carry on', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const { body } = await gw.api('/api/kernels', { method: 'POST', json: { name: 'python3-cpu' } });
    const other: string = body.id;
    await until(async () => (await gw.api(`/api/kernels/${other}`)).body.execution_state === 'idle');
    const parts = partsOf(kernelId, bigOutput(p, kernelId).frame);
    p.sendRaw(parts[0]!);
    await settled(p, kernelId);
    expect((await gw.api(`/api/kernels/${kernelId}`, { method: 'DELETE' })).status).toBe(204);
    // What was on the wire before the provider heard of the shutdown.
    for (const f of parts.slice(1, 4)) p.sendRaw(f);
    await settled(p, kernelId);
    expect(p.closeCode).toBeUndefined();
    const c = await connect(gw, other);
    const m = bigOutput(p, other, 300_000);
    p.sendParts(other, m.frame, PART);
    expect((await c.waitFor(withId(m.msg.header.msg_id), WAIT)).content['text']).toBe(m.text);
    expect(p.closeCode).toBeUndefined();
  });

  it('a client that stops reading mid-stream is dropped by the keepalive, and the kernel\'s output flows on to the others', async () => {
    // A ping interval long enough that the reading client, which shares this process's event
    // loop with the gateway and the test under a loaded CI machine, always completes a write
    // within one (a 200 ms interval dropped it once).
    const { gw, peer: p, kernelId } = await setup({ tuning: { clientPingIntervalMs: 1500, clientHighWaterBytes: 256 * 1024, initialCredit: 1024 * 1024 } });
    const reader = await connect(gw, kernelId, { v1: true });
    // A client whose TCP socket stops being read right after the handshake.
    const stalled = new WebSocket(`${gw.url.replace('http', 'ws')}/api/kernels/${kernelId}/channels?session_id=stalled&token=${TOKEN}`, [V1_SUBPROTOCOL], { perMessageDeflate: false });
    let sock: { pause(): void; resume(): void } | undefined;
    stalled.once('upgrade', (res) => (sock = res.socket));
    await new Promise((r, j) => (stalled.once('open', r), stalled.once('error', j)));
    const stalledClosed = new Promise<number>((r) => stalled.once('close', (code) => r(code)));
    sock?.pause();
    await until(async () => (await connections(gw, kernelId)) === 2);
    const { msg, frame, text } = bigOutput(p, kernelId, 12 * 1024 * 1024);
    const parts = partsOf(kernelId, frame);
    // A provider that sends only within its credit, as the real one does.
    let next = 0;
    while (next < parts.length) {
      const credit = 1024 * 1024 + (p.credit.get(kernelId) ?? 0) - (p.sent.get(kernelId) ?? 0);
      if (credit >= parts[next]!.length) p.sendRaw(parts[next++]!);
      else await sleep(10);
    }
    expect((await reader.waitFor(withId(msg.header.msg_id), 45_000)).content['text'] === text).toBe(true);
    expect(await connections(gw, kernelId)).toBe(1);
    // Once it reads again, it finds its connection was cut.
    sock?.resume();
    expect(await stalledClosed).toBe(1006);
  }, 90_000);

  it('deleting the kernel mid-message closes every client', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const streamed = await connect(gw, kernelId, { v1: true });
    const legacy = await connect(gw, kernelId, { v1: false });
    const { frame } = bigOutput(p, kernelId);
    p.sendRaw(partsOf(kernelId, frame)[0]!);
    await settled(p, kernelId);
    expect((await gw.api(`/api/kernels/${kernelId}`, { method: 'DELETE' })).status).toBe(204);
    expect((await streamed.closed).code).toBe(1006);
    expect((await legacy.closed).code).toBe(1000);
  });
});

describe('a client that breaks the protocol mid-stream', () => {
  // [what the client sends, the close code it must read after the streamed frame, not inside it]
  const cases: [string, Buffer, number][] = [
    ['an oversized frame', Buffer.alloc(3 * 1024 * 1024), 1009],
    ['a malformed v1 frame', Buffer.from('not a v1 frame at all'), 1007],
  ];
  it.each(cases)('gets the right close code for %s after the frame being streamed', async (_what, bad, code) => {
    const { gw, peer: p, kernelId } = await setup({ tuning: { maxClientFrameBytes: 2 * 1024 * 1024 } });
    const c = await connect(gw, kernelId, { v1: true });
    const errors: string[] = [];
    c.ws.on('error', (e) => errors.push(e.message));
    const { msg, frame } = bigOutput(p, kernelId, 1024 * 1024);
    const parts = partsOf(kernelId, frame);
    p.sendRaw(parts[0]!);
    await settled(p, kernelId);
    c.ws.send(bad);
    await sleep(50);
    for (const f of parts.slice(1)) p.sendRaw(f);
    expect((await c.closed).code).toBe(code);
    expect(c.messages.some(withId(msg.header.msg_id))).toBe(true);
    expect(errors).toEqual([]);
  });
});

describe('gateway shutdown mid-stream', () => {
  it('cuts the streamed client off rather than writing a close frame into its frame', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const c = await connect(gw, kernelId, { v1: true });
    const undecodable: string[] = [];
    c.ws.on('error', (e) => undecodable.push(e.message));
    const { msg, frame } = bigOutput(p, kernelId, 512 * 1024);
    const parts = partsOf(kernelId, frame);
    p.sendRaw(parts[0]!);
    await settled(p, kernelId);
    gws.splice(gws.indexOf(gw), 1);
    const stopping = gw.stop();
    // The rest of the message is still arriving while the gateway stops.
    for (const f of parts.slice(1)) p.sendRaw(f);
    await stopping;
    expect((await c.closed).code).toBe(1006);
    // Neither a torn message nor a frame the client's parser rejects.
    expect(c.messages.some(withId(msg.header.msg_id))).toBe(false);
    expect(undecodable).toEqual([]);
  });
});

/** Two kernels on one provider whose tunnel has a 1 MiB budget for messages in parts. */
async function setupPair(): Promise<{ gw: TestGateway; peer: ProviderPeer; kernelId: string; other: string }> {
  const MiB = 1024 * 1024;
  const first = await setup({ tuning: { maxTunnelFrameBytes: MiB, maxPartialBytes: MiB } });
  const { body } = await first.gw.api('/api/kernels', { method: 'POST', json: { name: 'python3-cpu' } });
  await until(async () => (await first.gw.api(`/api/kernels/${body.id}`)).body.execution_state === 'idle');
  return { ...first, other: body.id };
}

describe('part rules (the tunnel closes with 1007)', () => {
  const frameOf = (m: JupyterMessage): Buffer => encodeV1(m);
  const output = (bytes = 200_000): Buffer => frameOf(makeMessage({ channel: 'iopub', msgType: 'stream', session: 's', content: { name: 'stdout', text: 'z'.repeat(bytes) } }));

  // [name, frames, whether a stream to clients had begun when the rule was broken]
  const cases: [string, (kernelId: string) => Buffer[], boolean][] = [
    ['a part that skips ahead', (k) => { const f = output(); return [kernelPartFrame(k, f.length, 0, f.subarray(0, PART)), kernelPartFrame(k, f.length, 2 * PART, f.subarray(2 * PART, 3 * PART))]; }, true],
    ['a part that repeats', (k) => { const f = output(); return [kernelPartFrame(k, f.length, 0, f.subarray(0, PART)), kernelPartFrame(k, f.length, PART, f.subarray(PART, 2 * PART)), kernelPartFrame(k, f.length, PART, f.subarray(PART, 2 * PART))]; }, true],
    ['a new message before the last one ended', (k) => { const f = output(); return [kernelPartFrame(k, f.length, 0, f.subarray(0, PART)), kernelPartFrame(k, f.length, 0, f.subarray(0, PART))]; }, true],
    ['a continuation with another total', (k) => { const f = output(); return [kernelPartFrame(k, f.length, 0, f.subarray(0, PART)), kernelPartFrame(k, f.length + 1, PART, f.subarray(PART, 2 * PART))]; }, true],
    ['a continuation with no start', (k) => { const f = output(); return [kernelPartFrame(k, f.length, PART, f.subarray(PART, 2 * PART))]; }, false],
    ['a plain kernel frame for that kernel mid-message', (k) => { const f = output(); return [kernelPartFrame(k, f.length, 0, f.subarray(0, PART)), encodeKernelFrame(k, frameOf(makeMessage({ channel: 'iopub', msgType: 'stream', session: 's', content: { name: 'stdout', text: 'cut in\n' } })))]; }, true],
    ['a shell reply in parts', (k) => { const f = frameOf(makeMessage({ channel: 'shell', msgType: 'execute_reply', session: 's', content: { status: 'ok', pad: 'p'.repeat(100_000) } })); return [kernelPartFrame(k, f.length, 0, f.subarray(0, PART))]; }, false],
    ['a status in parts', (k) => { const f = frameOf(makeMessage({ channel: 'iopub', msgType: 'status', session: 's', content: { execution_state: 'idle' } })); return [kernelPartFrame(k, f.length, 0, f)]; }, false],
    ['a part that runs past its total', (k) => { const f = output(); return [kernelPartFrame(k, PART - 1, 0, f.subarray(0, PART))]; }, false],
    ['a part with no bytes', (k) => [kernelPartFrame(k, 100, 0, Buffer.alloc(0))], false],
    ['a part other than the last under 16 KiB', (k) => { const f = output(); return [kernelPartFrame(k, f.length, 0, f.subarray(0, 1000))]; }, false],
  ];

  it.each(cases)('%s', async (_name, frames, streamed) => {
    const gw = await gateway();
    const bystander = await peer(gw);
    const kernelId = crypto.randomUUID();
    // The peer brings a running kernel in its hello, which the gateway adopts.
    const p = await peer(gw, { kernels: [{ kernelId, specName: 'python3', status: 'idle' }] });
    await until(async () => (await gw.api(`/api/kernels/${kernelId}`)).status === 200);
    const c = await connect(gw, kernelId, { v1: true });
    const closed = new Promise<number>((r) => p.ws.once('close', (code) => r(code)));
    for (const f of frames(kernelId)) p.sendRaw(f);
    expect(await closed).toBe(1007);
    expect(bystander.ws.readyState).toBe(WebSocket.OPEN);
    await until(async () => !(await gw.api('/api/providers')).body.some((x: { id: string }) => x.id === p.address), WAIT, 'the tunnel to be dropped');
    if (streamed) {
      // A client caught mid-stream is cut off, not left waiting for bytes that will never come.
      expect((await c.closed).code).toBe(1006);
    } else {
      expect(c.ws.readyState).toBe(WebSocket.OPEN);
    }
    expect(c.messages.filter((m) => m.header.msg_type !== 'status')).toEqual([]);
  });

  it('a message larger than the tunnel allows closes with 1009', async () => {
    const gw = await gateway({ tuning: { maxTunnelFrameBytes: 1024 * 1024 } });
    const kernelId = crypto.randomUUID();
    const p = await peer(gw, { kernels: [{ kernelId, specName: 'python3', status: 'idle' }] });
    const closed = new Promise<number>((r) => p.ws.once('close', (code) => r(code)));
    const f = output(2 * 1024 * 1024);
    p.sendRaw(kernelPartFrame(kernelId, f.length, 0, f.subarray(0, PART)));
    expect(await closed).toBe(1009);
  });

  it('messages in parts begun past the budget named in welcome close the tunnel with 1009; other tunnels carry on', async () => {
    const MiB = 1024 * 1024;
    const gw = await gateway({ tuning: { maxTunnelFrameBytes: MiB, maxPartialBytes: MiB } });
    const bystander = await peer(gw);
    const [k1, k2] = [crypto.randomUUID(), crypto.randomUUID()];
    const p = await peer(gw, { kernels: [k1, k2].map((kernelId) => ({ kernelId, specName: 'python3', status: 'idle' as const })) });
    expect(p.maxPartialBytes).toBe(MiB);
    const closed = new Promise<number>((r) => p.ws.once('close', (code) => r(code)));
    const f = output(600 * 1024);
    p.sendRaw(kernelPartFrame(k1, f.length, 0, f.subarray(0, PART)));
    await settled(p, k1);
    expect(p.closeCode).toBeUndefined();
    // 600 KiB + 600 KiB unfinished at once is over 1 MiB.
    p.sendRaw(kernelPartFrame(k2, f.length, 0, f.subarray(0, PART)));
    expect(await closed).toBe(1009);
    expect(bystander.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('messages in parts whose totals add up to exactly the budget are taken', async () => {
    const MiB = 1024 * 1024;
    const gw = await gateway({ tuning: { maxTunnelFrameBytes: MiB, maxPartialBytes: MiB } });
    const [k1, k2] = [crypto.randomUUID(), crypto.randomUUID()];
    const p = await peer(gw, { kernels: [k1, k2].map((kernelId) => ({ kernelId, specName: 'python3', status: 'idle' as const })) });
    await until(async () => (await gw.api(`/api/kernels/${k2}`)).status === 200);
    const c2 = await connect(gw, k2);
    const a = output(400 * 1024);
    const overhead = output(0).length; // a stream message's frame without its text
    const bExact = output(MiB - a.length - overhead);
    expect(a.length + bExact.length).toBe(MiB);
    p.sendRaw(kernelPartFrame(k1, a.length, 0, a.subarray(0, PART)));
    const bParts = partsOf(k2, bExact);
    for (const f of bParts) p.sendRaw(f);
    await c2.waitFor((m) => m.header.msg_type === 'stream', WAIT);
    await settled(p, k2);
    expect(p.closeCode).toBeUndefined();
  });

  it.each(['dies', 'is deleted'])('a kernel that %s mid-message gives its share of the budget back; the rest of its parts are dropped', async (how) => {
    const { gw, peer: p, kernelId, other } = await setupPair();
    const c = await connect(gw, other);
    const cut = partsOf(kernelId, output(700 * 1024));
    p.sendRaw(cut[0]!);
    await settled(p, kernelId);
    if (how === 'dies') p.kernelStatus(kernelId, 'dead', 'killed');
    else expect((await gw.api(`/api/kernels/${kernelId}`, { method: 'DELETE' })).status).toBe(204);
    await until(async () => {
      const r = await gw.api(`/api/kernels/${kernelId}`);
      return r.status === 404 || r.body.execution_state === 'dead';
    });
    // 700 KiB more would be over 1 MiB if the cut-off message still counted.
    const m = bigOutput(p, other, 700 * 1024);
    p.sendParts(other, m.frame, PART);
    // What the provider still had on the wire for the first kernel, out of order even: it is
    // credited and dropped without the order check, and reaches no one.
    for (const part of [cut[1]!, cut[3]!, cut[2]!]) p.sendRaw(part);
    expect((await c.waitFor(withId(m.msg.header.msg_id), WAIT)).content['text'] === m.text).toBe(true);
    await settled(p, kernelId);
    await settled(p, other);
    expect(p.closeCode).toBeUndefined();
  });

  it('a message the provider begins for a kernel already deleted does not hold the budget when it never ends', async () => {
    const { gw, peer: p, kernelId, other } = await setupPair();
    const c = await connect(gw, other);
    expect((await gw.api(`/api/kernels/${kernelId}`, { method: 'DELETE' })).status).toBe(204);
    // Begun while the provider was shutting the kernel down, and cut off when it forgot it.
    for (const part of partsOf(kernelId, output(700 * 1024)).slice(0, 2)) p.sendRaw(part);
    await settled(p, kernelId);
    const m = bigOutput(p, other, 700 * 1024);
    p.sendParts(other, m.frame, PART);
    expect((await c.waitFor(withId(m.msg.header.msg_id), WAIT)).content['text'] === m.text).toBe(true);
    expect(p.closeCode).toBeUndefined();
  });

  it('a dead kernel takes no message in parts: begun, declared dead again and sent to the end, it holds nothing and reaches no one', async () => {
    const { gw, peer: p, kernelId, other } = await setupPair();
    const onDead = await connect(gw, kernelId, { v1: false });
    const c = await connect(gw, other);
    p.kernelStatus(kernelId, 'dead', 'killed');
    await onDead.waitFor(isStatus('dead'));
    const dead = bigOutput(p, kernelId, 700 * 1024);
    const parts = partsOf(kernelId, dead.frame);
    p.sendRaw(parts[0]!);
    p.kernelStatus(kernelId, 'dead', 'again');
    for (const part of parts.slice(1)) p.sendRaw(part);
    await settled(p, kernelId);
    // Were the dead kernel's 700 KiB held, these 700 KiB would be over the 1 MiB budget.
    const m = bigOutput(p, other, 700 * 1024);
    p.sendParts(other, m.frame, PART);
    expect((await c.waitFor(withId(m.msg.header.msg_id), WAIT)).content['text'] === m.text).toBe(true);
    await settled(p, other);
    expect(onDead.messages.some(withId(dead.msg.header.msg_id))).toBe(false);
    expect(p.closeCode).toBeUndefined();
  });

  it('an undecodable first part is dropped with its message, credited, and the tunnel stays open', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const c = await connect(gw, kernelId);
    const junk = Buffer.alloc(3 * PART, 0xee);
    p.sendParts(kernelId, junk, PART);
    await settled(p, kernelId);
    const { msg, frame, text } = bigOutput(p, kernelId, 512 * 1024);
    p.sendParts(kernelId, frame, PART);
    expect((await c.waitFor(withId(msg.header.msg_id), WAIT)).content['text'] === text).toBe(true);
    await settled(p, kernelId);
    expect(p.closeCode).toBeUndefined();
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
  });

  it("another kernel's frames may come between one kernel's parts", async () => {
    const { gw, peer: p, kernelId } = await setup();
    const { body } = await gw.api('/api/kernels', { method: 'POST', json: { name: 'python3-cpu' } });
    const other: string = body.id;
    await until(async () => (await gw.api(`/api/kernels/${other}`)).body.execution_state === 'idle');
    const a = await connect(gw, kernelId);
    const b = await connect(gw, other);
    const big = bigOutput(p, kernelId, 1024 * 1024);
    const bigOther = bigOutput(p, other, 1024 * 1024);
    const pa = partsOf(kernelId, big.frame);
    const pb = partsOf(other, bigOther.frame);
    // `kernelId` is mid-message throughout; `other` sends a whole frame, then its own parts.
    for (const f of pa.slice(0, 3)) p.sendRaw(f);
    p.stream(other, 'between\n');
    for (let i = 0; i < Math.max(pa.length - 3, pb.length); i++) {
      if (pa[i + 3]) p.sendRaw(pa[i + 3]!);
      if (pb[i]) p.sendRaw(pb[i]!);
    }
    expect((await a.waitFor(withId(big.msg.header.msg_id), WAIT)).content['text'] === big.text).toBe(true);
    expect((await b.waitFor(withId(bigOther.msg.header.msg_id), WAIT)).content['text'] === bigOther.text).toBe(true);
    expect(b.messages.findIndex((m) => m.content['text'] === 'between\n')).toBeLessThan(b.messages.findIndex(withId(bigOther.msg.header.msg_id)));
    expect(a.messages.some((m) => m.content['text'] === 'between\n')).toBe(false);
    await settled(p, kernelId);
    await settled(p, other);
    expect(p.closeCode).toBeUndefined();
  });
});
