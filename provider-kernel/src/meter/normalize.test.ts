import { describe, expect, it } from 'vitest';
import { CpuNormalizer, GpuNormalizer, integratePower, type EnergyInterval, type GpuReading } from './normalize.ts';
import { mulberry32, randInt } from './testing/random.ts';

function run(norm: GpuNormalizer, readings: GpuReading[]): EnergyInterval[] {
  const out: EnergyInterval[] = [];
  for (const r of readings) {
    const iv = norm.push(r);
    if (iv) out.push(iv);
  }
  return out;
}

const g = (tMs: number, counterMj: bigint | null, powerMw: number | null = 100_000, utilGpu: number | null = 50): GpuReading => ({ tMs, counterMj, powerMw, utilGpu });

describe('GpuNormalizer', () => {
  it('counter deltas are exact and cover the counter delta to the mJ (seeded)', () => {
    const r = mulberry32(9);
    const norm = new GpuNormalizer({ capMw: 700_000 });
    const readings: GpuReading[] = [];
    let t = 1000;
    let c = 123_456_789_000n;
    for (let i = 0; i < 1000; i++) {
      readings.push(g(t, c));
      const dt = randInt(r, 50, 150);
      t += dt;
      c += BigInt(randInt(r, 0, Math.floor((700_000 * dt) / 1000)));
    }
    const ivs = run(norm, readings);
    expect(ivs.every((iv) => iv.method === 'nvml-counter' && !iv.capped)).toBe(true);
    expect(BigInt(ivs.reduce((a, iv) => a + iv.energyMj, 0))).toBe(readings.at(-1)!.counterMj! - readings[0]!.counterMj!);
  });

  it('caps every interval at power limit × wall time', () => {
    const r = mulberry32(3);
    const norm = new GpuNormalizer({ capMw: 250_000 });
    let t = 0;
    let c = 0n;
    const readings: GpuReading[] = [];
    for (let i = 0; i < 300; i++) {
      readings.push(g(t, c, randInt(r, 0, 2_000_000)));
      const dt = randInt(r, 1, 200);
      t += dt;
      c += BigInt(randInt(r, 0, 2_000 * dt)); // up to 2 kW: impossible for this board
    }
    readings.push(g(t + 100, null, 5_000_000)); // power path too
    const ivs = run(norm, readings);
    expect(ivs.some((iv) => iv.capped)).toBe(true);
    for (const iv of ivs) expect(iv.energyMj).toBeLessThanOrEqual(Math.floor((250_000 * (iv.t1 - iv.t0)) / 1000));
  });

  it('integrates power where the counter is unsupported, and says so', () => {
    const ivs = run(new GpuNormalizer({ capMw: 700_000 }), [g(0, null, 100_000), g(100, null, 300_000), g(200, null, null), g(300, null, null)]);
    expect(ivs.map((iv) => [iv.energyMj, iv.method])).toEqual([
      [20_000, 'nvml-power'], // trapezoid: (100 + 300) W / 2 × 0.1 s
      [30_000, 'nvml-power'], // one end missing: the other end's power
      [0, 'none'], // nothing measured at all
    ]);
    expect(integratePower(null, null, 10)).toBeNull();
  });

  it('a counter going backwards (driver reset) is bridged with power, then counted again', () => {
    const ivs = run(new GpuNormalizer({ capMw: 700_000 }), [g(0, 5_000_000n), g(100, 5_010_000n), g(200, 2000n, 100_000), g(300, 12_000n)]);
    expect(ivs.map((iv) => [iv.energyMj, iv.method])).toEqual([
      [10_000, 'nvml-counter'],
      [10_000, 'nvml-power'],
      [10_000, 'nvml-counter'],
    ]);
  });

  it('a stuck counter switches to power after stuckAfterMs, and its jump on resuming is not billed twice', () => {
    const norm = new GpuNormalizer({ capMw: 700_000, stuckAfterMs: 500 });
    const readings: GpuReading[] = [];
    for (let i = 0; i <= 10; i++) readings.push(g(i * 100, 1_000_000n)); // frozen for 1 s at 100 W
    readings.push(g(1100, 1_110_000n)); // resumes with the whole second's energy
    readings.push(g(1200, 1_120_000n));
    const ivs = run(norm, readings);
    const methods = ivs.map((iv) => iv.method);
    expect(methods.slice(0, 4)).toEqual(['nvml-counter', 'nvml-counter', 'nvml-counter', 'nvml-counter']);
    expect(methods.slice(5, 11)).toEqual(Array(6).fill('nvml-power'));
    expect(ivs[10]!.energyMj).toBe(10_000); // the jump interval is power-integrated
    expect(ivs[11]).toMatchObject({ method: 'nvml-counter', energyMj: 10_000 });
    const total = ivs.reduce((a, iv) => a + iv.energyMj, 0);
    expect(total).toBeLessThanOrEqual(120_000); // never more than what was drawn
    expect(total).toBeGreaterThanOrEqual(120_000 - 50_000); // lost at most stuckAfterMs of energy
  });

  it('a counter that is merely slow (equal readings, no power) is not declared stuck', () => {
    const norm = new GpuNormalizer({ capMw: 700_000, stuckAfterMs: 200 });
    const ivs = run(norm, [g(0, 10n, 0, 0), g(100, 10n, 0, 0), g(200, 10n, 0, 0), g(300, 10n, 0, 0), g(400, 11n, 0, 0)]);
    expect(ivs.every((iv) => iv.method === 'nvml-counter')).toBe(true);
    expect(norm.counterStuck).toBe(false);
  });

  it('drops out-of-order readings and reports busy from utilization', () => {
    const norm = new GpuNormalizer({ capMw: 700_000 });
    expect(norm.push(g(100, 0n))).toBeNull();
    expect(norm.push(g(100, 5n))).toBeNull();
    expect(norm.push(g(50, 5n))).toBeNull();
    expect(norm.push(g(200, 10n, 1, 0))).toMatchObject({ energyMj: 10, busy: false });
    expect(norm.push(g(300, 20n, 1, null))).toMatchObject({ busy: null });
  });
});

