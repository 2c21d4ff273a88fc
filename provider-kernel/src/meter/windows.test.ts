// Seeded property tests of the window bookkeeping: whatever the event times, sample lag,
// sharing and busy flags, the receipts' lines add up to the device's energy to the
// millijoule, and no receipt bills more than the power cap allows for its span.
import { describe, expect, it } from 'vitest';
import { DeviceWindows, type ReceiptLines } from './windows.ts';
import { GpuNormalizer, type EnergyInterval } from './normalize.ts';
import { mulberry32, randInt } from './testing/random.ts';

const CAP_MW = 300_000;
const SLACK = 3;

interface Trace {
  readonly intervals: EnergyInterval[];
  /** Raw counter at each sample time. */
  readonly samples: Array<{ t: number; counter: bigint }>;
}

/** A counter trace at ~10 Hz with jitter; energy per interval never over the cap. */
function gpuTrace(r: () => number, n: number, t0: number, weightsFor?: string[]): Trace {
  const norm = new GpuNormalizer({ capMw: CAP_MW });
  const samples: Array<{ t: number; counter: bigint }> = [];
  const intervals: EnergyInterval[] = [];
  let t = t0;
  let c = BigInt(randInt(r, 0, 1e12));
  for (let i = 0; i < n; i++) {
    const weights = weightsFor ? new Map(weightsFor.map((k) => [k, randInt(r, 0, 100)])) : undefined;
    const iv = norm.push({ tMs: t, counterMj: c, powerMw: 100_000, utilGpu: r() < 0.6 ? randInt(r, 1, 100) : 0, ...(weights ? { weights } : {}) });
    samples.push({ t, counter: c });
    if (iv) intervals.push(iv);
    const dt = randInt(r, 60, 140);
    t += dt;
    // Mostly realistic; sometimes a counter that did not move (update period > sample period).
    c += r() < 0.15 ? 0n : BigInt(randInt(r, 0, Math.floor((CAP_MW * dt) / 1000)));
  }
  return { intervals, samples };
}

function sumLines(ls: ReceiptLines[]): number {
  return ls.reduce((a, l) => a + l.execMj + l.idleMj + l.carriedMj, 0);
}

function checkChain(ls: ReceiptLines[]): void {
  for (let i = 1; i < ls.length; i++) expect(ls[i]!.fromMs).toBe(ls[i - 1]!.toMs);
  for (const l of ls) {
    expect(l.toMs).toBeGreaterThanOrEqual(l.fromMs);
    expect(l.execMj + l.idleMj + l.carriedMj).toBeLessThanOrEqual(Math.floor((CAP_MW * (l.toMs - l.fromMs)) / 1000) + SLACK);
  }
}

describe('DeviceWindows, one kernel on a GPU (seeded)', () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]) {
    it(`seed ${seed}: execution + idle + carried lines sum to the counter delta over the kernel's life`, () => {
      const r = mulberry32(seed);
      const { intervals, samples } = gpuTrace(r, 200, 1_700_000_000_000);
      const w = new DeviceWindows({ policy: 'gpu', capMw: CAP_MW });
      const first = samples[5]!;
      const last = samples[180]!;
      const receipts: ReceiptLines[] = [];
      let fed = 0;
      // Deliver intervals whose end is at least `lag` ms before `t` (the sampler's delay).
      const feedUntil = (t: number): void => {
        const lag = randInt(r, 0, 150);
        while (fed < intervals.length && intervals[fed]!.t1 <= t - lag) w.push(intervals[fed++]!);
      };
      feedUntil(first.t);
      w.attach('k', first.t);
      let t = first.t + randInt(r, 0, 300);
      let n = 0;
      while (t < last.t - 400) {
        const start = t;
        const end = Math.min(start + randInt(r, 1, 900), last.t - 100);
        feedUntil(start);
        w.start('k', `m${n}`, start);
        feedUntil(end);
        w.end('k', `m${n}`, end);
        receipts.push(w.take('k', `m${n}`));
        n++;
        t = end + randInt(r, 0, 600);
      }
      feedUntil(last.t);
      w.detach('k', last.t);
      while (fed < intervals.length) w.push(intervals[fed++]!);
      expect(w.isClosed('k')).toBe(true);
      receipts.push(w.take('k', null));
      expect(n).toBeGreaterThan(5);
      checkChain(receipts);
      expect(receipts[0]!.fromMs).toBe(first.t);
      expect(receipts.at(-1)!.toMs).toBe(last.t);
      expect(BigInt(sumLines(receipts))).toBe(last.counter - first.counter);
      expect(w.unattributedMj + sumLines(receipts)).toBe(w.totalMj);
    });
  }
});

