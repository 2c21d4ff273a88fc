import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyReceipt, type SignedReceipt } from '@kinesis/protocol/receipt';
import { prng } from '@kinesis/protocol/testing/prng';
import { startProvider, type RunningProvider } from './index.ts';
import { silentLogger } from './logger.ts';
import { ExecutionTracker, metadataWithReceipt, type ExecutionMeter } from './metering.ts';
import { execute } from './testing/jupyter-client.ts';
import { TunnelTestPeer } from './testing/tunnel-peer.ts';

/** Records calls; hands out a numbered stand-in receipt per end (unit logic only). */
function recordingMeter(): ExecutionMeter & { calls: string[] } {
  const calls: string[] = [];
  let n = 0;
  return {
    calls,
    attachKernel: () => calls.push('attach'),
    detachKernel: () => calls.push('detach'),
    retrackKernel: () => calls.push('retrack'),
    onExecutionStart: (_k, msgId) => calls.push(`start:${msgId}`),
    onExecutionEnd: (_k, msgId) => {
      calls.push(`end:${msgId}`);
      return { message: { msgId, seq: String(++n) }, signature: '0x' } as unknown as SignedReceipt;
    },
  };
}

describe('execution tracking for the meter', () => {
  it('ends each execution once, whatever the order of reply and idle, and every reply carries its receipt (seeded)', () => {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const rand = prng(seed);
      const meter = recordingMeter();
      const t = new ExecutionTracker('k', meter, silentLogger);
      for (let i = 0; i < 50; i++) {
        const id = `m${i}`;
        const events: Array<'busy' | 'idle' | 'reply'> = rand() < 0.9 ? ['busy'] : []; // a lost busy now and then
        events.push(...(rand() < 0.5 ? (['idle', 'reply'] as const) : (['reply', 'idle'] as const)));
        let receipt: SignedReceipt | undefined;
        for (const e of events) {
          if (e === 'reply') receipt = t.onReply(id);
          else t.onStatus(id, e);
        }
        expect(receipt?.message.msgId).toBe(id);
        expect(meter.calls.filter((c) => c === `start:${id}`)).toHaveLength(1);
        expect(meter.calls.filter((c) => c === `end:${id}`)).toHaveLength(1);
        expect(meter.calls.indexOf(`start:${id}`)).toBeLessThan(meter.calls.indexOf(`end:${id}`));
      }
    }
  });

  it("times an execution by the kernel's header dates, kept within what the provider saw", () => {
    const times: string[] = [];
    const meter: ExecutionMeter = {
      attachKernel() {}, detachKernel() {}, retrackKernel() {},
      onExecutionStart: (_k, msgId, at) => void times.push(`start:${msgId}@${at}`),
      onExecutionEnd: (_k, msgId, at) => void times.push(`end:${msgId}@${at}`),
    };
    let now = Date.parse('2026-11-24T10:00:01Z');
    const t = new ExecutionTracker('k', meter, silentLogger, () => now);
    // The busy reached us late: the kernel's date says when the cell started.
    t.onStatus('a', 'busy', '2026-11-24T10:00:00.250123Z');
    t.onReply('a', '2026-11-24T10:00:00.900Z');
    t.onStatus('a', 'idle', '2026-11-24T10:00:00.950Z');
    // A date from the future is now; a date before the previous end is that end.
    now += 1000;
    t.onStatus('b', 'busy', '2026-11-24T11:00:00Z');
    t.onReply('b', '2026-11-24T09:00:00Z'); // an end before its start is the start
    t.onStatus('c', 'busy', '2026-11-24T09:00:00Z');
    // Missing or unreadable dates are now.
    now += 5;
    t.onReply('c', 'not a date');
    t.onStatus('d', 'busy');
    t.onReply('d', undefined);
    // The reply came before the busy: the window starts at the kernel's `started`; the busy
    // that follows changes nothing.
    now += 10;
    t.onReply('e', '2026-11-24T11:00:00Z', new Date(now - 3).toISOString());
    t.onStatus('e', 'busy', new Date(now - 4).toISOString());
    t.onStatus('e', 'idle', new Date(now).toISOString());
    const at = (iso: string): number => Date.parse(iso);
    expect(times).toEqual([
      `start:a@${at('2026-11-24T10:00:00.250Z')}`, `end:a@${at('2026-11-24T10:00:00.900Z')}`,
      `start:b@${now - 15}`, `end:b@${now - 15}`,
      `start:c@${now - 15}`, `end:c@${now - 10}`,
      `start:d@${now - 10}`, `end:d@${now - 10}`,
      `start:e@${now - 3}`, `end:e@${now}`,
    ]);
  });

  it('survives a meter that throws', () => {
    const t = new ExecutionTracker('k', { attachKernel() {}, detachKernel() {}, retrackKernel() {}, onExecutionStart() { throw new Error('x'); }, onExecutionEnd() { throw new Error('y'); } }, silentLogger);
    t.onStatus('a', 'busy');
    expect(t.onReply('a')).toBeUndefined();
  });

  it('puts the receipt at metadata.kinesis.receipt, keeping what was there', () => {
    const r = { message: { seq: '1' }, signature: '0xab' } as unknown as SignedReceipt;
    const out = JSON.parse(metadataWithReceipt(Buffer.from('{"started":"t","kinesis":{"x":1}}'), r).toString());
    expect(out).toEqual({ started: 't', kinesis: { x: 1, receipt: r } });
    expect(metadataWithReceipt(Buffer.from('[1]'), r).toString()).toBe('[1]');
  });
});