describe('CpuNormalizer', () => {
  it('estimate: kernel CPU ticks × package power per core, exact over time', () => {
    // 4 cores, 40 W package, 100 ticks/s: one tick = 10 ms of one core = 100 mJ.
    const n = new CpuNormalizer({ raplZones: null, capMw: 40_000, packagePowerMw: 40_000, ticksPerSecond: 100, cores: 4 });
    expect(n.method).toBe('estimate');
    const rd = (t: number, a: number, b: number) => ({ tMs: t, raplUj: null, kernelTicks: new Map([['a', a], ['b', b]]), systemBusyTicks: 1000 + t });
    expect(n.push(rd(0, 10, 5))).toBeNull();
    const iv = n.push(rd(1000, 60, 5))!;
    expect(iv).toMatchObject({ energyMj: 5000, method: 'estimate', otherWeight: 0 });
    expect([...iv.weights!]).toEqual([['a', 50], ['b', 0]]);
  });

  it('rapl: wraps the counter, keeps µJ remainders, weights other processes', () => {
    const n = new CpuNormalizer({ raplZones: [{ maxRangeUj: 1_000_000 }], capMw: 100_000, packagePowerMw: 50_000, ticksPerSecond: 100, cores: 2 });
    const rd = (t: number, uj: number, a: number, sys: number) => ({ tMs: t, raplUj: [uj], kernelTicks: new Map([['a', a]]), systemBusyTicks: sys });
    n.push(rd(0, 999_500, 0, 0));
    const iv1 = n.push(rd(100, 400, 3, 10))!; // wrapped: 500 + 400 µJ = 0.9 mJ → 0 now, remainder kept
    expect(iv1).toMatchObject({ energyMj: 0, method: 'rapl', otherWeight: 7 });
    const iv2 = n.push(rd(200, 700, 3, 10))!; // +300 µJ → 1.2 mJ cumulative → 1 mJ
    expect(iv2.energyMj).toBe(1);
  });
});
