// From raw device readings to energy intervals: each pair of consecutive readings of one
// device becomes one interval [t0, t1] with a whole number of millijoules, the method that
// produced it, and whether it was capped. Pure logic; the sampler worker supplies readings.
//
// GPU rules (NVML):
// - Prefer the energy counter: energy = counter(t1) − counter(t0), exact to the mJ.
// - Counter unsupported or failing at either end: integrate sampled power (trapezoid).
// - Counter went backwards (driver reload reset it): integrate power for that interval;
//   the next interval uses the counter again from its new base.
// - Counter stuck (unchanged for `stuckAfterMs` while the power readings say the board
//   drew energy): switch to power until it moves, and do not bill its jump when it does
//   (that energy was already integrated). The frozen span before detection is billed at
//   the counter's zero: a provider loses at most `stuckAfterMs` of energy, never gains.
// - Every interval is capped at powerCapMw × (t1 − t0) / 1000.
import type { ReceiptMethod } from '@kinesis/protocol/receipt';

export interface EnergyInterval {
  readonly t0: number;
  readonly t1: number;
  readonly energyMj: number;
  readonly method: ReceiptMethod;
  readonly capped: boolean;
  /** The device was executing work during the interval (GPU utilization > 0); null when unknown. */
  readonly busy: boolean | null;
  /** Measured activity per kernel (SM %, CPU ticks) over the interval, for splitting a shared device. */
  readonly weights?: ReadonlyMap<string, number>;
  /** Activity of processes that are not kernels (CPU only): their share is not billed. */
  readonly otherWeight?: number;
}

export interface GpuReading {
  readonly tMs: number;
  /** The energy counter in mJ, or null when unsupported or the read failed. */
  readonly counterMj: bigint | null;
  readonly powerMw: number | null;
  readonly utilGpu: number | null;
  readonly weights?: ReadonlyMap<string, number>;
}

export function capFor(capMw: number, dtMs: number): number {
  return Math.floor((capMw * dtMs) / 1000);
}

/** Trapezoid of two power readings over dt; a missing end uses the other. Null if both missing. */
export function integratePower(p0: number | null, p1: number | null, dtMs: number): number | null {
  if (p0 === null && p1 === null) return null;
  const a = p0 ?? p1!;
  const b = p1 ?? p0!;
  return Math.floor(((a + b) * dtMs) / 2000);
}

export class GpuNormalizer {
  readonly #capMw: number;
  readonly #stuckAfterMs: number;
  #prev: GpuReading | null = null;
  /** When the counter last changed (or was first seen). */
  #counterSince = 0;
  /** Power-integrated energy since the counter last changed. */
  #frozenPowerMj = 0;
  #stuck = false;

  readonly #methods: { readonly counter: ReceiptMethod; readonly power: ReceiptMethod };

  constructor(opts: { capMw: number; stuckAfterMs?: number; methods?: { readonly counter: ReceiptMethod; readonly power: ReceiptMethod } }) {
    this.#methods = opts.methods ?? { counter: 'nvml-counter', power: 'nvml-power' };
    this.#capMw = opts.capMw;
    this.#stuckAfterMs = opts.stuckAfterMs ?? 1000;
  }

  get counterStuck(): boolean {
    return this.#stuck;
  }

