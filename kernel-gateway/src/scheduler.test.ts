import { describe, expect, it } from 'vitest';
import { prng } from '@kinesis/protocol/testing/prng';
import { compareCandidates, fits, pickProvider, type Candidate } from './scheduler.ts';

const cand = (id: string, o: Partial<Candidate> = {}): Candidate => ({ id, pricePerKwh: 100n, load: 0, latencyMs: 1, gpuMemoryMiB: 0, connectedSince: 0, ...o });

describe('pickProvider', () => {
  it('picks the cheapest provider', () => {
    expect(pickProvider([cand('a', { pricePerKwh: 300n }), cand('b', { pricePerKwh: 200n }), cand('c', { pricePerKwh: 250n })])?.id).toBe('b');
  });

  it('breaks price ties by load, then latency', () => {
    expect(pickProvider([cand('a', { load: 2 }), cand('b', { load: 1, latencyMs: 50 }), cand('c', { load: 1, latencyMs: 5 })])?.id).toBe('c');
    expect(pickProvider([cand('a', { latencyMs: undefined }), cand('b', { latencyMs: 80 })])?.id).toBe('b');
  });

  it('honours constraints and returns undefined when nothing fits', () => {
    const all = [cand('0xAa', { pricePerKwh: 100n }), cand('0xbb', { pricePerKwh: 500n, gpuMemoryMiB: 24000 })];
    expect(pickProvider(all, { minGpuMemoryMiB: 16000 })?.id).toBe('0xbb');
    expect(pickProvider(all, { provider: '0xAA' })?.id).toBe('0xAa');
    expect(pickProvider(all, { maxPricePerKwh: 400n, minGpuMemoryMiB: 1 })).toBeUndefined();
    expect(pickProvider([], {})).toBeUndefined();
  });

  it('always returns a fitting candidate that no other fitting candidate beats (seeded)', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const r = prng(seed);
      const n = Math.floor(r() * 8);
      const cs = Array.from({ length: n }, (_, i) =>
        cand(`p${i}`, {
          pricePerKwh: BigInt(Math.floor(r() * 4)),
          load: Math.floor(r() * 3),
          latencyMs: r() < 0.2 ? undefined : Math.floor(r() * 3),
          gpuMemoryMiB: Math.floor(r() * 3) * 8192,
          connectedSince: Math.floor(r() * 3),
        }),
      );
      const k = { maxPricePerKwh: r() < 0.5 ? BigInt(Math.floor(r() * 4)) : undefined, minGpuMemoryMiB: r() < 0.5 ? Math.floor(r() * 3) * 8192 : undefined };
      const got = pickProvider(cs, k);
      const fitting = cs.filter((c) => fits(c, k));
      if (fitting.length === 0) expect(got).toBeUndefined();
      else {
        expect(got && fits(got, k)).toBe(true);
        for (const c of fitting) expect(compareCandidates(got!, c)).toBeLessThanOrEqual(0);
      }
    }
  });
});