describe('DeviceWindows, kernels sharing one GPU (seeded)', () => {
  for (const seed of [101, 102, 103, 104, 105, 106]) {
    it(`seed ${seed}: all kernels' lines + unattributed = device energy; each receipt within the cap`, () => {
      const r = mulberry32(seed);
      const ids = ['a', 'b', 'c'];
      const { intervals, samples } = gpuTrace(r, 300, 1_700_000_000_000, ids);
      const w = new DeviceWindows({ policy: 'gpu', capMw: CAP_MW });
      const receipts = new Map<string, ReceiptLines[]>(ids.map((k) => [k, []]));
      // Random events per kernel at arbitrary (non-sample) times, applied in time order.
      type Ev = { t: number; k: string; kind: 'attach' | 'start' | 'end' | 'detach'; m: string };
      const evs: Ev[] = [];
      const span0 = samples[0]!.t;
      const span1 = samples.at(-1)!.t - 50;
      for (const k of ids) {
        let t = span0 + randInt(r, 0, 3000);
        const stop = span1 - randInt(r, 0, 3000);
        evs.push({ t, k, kind: 'attach', m: '' });
        let n = 0;
        while (t + 50 < stop) {
          const s = t + randInt(r, 1, 500);
          const e = Math.min(s + randInt(r, 1, 2000), stop - 1);
          if (e <= s) break;
          evs.push({ t: s, k, kind: 'start', m: `${k}${n}` }, { t: e, k, kind: 'end', m: `${k}${n}` });
          n++;
          t = e;
        }
        evs.push({ t: stop, k, kind: 'detach', m: '' });
      }
      evs.sort((x, y) => x.t - y.t);
      let fed = 0;
      for (const ev of evs) {
        const lag = randInt(r, 0, 200);
        while (fed < intervals.length && intervals[fed]!.t1 <= ev.t - lag) w.push(intervals[fed++]!);
        if (ev.kind === 'attach') w.attach(ev.k, ev.t);
        else if (ev.kind === 'start') w.start(ev.k, ev.m, ev.t);
        else if (ev.kind === 'detach') w.detach(ev.k, ev.t);
        else {
          w.end(ev.k, ev.m, ev.t);
          receipts.get(ev.k)!.push(w.take(ev.k, ev.m));
        }
      }
      while (fed < intervals.length) w.push(intervals[fed++]!);
      let all = 0;
      let sawShared = false;
      for (const k of ids) {
        expect(w.isClosed(k)).toBe(true);
        const ls = receipts.get(k)!;
        ls.push(w.take(k, null));
        checkChain(ls);
        all += sumLines(ls);
        if (ls.some((l) => l.split !== 'exclusive')) sawShared = true;
      }
      expect(sawShared).toBe(true);
      expect(all + w.unattributedMj).toBe(w.totalMj);
      expect(BigInt(w.totalMj)).toBe(samples.at(-1)!.counter - samples[0]!.counter);
    });
  }

  it('splits by measured SM share and labels it', () => {
    const w = new DeviceWindows({ policy: 'gpu', capMw: CAP_MW });
    w.attach('a', 0);
    w.attach('b', 0);
    w.start('a', 'ma', 0);
    w.start('b', 'mb', 0);
    w.push({ t0: 0, t1: 100, energyMj: 10_000, method: 'nvml-counter', capped: false, busy: true, weights: new Map([['a', 75], ['b', 25]]) });
    const a = w.take('a', null);
    const b = w.take('b', null);
    expect([a.execMj, b.execMj]).toEqual([7500, 2500]);
    expect(a.split).toBe('shared-gpu-util');
    // No SM figures: equal split, labelled as such.
    w.push({ t0: 100, t1: 200, energyMj: 1001, method: 'nvml-counter', capped: false, busy: true });
    const a2 = w.take('a', null);
    const b2 = w.take('b', null);
    expect(a2.execMj + b2.execMj).toBe(1001);
    expect(Math.abs(a2.execMj - b2.execMj)).toBeLessThanOrEqual(1);
    expect(a2.split).toBe('shared-equal');
  });
});

