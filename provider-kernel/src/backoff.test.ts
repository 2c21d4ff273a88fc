import { describe, expect, it } from 'vitest';
import { prng } from '@kinesis/protocol/testing/prng';
import { Backoff } from './backoff.ts';

describe('reconnect backoff', () => {
  it('doubles from 0.5 s to 30 s within ±50 % jitter (seeded)', () => {
    for (const seed of [1, 2, 3, 99]) {
      const b = new Backoff({ random: prng(seed) });
      for (let i = 0; i < 20; i++) {
        const base = Math.min(30_000, 500 * 2 ** i);
        const d = b.next();
        expect(d).toBeGreaterThanOrEqual(base * 0.5);
        expect(d).toBeLessThanOrEqual(base * 1.5);
      }
    }
  });

  it('jitters: providers that lost the same gateway do not retry in step', () => {
    const delays = [1, 2, 3, 4, 5, 6, 7, 8].map((s) => new Backoff({ random: prng(s) }).next());
    expect(new Set(delays).size).toBeGreaterThan(4);
  });

  it('resets after success and can jump to the longest delay', () => {
    const b = new Backoff({ random: () => 0.5 });
    b.next();
    b.next();
    b.reset();
    expect(b.next()).toBe(500);
    b.exhaust();
    expect(b.next()).toBe(30_000);
  });
});
