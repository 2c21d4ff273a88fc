// Shared by the tests of messages in parts (kernel-parts*.test.ts): a gateway, test provider
// peers (./provider-peer.ts, NOT the real provider) and clients, closed after each test, and
// builders of large output and its KERNEL PART frames.
import { encodeV1, makeMessage, type JupyterMessage } from '@kinesis/protocol';
import { kernelPartFrame, ProviderPeer } from './provider-peer.ts';
import { startTestGateway, TestClient, until, type TestGateway } from './harness.ts';
import type { StartGatewayOptions } from '../index.ts';

export const PART = 64 * 1024;
export const WAIT = 15_000;

/** Gateways, peers and clients made through it, all closed by `cleanup` (call it in afterEach). */
export function partsHarness() {
  const gws: TestGateway[] = [];
  const peers: ProviderPeer[] = [];
  const clients: TestClient[] = [];

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

  /** Two kernels on one provider whose tunnel has a 1 MiB budget for messages in parts. */
  async function setupPair(): Promise<{ gw: TestGateway; peer: ProviderPeer; kernelId: string; other: string }> {
    const MiB = 1024 * 1024;
    const first = await setup({ tuning: { maxTunnelFrameBytes: MiB, maxPartialBytes: MiB } });
    const { body } = await first.gw.api('/api/kernels', { method: 'POST', json: { name: 'python3-cpu' } });
    await until(async () => (await first.gw.api(`/api/kernels/${body.id}`)).body.execution_state === 'idle');
    return { ...first, other: body.id };
  }

  async function connect(gw: TestGateway, kernelId: string, o: Parameters<typeof TestClient.connect>[2] = {}): Promise<TestClient> {
    const c = await TestClient.connect(gw.url, kernelId, o);
    clients.push(c);
    return c;
  }

  /** A gateway the test stops itself: cleanup leaves it alone. */
  function untrack(gw: TestGateway): void {
    gws.splice(gws.indexOf(gw), 1);
  }

  async function cleanup(): Promise<void> {
    for (const c of clients.splice(0)) c.ws.terminate();
    for (const p of peers.splice(0)) p.kill();
    for (const g of gws.splice(0)) await g.stop();
  }

  return { gateway, peer, setup, setupPair, connect, untrack, cleanup };
}

/** The gateway has handled (and credited) every kernel frame the peer sent for `kernelId`. */
export const settled = (p: ProviderPeer, kernelId: string): Promise<void> =>
  until(() => (p.credit.get(kernelId) ?? 0) === (p.sent.get(kernelId) ?? 0), WAIT, 'credit for every kernel frame sent');

export const connections = async (gw: TestGateway, kernelId: string): Promise<number> => (await gw.api(`/api/kernels/${kernelId}`)).body.connections;

/** About `bytes` of numbered lines, so a part delivered twice, lost or out of order shows. */
export function bigText(bytes: number): string {
  const lines: string[] = [];
  for (let i = 0, n = 0; n < bytes; i++) {
    const line = `line ${String(i).padStart(7, '0')} ${'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(2)}\n`;
    lines.push(line);
    n += line.length;
  }
  return lines.join('');
}

export function bigOutput(p: ProviderPeer, kernelId: string, bytes = 3 * 1024 * 1024): { msg: JupyterMessage; frame: Buffer; text: string } {
  const text = bigText(bytes);
  const msg = makeMessage({ channel: 'iopub', msgType: 'stream', session: p.kernels.get(kernelId)?.session ?? 'k', content: { name: 'stdout', text } });
  return { msg, frame: encodeV1(msg), text };
}

/** The KERNEL PART frames of `frame`, not yet sent. */
export function partsOf(kernelId: string, frame: Buffer, partBytes = PART): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < frame.length; o += partBytes) out.push(kernelPartFrame(kernelId, frame.length, o, frame.subarray(o, o + partBytes)));
  return out;
}

export const isStatus = (state: string) => (m: JupyterMessage): boolean => m.header.msg_type === 'status' && m.content['execution_state'] === state;
export const withId = (id: string) => (m: JupyterMessage): boolean => m.header.msg_id === id;
export const count = (c: TestClient, id: string): number => c.messages.filter(withId(id)).length;
