// The provider's tunnel behaviour against the test peer (NOT the gateway: see
// testing/tunnel-peer.ts): reconnect with backoff, kernels kept through an outage and
// re-attached, output buffered meanwhile, and per-kernel flow control with a real flooding
// ipykernel next to a quiet one.
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startProvider, type RunningProvider } from './index.ts';
import { silentLogger } from './logger.ts';
import { collect, execute, executeRequest, resultText } from './testing/jupyter-client.ts';
import { TunnelTestPeer } from './testing/tunnel-peer.ts';

const SPEC_DIRS = ['/usr/share/jupyter/kernels'];
let dataDir: string;
const cleanups: Array<() => Promise<unknown>> = [];

beforeEach(async () => {
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kinesis-tunnel-'));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await fs.rm(dataDir, { recursive: true, force: true });
});

async function provider(peer: TunnelTestPeer, extra: Partial<Parameters<typeof startProvider>[0]> = {}): Promise<RunningProvider> {
  const p = await startProvider({ gatewayUrl: peer.url, dataDir, kernelspecDirs: SPEC_DIRS, logger: silentLogger, ...extra });
  cleanups.push(() => p.close());
  return p;
}

async function peerOn(port = 0, o: Parameters<typeof TunnelTestPeer.start>[0] = {}): Promise<TunnelTestPeer> {
  const peer = await TunnelTestPeer.start(o, port);
  cleanups.push(() => peer.close());
  return peer;
}

async function startKernel(peer: TunnelTestPeer): Promise<string> {
  const kernelId = randomUUID();
  expect((await peer.request({ type: 'start_kernel', kernelId, specName: 'python3', env: {} })).ok).toBe(true);
  return kernelId;
}

