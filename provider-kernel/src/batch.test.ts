// The batching rules of batch.ts, message by message, and a seeded check that whatever
// order a cell's reply and idle come in, the batch ends exactly when both have been sent
// (and nothing but a cell's busy starts a hold).
import { describe, expect, it } from 'vitest';
import { prng } from '@kinesis/protocol/testing/prng';
import { ExecutionBatcher } from './batch.ts';

function recorder(): { log: string[]; ctl: { hold(ms: number): void; release(): void } } {
  const log: string[] = [];
  return { log, ctl: { hold: (ms) => log.push(`hold ${ms}`), release: () => log.push('release') } };
}

describe('ExecutionBatcher', () => {
  it('holds from busy to the later of reply and idle, then releases once', () => {
    const { log, ctl } = recorder();
    const b = new ExecutionBatcher(ctl, 8);
    b.onMessage('k', 'iopub', 'status', 'execute_request', 'p1', 'busy');
    b.onMessage('k', 'iopub', 'execute_input', 'execute_request', 'p1', undefined);
    b.onMessage('k', 'iopub', 'execute_result', 'execute_request', 'p1', undefined);
    b.onMessage('k', 'shell', 'execute_reply', 'execute_request', 'p1', undefined);
    expect(log).toEqual(['hold 8']); // one hold, from busy; it ends by itself after 8 ms
    b.onMessage('k', 'iopub', 'status', 'execute_request', 'p1', 'idle');
    expect(log.at(-1)).toBe('release');
    expect(b.running).toBe(0);
    // After the cell: nothing is held.
    b.onMessage('k', 'iopub', 'comm_msg', undefined, undefined, undefined);
    expect(log).toEqual(['hold 8', 'release']);
  });

  it('releases at once for stdin (a person is waiting to type)', () => {
    const { log, ctl } = recorder();
    const b = new ExecutionBatcher(ctl, 8);
    b.onMessage('k', 'iopub', 'status', 'execute_request', 'p1', 'busy');
    b.onMessage('k', 'stdin', 'input_request', 'execute_request', 'p1', undefined);
    expect(log).toEqual(['hold 8', 'release']);
  });

  it('does not batch other requests, nor anything when off', () => {
    const { log, ctl } = recorder();
    const b = new ExecutionBatcher(ctl, 8);
    b.onMessage('k', 'iopub', 'status', 'kernel_info_request', 'p0', 'busy');
    b.onMessage('k', 'shell', 'kernel_info_reply', 'kernel_info_request', 'p0', undefined);
    b.onMessage('k', 'iopub', 'status', 'kernel_info_request', 'p0', 'idle');
    expect(log).toEqual([]);
    const off = recorder();
    const b0 = new ExecutionBatcher(off.ctl, 0);
    b0.onMessage('k', 'iopub', 'status', 'execute_request', 'p1', 'busy');
    b0.onMessage('k', 'shell', 'execute_reply', 'execute_request', 'p1', undefined);
    b0.onMessage('k', 'iopub', 'status', 'execute_request', 'p1', 'idle');
    expect(off.log).toEqual([]);
    expect(() => new ExecutionBatcher(off.ctl, -1)).toThrow(RangeError);
    expect(() => new ExecutionBatcher(off.ctl, Number.NaN)).toThrow(RangeError);
  });

  it('a reply or idle of another execution does not end the running one; forget() does', () => {
    const { log, ctl } = recorder();
    const b = new ExecutionBatcher(ctl, 5);
    b.onMessage('k', 'iopub', 'status', 'execute_request', 'p2', 'busy');
    b.onMessage('k', 'shell', 'execute_reply', 'execute_request', 'p1', undefined);
    b.onMessage('k', 'iopub', 'status', 'execute_request', 'p1', 'idle');
    expect(log).not.toContain('release');
    b.forget('k');
    expect(log.at(-1)).toBe('release');
    b.forget('k'); // twice: nothing more
    expect(log.filter((l) => l === 'release')).toHaveLength(1);
  });

  it('seeded: over random cells on several kernels, a kernel is held exactly while its cell runs', () => {
    const rand = prng(808);
    const { log, ctl } = recorder();
    const b = new ExecutionBatcher(ctl, 8);
    const kernels = ['a', 'b', 'c'];
    const open = new Map<string, { id: string; replied: boolean; idle: boolean }>();
    let n = 0;
    for (let step = 0; step < 5000; step++) {
      const k = kernels[Math.floor(rand() * kernels.length)]!;
      const cell = open.get(k);
      log.length = 0;
      if (!cell) {
        const id = `m${++n}`;
        open.set(k, { id, replied: false, idle: false });
        b.onMessage(k, 'iopub', 'status', 'execute_request', id, 'busy');
        expect(log).toEqual(['hold 8']);
        continue;
      }
      const r = rand();
      if (r < 0.4) {
        b.onMessage(k, 'iopub', 'stream', 'execute_request', cell.id, undefined);
        expect(log).toEqual([]);
      } else if (r < 0.7 && !cell.replied) {
        cell.replied = true;
        b.onMessage(k, 'shell', 'execute_reply', 'execute_request', cell.id, undefined);
        expect(log).toEqual(cell.idle ? ['release'] : []);
      } else if (!cell.idle) {
        cell.idle = true;
        b.onMessage(k, 'iopub', 'status', 'execute_request', cell.id, 'idle');
        expect(log).toEqual(cell.replied ? ['release'] : []);
      }
      if (cell.replied && cell.idle) open.delete(k);
      expect(b.running).toBe(open.size);
    }
  });
});