describe('DeviceWindows, windows and tails', () => {
  it('extends an execution while the GPU stays busy, then bills idle; the tail is carried', () => {
    const w = new DeviceWindows({ policy: 'gpu', capMw: CAP_MW });
    w.attach('k', 0);
    w.push({ t0: 0, t1: 100, energyMj: 1000, method: 'nvml-counter', capped: false, busy: false });
    w.start('k', 'm1', 100);
    w.push({ t0: 100, t1: 200, energyMj: 20_000, method: 'nvml-counter', capped: false, busy: true });
    w.end('k', 'm1', 250); // reply sent; samples up to 200 known
    const r1 = w.take('k', 'm1');
    expect(r1).toMatchObject({ fromMs: 0, toMs: 200, idleMj: 1000, execMj: 20_000, carriedMj: 0 });
    w.push({ t0: 200, t1: 300, energyMj: 20_000, method: 'nvml-counter', capped: false, busy: true }); // queued work still running
    w.push({ t0: 300, t1: 400, energyMj: 20_000, method: 'nvml-counter', capped: false, busy: true });
    w.push({ t0: 400, t1: 500, energyMj: 3000, method: 'nvml-counter', capped: false, busy: false }); // idle again
    w.start('k', 'm2', 520);
    w.push({ t0: 500, t1: 600, energyMj: 10_000, method: 'nvml-counter', capped: false, busy: true });
    w.end('k', 'm2', 600);
    const r2 = w.take('k', 'm2');
    // 200..400 is m1's tail (carried); 400..520 idle; 520..600 m2.
    expect(r2.carriedMj).toBe(40_000);
    expect(r2.idleMj).toBe(3000 + 2000);
    expect(r2.execMj).toBe(8000);
    expect(r2).toMatchObject({ fromMs: 200, toMs: 600, method: 'nvml-counter', split: 'exclusive' });
  });

  it('the next execution ends the previous tail even while the GPU stays busy', () => {
    const w = new DeviceWindows({ policy: 'gpu', capMw: CAP_MW });
    w.attach('k', 0);
    w.start('k', 'm1', 0);
    w.end('k', 'm1', 50);
    w.take('k', 'm1');
    w.start('k', 'm2', 100);
    w.push({ t0: 0, t1: 200, energyMj: 2000, method: 'nvml-counter', capped: false, busy: true });
    w.end('k', 'm2', 200);
    const r = w.take('k', 'm2');
    expect(r).toMatchObject({ execMj: 1000, carriedMj: 1000, idleMj: 0 });
  });

  it('energy of executions whose receipts were all issued before it was measured is carried, not billed to the next cell', () => {
    // CPU readings come every 500 ms: two short cells can both be answered before any of
    // their energy is read. Seen on a real kernel: a busy loop's energy showed up as the
    // execution energy of the `1+1` after it.
    const w = new DeviceWindows({ policy: 'cpu', capMw: 65_000 });
    w.attach('k', 0);
    w.push({ t0: 0, t1: 100, energyMj: 0, method: 'estimate', capped: false, busy: null, weights: new Map([['k', 0]]) });
    w.start('k', 'loop', 100);
    w.end('k', 'loop', 400);
    expect(w.take('k', 'loop')).toMatchObject({ execMj: 0, carriedMj: 0 });
    w.start('k', 'quick', 410);
    w.end('k', 'quick', 420);
    expect(w.take('k', 'quick')).toMatchObject({ execMj: 0, carriedMj: 0 });
    w.start('k', 'next', 500);
    w.push({ t0: 100, t1: 600, energyMj: 5000, method: 'estimate', capped: false, busy: null, weights: new Map([['k', 30]]) });
    w.end('k', 'next', 600);
    const r = w.take('k', 'next');
    // 100..400 loop and 410..420 quick are carried; 400..410 and 420..500 idle; 500..600 next.
    expect(r).toMatchObject({ carriedMj: 3000 + 100, idleMj: 100 + 800, execMj: 1000 });
  });

  it('states the weakest method of the span, and counts unmeasured time as uncertainty', () => {
    const w = new DeviceWindows({ policy: 'gpu', capMw: 100_000 });
    w.attach('k', 0);
    w.push({ t0: 0, t1: 100, energyMj: 1000, method: 'nvml-counter', capped: false, busy: false });
    w.push({ t0: 100, t1: 200, energyMj: 1000, method: 'nvml-power', capped: false, busy: false });
    const a = w.take('k', null);
    expect(a.method).toBe('nvml-power');
    expect(a.uncertaintyMj).toBe(Math.ceil(1000 * 0.05 + 1000 * 0.1));
    w.push({ t0: 200, t1: 300, energyMj: 0, method: 'none', capped: false, busy: null });
    const b = w.take('k', null);
    expect(b.method).toBe('none');
    expect(b.uncertaintyMj).toBe(10_000); // 100 W × 100 ms
  });

  it('CPU: kernels and other processes share by ticks; other processes are not billed', () => {
    const w = new DeviceWindows({ policy: 'cpu', capMw: 65_000 });
    w.attach('a', 0);
    w.attach('b', 0);
    w.start('a', 'ma', 0);
    w.push({ t0: 0, t1: 100, energyMj: 4000, method: 'rapl', capped: false, busy: null, weights: new Map([['a', 6], ['b', 2]]), otherWeight: 2 });
    const a = w.take('a', null);
    const b = w.take('b', null);
    expect(a).toMatchObject({ execMj: 2400, idleMj: 0, split: 'shared-cpu-time', method: 'rapl' });
    expect(b).toMatchObject({ execMj: 0, idleMj: 800 });
    expect(w.unattributedMj).toBe(800);
    w.push({ t0: 100, t1: 200, energyMj: 500, method: 'rapl', capped: false, busy: null, weights: new Map([['a', 0], ['b', 0]]), otherWeight: 0 });
    expect(w.unattributedMj).toBe(1300);
  });

  it('a kernel forgotten before its detach was metered leaves nothing behind for a re-attach', () => {
    const w = new DeviceWindows({ policy: 'gpu', capMw: CAP_MW });
    w.attach('k', 0);
    w.push({ t0: 0, t1: 100, energyMj: 100, method: 'nvml-counter', capped: false, busy: false });
    w.detach('k', 150); // no sample past 150 arrives in time
    w.take('k', null);
    w.forget('k');
    w.attach('k', 160);
    w.push({ t0: 100, t1: 200, energyMj: 1000, method: 'nvml-counter', capped: false, busy: false });
    w.push({ t0: 200, t1: 300, energyMj: 1000, method: 'nvml-counter', capped: false, busy: false });
    expect(w.isClosed('k')).toBe(false);
    expect(w.take('k', null)).toMatchObject({ fromMs: 160, toMs: 300, idleMj: 400 + 1000 });
  });

  it('rejects events for unknown kernels and double attach', () => {
    const w = new DeviceWindows({ policy: 'gpu', capMw: 1 });
    expect(() => w.start('x', 'm', 0)).toThrow(/not attached/);
    w.attach('x', 0);
    expect(() => w.attach('x', 0)).toThrow(/already attached/);
  });
});