describe('tunnel link', () => {
  it('backs off with jitter when the gateway keeps refusing, and stops dialling after close', async () => {
    const peer = await peerOn(0, { rejectAll: true });
    const p = await startProvider({ gatewayUrl: peer.url, dataDir, kernelspecDirs: SPEC_DIRS, logger: silentLogger });
    await new Promise((r) => setTimeout(r, 4000));
    await p.close();
    const t = peer.connectTimes;
    // 0.5, 1, 2 s (±50 %) between tries: 3 to 6 connections in 4 s, never a storm.
    expect(t.length).toBeGreaterThanOrEqual(3);
    expect(t.length).toBeLessThanOrEqual(6);
    const gaps = t.slice(1).map((x, i) => x - (t[i] as number));
    for (const [i, g] of gaps.entries()) {
      const base = 500 * 2 ** i;
      expect(g).toBeGreaterThanOrEqual(base * 0.5 - 20);
      expect(g).toBeLessThanOrEqual(base * 1.5 + 250);
    }
    const n = t.length;
    await new Promise((r) => setTimeout(r, 1500));
    expect(peer.connectTimes.length).toBe(n);
  });

  it('keeps kernels through a gateway restart, buffers their output, and re-attaches them', async () => {
    const peer1 = await TunnelTestPeer.start();
    const port = peer1.port;
    await provider(peer1, { waitForConnection: true });
    const id = await startKernel(peer1);
    await execute(peer1, id, 'x = 1');
    const req = executeRequest('import time; time.sleep(1.5); print("during outage", flush=True); 6*7');
    peer1.sendKernel(id, req);
    await peer1.until(() => peer1.replies_(id, req.header.msg_id).some((m) => m.content['execution_state'] === 'busy'), 10_000, 'busy');
    await peer1.close(); // the gateway goes away mid-execution
    await new Promise((r) => setTimeout(r, 2500)); // the cell finishes while no gateway is there
    const peer2 = await peerOn(port);
    const hello = await peer2.until(() => peer2.hellos[0], 20_000, 'hello after reconnect');
    expect(hello.kernels).toEqual([{ kernelId: id, specName: 'python3', status: 'idle' }]);
    const r = await collect(peer2, id, req.header.msg_id, 10_000);
    expect(r.stdout).toBe('during outage\n');
    expect(resultText(r)).toBe('42');
    expect(resultText(await execute(peer2, id, 'x + 1'))).toBe('2'); // same kernel, state kept
  });

  it('reports a kernel that died during the outage right after reconnecting', async () => {
    const peer1 = await TunnelTestPeer.start();
    const port = peer1.port;
    const p = await provider(peer1, { waitForConnection: true, metering: false });
    const id = await startKernel(peer1);
    const pid = p.provider.kernelStates()[0]?.pid as number;
    await peer1.close();
    for (let i = 0; i < 100 && p.provider.link.state === 'open'; i++) await new Promise((r) => setTimeout(r, 20));
    process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    const peer2 = await peerOn(port);
    const hello = await peer2.until(() => peer2.hellos[0], 20_000, 'hello');
    expect(hello.kernels).toEqual([]);
    const dead = await peer2.until(() => peer2.statuses.find((s) => s.kernelId === id), 5000, 'dead');
    expect(dead.status).toBe('dead');
  });

  it('drops a silent gateway (no ping, no frame) and a handshake that never completes', async () => {
    const quiet = await peerOn();
    await provider(quiet, { waitForConnection: true, link: { idleTimeoutMs: 800 } });
    await quiet.until(() => quiet.hellos.length >= 2, 10_000, 'reconnect after silence');
    const mute = await peerOn(0, { silent: true });
    await provider(mute, { link: { handshakeTimeoutMs: 500 } });
    await mute.until(() => mute.connectTimes.length >= 2, 10_000, 'retry after handshake timeout');
    expect(mute.hellos.length).toBeGreaterThanOrEqual(1);
  });

  it('keeps a gateway that keeps talking, however long past the silence limit, and drops it once it stops', async () => {
    const chatty = await peerOn();
    await provider(chatty, { waitForConnection: true, link: { idleTimeoutMs: 800 } });
    // A frame every 200 ms for 2.4 s: three times the limit, never 800 ms without a word.
    const stranger = randomUUID();
    for (let i = 0; i < 12; i++) {
      chatty.grant(stranger, 1);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(chatty.connectTimes.length).toBe(1);
    expect(chatty.hellos.length).toBe(1);
    await chatty.until(() => chatty.hellos.length >= 2, 10_000, 'reconnect once the gateway went quiet');
  });

  it('closes on a malformed control frame and comes back', async () => {
    const peer = await peerOn();
    await provider(peer, { waitForConnection: true });
    peer.sendRaw(Buffer.concat([Buffer.from([1]), Buffer.from('{"type":"nonsense"}')]));
    await peer.until(() => peer.hellos.length >= 2, 10_000, 'second hello');
    expect(peer.connectTimes.length).toBe(2);
  });
});

describe('flow control with real kernels', () => {
  it('a kernel flooding output does not starve another kernel’s 1+1 reply', async () => {
    // Credit is granted by hand: the flooding kernel runs out of it, as when its clients are slow.
    const peer = await peerOn(0, { initialCredit: 256 * 1024, autoCredit: false });
    const p = await provider(peer, { waitForConnection: true, outbox: { maxQueuedBytes: 4 * 1024 * 1024 } });
    const flood = await startKernel(peer);
    const quiet = await startKernel(peer);
    const floodReq = executeRequest('import sys\nwhile True:\n    sys.stdout.write("x" * 10000 + "\\n"); sys.stdout.flush()');
    peer.sendKernel(flood, floodReq);
    // Wait until the flooding kernel has spent its credit.
    await peer.until(() => peer.messages.filter((m) => m.kernelId === flood).reduce((n, m) => n + m.bytes, 0) >= 200 * 1024, 20_000, 'flood');
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      const r = await execute(peer, quiet, `${i}+1`);
      expect(resultText(r)).toBe(String(i + 1));
      expect(Date.now() - t0).toBeLessThan(1500);
      peer.grant(quiet, 1 << 20);
    }
    // The flood was held back by credit, not by luck: it received at most its credit plus one frame.
    const floodBytes = peer.messages.filter((m) => m.kernelId === flood).reduce((n, m) => n + m.bytes, 0);
    expect(floodBytes).toBeLessThan(256 * 1024 + 128 * 1024);
    // Now the clients catch up: the flood's queued output flows, with a notice for what the bounded queue dropped.
    await peer.until(() => p.provider.outbox.droppedFrames(flood) > 0, 30_000, 'the bounded queue to drop output');
    peer.autoCredit = true;
    peer.grant(flood, 64 * 1024 * 1024);
    expect((await peer.request({ type: 'interrupt_kernel', kernelId: flood })).ok).toBe(true);
    const done = await collect(peer, flood, floodReq.header.msg_id, 20_000);
    expect(done.reply.content['ename']).toBe('KeyboardInterrupt');
    expect(done.iopub.some((m) => m.header.msg_type === 'stream' && String(m.content['text']).includes('[kinesis]') && String(m.content['text']).includes('dropped'))).toBe(true);
  });
});