  /** Feeds one reading; returns the interval since the previous reading, or null for the first (or a stale one). */
  push(r: GpuReading): EnergyInterval | null {
    const p = this.#prev;
    if (p && r.tMs <= p.tMs) return null; // out of order or duplicate timestamp: drop
    this.#prev = r;
    if (!p) {
      this.#counterSince = r.tMs;
      return null;
    }
    const dt = r.tMs - p.tMs;
    const powerMj = integratePower(p.powerMw, r.powerMw, dt);
    let energy: number | null = null;
    let method: ReceiptMethod = this.#methods.counter;
    if (p.counterMj !== null && r.counterMj !== null) {
      const d = r.counterMj - p.counterMj;
      if (d < 0n) {
        this.#stuck = false; // a reset re-bases everything
        this.#counterSince = r.tMs;
        this.#frozenPowerMj = 0;
      } else if (d === 0n) {
        this.#frozenPowerMj += powerMj ?? 0;
        const frozenFor = r.tMs - this.#counterSince;
        // "Drew energy" = more than one counter update period's worth at 1 W would show; 1 J is safely above noise.
        if (!this.#stuck && frozenFor >= this.#stuckAfterMs && this.#frozenPowerMj >= 1000) this.#stuck = true;
        if (!this.#stuck) energy = 0;
      } else {
        const wasStuck = this.#stuck;
        this.#stuck = false;
        this.#counterSince = r.tMs;
        this.#frozenPowerMj = 0;
        if (!wasStuck) energy = d > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(d);
      }
    }
    if (energy === null) {
      energy = powerMj;
      method = energy === null ? 'none' : this.#methods.power;
      energy ??= 0;
    }
    const cap = capFor(this.#capMw, dt);
    const capped = energy > cap;
    const busy = r.utilGpu === null ? null : r.utilGpu > 0;
    const iv: EnergyInterval = { t0: p.tMs, t1: r.tMs, energyMj: capped ? cap : energy, method, capped, busy };
    return r.weights ? { ...iv, weights: r.weights } : iv;
  }
}

export interface CpuReading {
  readonly tMs: number;
  /** Raw RAPL counters per zone (µJ), or null when the estimate is in use. */
  readonly raplUj: readonly (number | null)[] | null;
  /** CPU ticks of each kernel's process tree (cumulative). */
  readonly kernelTicks: ReadonlyMap<string, number>;
  /** Busy ticks of the whole system (cumulative), for RAPL's share. */
  readonly systemBusyTicks: number | null;
}

/**
 * CPU: RAPL package energy when readable, else the estimate
 * (kernel CPU seconds × packagePowerW / cores). Weights are each kernel's CPU ticks over
 * the interval; with RAPL, other processes' ticks are `otherWeight` and their share of the
 * package energy is nobody's bill.
 */
export class CpuNormalizer {
  readonly #rapl: readonly { maxRangeUj: number }[] | null;
  readonly #capMw: number;
  /** packagePowerMw / (ticksPerSecond × cores): mJ per tick, kept as a fraction for exactness. */
  readonly #estNum: number;
  readonly #estDen: number;
  #prev: CpuReading | null = null;
  #raplCumUj = 0;
  #estCumTicks = 0;

  constructor(opts: { raplZones: readonly { maxRangeUj: number }[] | null; capMw: number; packagePowerMw: number; ticksPerSecond: number; cores: number }) {
    this.#rapl = opts.raplZones && opts.raplZones.length > 0 ? opts.raplZones : null;
    this.#capMw = opts.capMw;
    this.#estNum = Math.round(opts.packagePowerMw);
    this.#estDen = opts.ticksPerSecond * opts.cores;
  }

  get method(): 'rapl' | 'estimate' {
    return this.#rapl ? 'rapl' : 'estimate';
  }

  push(r: CpuReading): EnergyInterval | null {
    const p = this.#prev;
    if (p && r.tMs <= p.tMs) return null;
    this.#prev = r;
    if (!p) return null;
    const dt = r.tMs - p.tMs;
    const weights = new Map<string, number>();
    let kernelSum = 0;
    for (const [k, ticks] of r.kernelTicks) {
      const before = p.kernelTicks.get(k);
      // A tree can lose ticks when an unreaped child leaves it: never negative.
      const d = before === undefined ? 0 : Math.max(0, ticks - before);
      weights.set(k, d);
      kernelSum += d;
    }
    let energy: number;
    let method: ReceiptMethod;
    let otherWeight = 0;
    if (this.#rapl && r.raplUj && p.raplUj && r.raplUj.every((v) => v !== null) && p.raplUj.every((v) => v !== null)) {
      let du = 0;
      this.#rapl.forEach((z, i) => {
        const a = p.raplUj![i]!;
        const b = r.raplUj![i]!;
        du += b >= a ? b - a : z.maxRangeUj - a + b;
      });
      const before = Math.floor(this.#raplCumUj / 1000);
      this.#raplCumUj += du;
      energy = Math.floor(this.#raplCumUj / 1000) - before; // µJ remainders carry over, never lost
      method = 'rapl';
      if (r.systemBusyTicks !== null && p.systemBusyTicks !== null) {
        otherWeight = Math.max(0, r.systemBusyTicks - p.systemBusyTicks - kernelSum);
      }
    } else {
      const before = Math.floor((this.#estCumTicks * this.#estNum) / this.#estDen);
      this.#estCumTicks += kernelSum;
      energy = Math.floor((this.#estCumTicks * this.#estNum) / this.#estDen) - before;
      method = 'estimate';
    }
    const cap = capFor(this.#capMw, dt);
    const capped = energy > cap;
    return { t0: p.tMs, t1: r.tMs, energyMj: capped ? cap : energy, method, capped, busy: null, weights, otherWeight };
  }
}
