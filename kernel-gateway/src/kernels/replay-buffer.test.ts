import { describe, expect, it } from 'vitest';
import { prng } from '@kinesis/protocol/testing/prng';
import { ReplayBuffer } from './replay-buffer.ts';

describe('ReplayBuffer', () => {
  it('keeps frames in order within its bound', () => {
    const b = new ReplayBuffer(100);
    b.push(Buffer.alloc(10, 1), {});
    b.push(Buffer.alloc(20, 2), {});
    const { frames, dropped } = b.drain();
    expect(frames.map((f) => f[0])).toEqual([1, 2]);
    expect(dropped).toBeUndefined();
    expect(b.empty).toBe(true);
  });

  it('drops the oldest first and reports what it dropped', () => {
    const b = new ReplayBuffer(25);
    b.push(Buffer.alloc(10, 1), { msg_id: 'a' });
    b.push(Buffer.alloc(10, 2), { msg_id: 'b' });
    b.push(Buffer.alloc(10, 3), { msg_id: 'c' });
    expect(b.bytes).toBe(20);
    const { frames, dropped } = b.drain();
    expect(frames.map((f) => f[0])).toEqual([2, 3]);
    expect(dropped).toEqual({ count: 1, bytes: 10, parent: { msg_id: 'a' } });
  });

  it('drops a frame larger than the whole buffer without evicting others', () => {
    const b = new ReplayBuffer(25);
    b.push(Buffer.alloc(10, 1), {});
    b.push(Buffer.alloc(30, 2), { msg_id: 'big' });
    const { frames, dropped } = b.drain();
    expect(frames.map((f) => f[0])).toEqual([1]);
    expect(dropped?.count).toBe(1);
  });

  it('copies small views of large reads so the bound is real memory', () => {
    const read = Buffer.alloc(65536);
    const view = read.subarray(100, 300);
    const b = new ReplayBuffer(1000);
    b.push(view, {});
    const [kept] = b.drain().frames;
    expect(kept!.buffer.byteLength).toBeLessThan(65536);
    expect(kept!.equals(view)).toBe(true);
    const whole = Buffer.alloc(5000);
    const b2 = new ReplayBuffer(10_000);
    b2.push(whole, {});
    expect(b2.drain().frames[0]).toBe(whole);
  });

  it('holds the bound and keeps the newest suffix under random pushes (seeded)', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rand = prng(seed);
      const max = 1 + Math.floor(rand() * 5000);
      const b = new ReplayBuffer(max);
      const all: Buffer[] = [];
      const n = Math.floor(rand() * 3000);
      for (let i = 0; i < n; i++) {
        const f = Buffer.alloc(4 + Math.floor(rand() * 200));
        f.writeUInt32LE(i, 0);
        all.push(f);
        b.push(f, {});
        expect(b.bytes).toBeLessThanOrEqual(max);
      }
      const { frames, dropped } = b.drain();
      // What survives is the newest run of the frames that fit at all, in push order.
      const kept = frames.map((f) => f.readUInt32LE(0));
      const fitting = all.filter((f) => f.length <= max).map((f) => f.readUInt32LE(0));
      expect(kept).toEqual(fitting.slice(fitting.length - kept.length));
      if (fitting.length > kept.length) {
        // and nothing more would have fit
        const next = all[fitting[fitting.length - kept.length - 1]!]!;
        expect(frames.reduce((s, f) => s + f.length, 0) + next.length).toBeGreaterThan(max);
      }
      expect((dropped?.count ?? 0) + kept.length).toBe(n);
    }
  });
});