describe('metering a real kernel with the real meter', () => {
  let dataDir: string;
  let peer: TunnelTestPeer;
  let running: RunningProvider;
  beforeAll(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kinesis-meter-'));
    peer = await TunnelTestPeer.start();
    running = await startProvider({ gatewayUrl: peer.url, dataDir, kernelspecDirs: ['/usr/share/jupyter/kernels'], logger: silentLogger, pricePerKwh: 10n ** 18n, metering: { chainId: 31337 }, waitForConnection: true });
  });
  afterAll(async () => {
    await running?.close();
    await peer?.close();
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('execute_reply carries a receipt signed by the provider for that execution; seq and cumulative figures advance', async () => {
    const id = randomUUID();
    expect((await peer.request({ type: 'start_kernel', kernelId: id, specName: 'python3', env: {} })).ok).toBe(true);
    const receipts: SignedReceipt[] = [];
    const started: number[] = [];
    for (const code of ['sum(i*i for i in range(3_000_000))', '1+1']) {
      const r = await execute(peer, id, code);
      started.push(Date.parse(String(r.reply.metadata['started'])));
      const signed = (r.reply.metadata['kinesis'] as { receipt?: unknown } | undefined)?.receipt;
      const { receipt, signer } = verifyReceipt(signed, 31337);
      expect(signer).toBe(running.address);
      expect(receipt.message.kernelId).toBe(id);
      expect(receipt.message.msgId).toBe(r.reply.parent_header.msg_id);
      expect(receipt.message.pricePerKwh).toBe(String(10n ** 18n));
      receipts.push(receipt);
    }
    const [a, b] = receipts as [SignedReceipt, SignedReceipt];
    expect(BigInt(b.message.seq)).toBe(BigInt(a.message.seq) + 1n);
    expect(b.message.fromMs).toBe(a.message.toMs);
    expect(BigInt(b.message.cumulativeEnergyMj)).toBeGreaterThanOrEqual(BigInt(a.message.cumulativeEnergyMj));
    expect(Number(a.message.endMs) - Number(a.message.startMs)).toBeGreaterThan(50); // the busy loop took time
    // The window is the kernel's own time: it opens at its busy, just before ipykernel stamps
    // the reply's `started`, however late the busy reached the provider.
    for (const [i, r] of [a, b].entries()) {
      expect(Number(r.message.startMs)).toBeLessThanOrEqual(started[i]!);
      expect(Number(r.message.startMs)).toBeGreaterThan(started[i]! - 1000);
    }
    // A restart keeps the kernel id and its books: the next receipt continues the sequence.
    expect((await peer.request({ type: 'restart_kernel', kernelId: id })).ok).toBe(true);
    const after = await execute(peer, id, '2+2');
    const c = verifyReceipt((after.reply.metadata['kinesis'] as { receipt?: unknown }).receipt, 31337).receipt;
    expect(BigInt(c.message.seq)).toBe(BigInt(b.message.seq) + 1n);
    expect(BigInt(c.message.cumulativeEnergyMj)).toBeGreaterThanOrEqual(BigInt(b.message.cumulativeEnergyMj));
  });
});
