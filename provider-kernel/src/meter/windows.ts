// Execution and idle windows on one device. Pure bookkeeping: the meter feeds it kernel
// events (attach, start, end, detach, each with its time) and energy intervals from the
// device's samples, and takes the lines of a receipt whenever an execution ends.
//
// The device's energy is a timeline: interval [t0, t1] holds e mJ, and inside it energy is
// interpolated linearly, E(t) = floor(e · (t − t0) / (t1 − t0)). Events cut intervals into
// segments; each segment's energy E(b) − E(a) goes, whole, to the kernels holding the device
// at that moment, so the lines of all receipts of all kernels plus `unattributedMj` add up
// to the device's metered energy exactly, to the millijoule, whatever the event times.
//
// Who gets a segment:
// - GPU (a kernel holds the device while attached): the kernels executing in it share it
//   by measured share (per-process SM utilization) or equally where NVML gives none; if
//   none executes, the holders share it equally as idle energy.
// - CPU (not held exclusively): every attached kernel and "other processes" share it by
//   CPU ticks in the interval; other processes' share is not billed (unattributed).
// An execution lasts from its start to its end, and on a GPU past its end while the device
// stays busy with work the cell queued (utilization > 0), until the device goes idle or
// the kernel's next execution starts. Energy that reaches a window after its receipt was
// taken (the unmeasured tail of a window: a receipt never waits for it) is `carried` into
// the next receipt.
import type { ReceiptMethod, ReceiptSplit } from '@kinesis/protocol/receipt';
import type { EnergyInterval } from './normalize.ts';

export type DevicePolicy = 'gpu' | 'cpu';

/** Issued executions remembered per kernel (KernelAcc.issued). */
const MAX_ISSUED = 256;

/** Relative uncertainty of each method (documented in docs/metering.md). */
export const METHOD_REL_UNCERTAINTY: Record<ReceiptMethod, number> = {
  'nvml-counter': 0.05,
  'nvml-power': 0.1,
  'amdgpu-energy': 0.05,
  'amdgpu-power': 0.1,
  rapl: 0.1,
  estimate: 0.5,
  none: 0,
};
/** Weaker methods rank lower; a receipt states the weakest method that contributed. */
const METHOD_RANK: Record<ReceiptMethod, number> = { 'nvml-counter': 4, 'amdgpu-energy': 4, rapl: 3, 'nvml-power': 2, 'amdgpu-power': 2, estimate: 1, none: 0 };
const SPLIT_RANK: Record<ReceiptSplit, number> = { exclusive: 0, 'shared-equal': 1, 'shared-gpu-util': 2, 'shared-cpu-time': 2 };

export interface ReceiptLines {
  readonly fromMs: number;
  readonly toMs: number;
  readonly execMj: number;
  readonly idleMj: number;
  readonly carriedMj: number;
  readonly uncertaintyMj: number;
  /** Weakest method over the span, or null when no interval overlapped it. */
  readonly method: ReceiptMethod | null;
  readonly split: ReceiptSplit;
}

type EventKind = 'attach' | 'start' | 'end' | 'detach';
interface KernelEvent {
  readonly t: number;
  readonly seq: number;
  readonly kind: EventKind;
  readonly kernelId: string;
  readonly msgId: string;
}

interface KernelAcc {
  active: boolean;
  detached: boolean;
  state: 'idle' | 'busy' | 'tail';
  msgId: string;
  /**
   * Executions whose receipts have been issued and whose windows may still take energy:
   * what reaches them later is carried. Several can be open at once when receipts outrun
   * the samples (a reply leaves before the next reading); each leaves the set once the next
   * execution's start has been metered, and the set is bounded for receipts whose start
   * was never seen.
   */
  issued: Set<string>;
  fromMs: number;
  cursorMs: number;
  execMj: number;
  idleMj: number;
  carriedMj: number;
  uncertainty: number;
  method: ReceiptMethod | null;
  split: ReceiptSplit;
}

export class DeviceWindows {
  readonly #policy: DevicePolicy;
  readonly #capMw: number;
  readonly #kernels = new Map<string, KernelAcc>();
  readonly #events: KernelEvent[] = [];
  /** Fractional share each kernel is owed or owes from earlier splits, in (−1, 1). */
  readonly #carry = new Map<string, number>();
  #processedUntil: number | null = null;
  #eventSeq = 0;
  #unattributed = 0;
  #total = 0;

  constructor(opts: { policy: DevicePolicy; capMw: number }) {
    this.#policy = opts.policy;
    this.#capMw = opts.capMw;
  }

  /** Energy of all intervals pushed so far (mJ). */
  get totalMj(): number {
    return this.#total;
  }
  /** Energy no kernel held the device for (GPU) or used by other processes (CPU). */
  get unattributedMj(): number {
    return this.#unattributed;
  }
  get processedUntil(): number | null {
    return this.#processedUntil;
  }
  has(kernelId: string): boolean {
    return this.#kernels.has(kernelId);
  }
  /** True once the kernel's detach event has been metered (its closing lines are final). */
  isClosed(kernelId: string): boolean {
    const k = this.#kernels.get(kernelId);
    return k !== undefined && k.detached;
  }
  kernelIds(): string[] {
    return [...this.#kernels.keys()];
  }
  /** Current execution state, as far as events have been metered. */
  stateOf(kernelId: string): { state: 'idle' | 'busy' | 'tail'; msgId: string } | null {
    const k = this.#kernels.get(kernelId);
    return k ? { state: k.state, msgId: k.msgId } : null;
  }

  attach(kernelId: string, tMs: number): void {
    if (this.#kernels.has(kernelId)) throw new Error(`kernel ${kernelId} is already attached`);
    const t = this.#clamp(tMs);
    this.#kernels.set(kernelId, {
      active: false, detached: false, state: 'idle', msgId: '', issued: new Set(),
      fromMs: t, cursorMs: t, execMj: 0, idleMj: 0, carriedMj: 0, uncertainty: 0, method: null, split: 'exclusive',
    });
    this.#queue('attach', kernelId, '', t);
  }

  start(kernelId: string, msgId: string, tMs: number): void {
    this.#queue('start', kernelId, msgId, tMs);
  }

  end(kernelId: string, msgId: string, tMs: number): void {
    this.#queue('end', kernelId, msgId, tMs);
  }

  detach(kernelId: string, tMs: number): void {
    this.#queue('detach', kernelId, '', tMs);
  }

  /**
   * Forgets a kernel once its closing lines were taken, with any of its events not yet
   * metered (a detach that timed out): a later attach under the same id starts clean.
   */
  forget(kernelId: string): void {
    this.#kernels.delete(kernelId);
    this.#carry.delete(kernelId);
    for (let i = this.#events.length - 1; i >= 0; i--) if (this.#events[i]!.kernelId === kernelId) this.#events.splice(i, 1);
  }

  /**
   * The lines since the previous take, and resets them. `forMsgId` is the execution the
   * receipt is for: its energy metered from now on is carried into the next receipt.
   */
  take(kernelId: string, forMsgId: string | null): ReceiptLines {
    const k = this.#kernels.get(kernelId);
    if (!k) throw new Error(`kernel ${kernelId} is not attached`);
    const lines: ReceiptLines = {
      fromMs: k.fromMs,
      toMs: Math.max(k.fromMs, k.cursorMs),
      execMj: k.execMj,
      idleMj: k.idleMj,
      carriedMj: k.carriedMj,
      uncertaintyMj: Math.ceil(k.uncertainty - 1e-9),
      method: k.method,
      split: k.split,
    };
    k.fromMs = lines.toMs;
    k.execMj = k.idleMj = k.carriedMj = k.uncertainty = 0;
    k.method = null;
    k.split = 'exclusive';
    if (forMsgId !== null) {
      k.issued.add(forMsgId);
      if (k.issued.size > MAX_ISSUED) k.issued.delete(k.issued.values().next().value as string);
    }
    return lines;
  }

  push(iv: EnergyInterval): void {
    const { t0, t1 } = iv;
    if (t1 <= t0) return;
    if (this.#processedUntil !== null && t0 < this.#processedUntil) return; // overlapping: ignore
    this.#total += iv.energyMj;
    const energyAt = (t: number): number => Math.floor((iv.energyMj * (t - t0)) / (t1 - t0));
    let a = t0;
    while (this.#events.length > 0 && this.#events[0]!.t <= t1) {
      const ev = this.#events.shift()!;
      const b = Math.max(a, Math.min(ev.t, t1));
      this.#segment(iv, a, b, energyAt(b) - energyAt(a));
      this.#apply(ev, b);
      a = b;
    }
    this.#segment(iv, a, t1, energyAt(t1) - energyAt(a));
    this.#processedUntil = t1;
    for (const k of this.#kernels.values()) if (k.active) k.cursorMs = t1;
  }

  #clamp(t: number): number {
    return this.#processedUntil !== null && t < this.#processedUntil ? this.#processedUntil : t;
  }

  #queue(kind: EventKind, kernelId: string, msgId: string, tMs: number): void {
    if (!this.#kernels.has(kernelId)) throw new Error(`kernel ${kernelId} is not attached`);
    // An event older than what is already metered applies at the earliest unmetered time.
    const ev: KernelEvent = { t: this.#clamp(tMs), seq: this.#eventSeq++, kind, kernelId, msgId };
    let i = this.#events.length;
    while (i > 0 && this.#events[i - 1]!.t > ev.t) i--;
    this.#events.splice(i, 0, ev);
  }

  #apply(ev: KernelEvent, t: number): void {
    const k = this.#kernels.get(ev.kernelId);
    if (!k || k.detached) return;
    switch (ev.kind) {
      case 'attach':
        k.active = true;
        k.cursorMs = t;
        break;
      case 'start':
        // The previous execution's window (and tail) is over: nothing more can reach it.
        if (k.msgId !== ev.msgId) k.issued.delete(k.msgId);
        k.state = 'busy';
        k.msgId = ev.msgId;
        break;
      case 'end':
        if (k.state === 'busy' && k.msgId === ev.msgId) k.state = this.#policy === 'gpu' ? 'tail' : 'idle';
        break;
      case 'detach':
        k.active = false;
        k.detached = true;
        k.cursorMs = t;
        k.state = 'idle';
        break;
    }
  }

  #segment(iv: EnergyInterval, a: number, b: number, s: number): void {
    if (b <= a && s === 0) return;
    const holders = [...this.#kernels.entries()].filter(([, k]) => k.active);
    for (const [, k] of holders) {
      // A tail lasts while the device is busy; an interval that says idle (or unknown) ends it.
      if (k.state === 'tail' && iv.busy !== true) k.state = 'idle';
      if (k.method === null || METHOD_RANK[iv.method] < METHOD_RANK[k.method]) k.method = iv.method;
      if (iv.method === 'none') k.uncertainty += (this.#capMw * (b - a)) / 1000;
    }
    if (holders.length === 0) {
      this.#unattributed += s;
      return;
    }
    let entries: Array<[string, number]>;
    let label: ReceiptSplit;
    let other = 0;
    if (this.#policy === 'gpu') {
      const executing = holders.filter(([, k]) => k.state !== 'idle');
      const group = executing.length > 0 ? executing : holders;
      const measured = executing.length > 0 && iv.weights !== undefined && group.some(([id]) => (iv.weights!.get(id) ?? 0) > 0);
      entries = group.map(([id]) => [id, measured ? (iv.weights!.get(id) ?? 0) : 1]);
      label = group.length === 1 ? 'exclusive' : measured ? 'shared-gpu-util' : 'shared-equal';
    } else {
      entries = holders.map(([id]) => [id, iv.weights?.get(id) ?? 0]);
      other = Math.max(0, iv.otherWeight ?? 0);
      const users = entries.filter(([, w]) => w > 0).length + (other > 0 ? 1 : 0);
      label = users > 1 ? 'shared-cpu-time' : 'exclusive';
    }
    const shares = this.#split(s, entries, other);
    for (const [id] of holders) {
      const k = this.#kernels.get(id)!;
      if (SPLIT_RANK[label] > SPLIT_RANK[k.split]) k.split = label;
      const x = shares.get(id) ?? 0;
      if (x === 0) continue;
      if (k.state === 'idle') k.idleMj += x;
      else if (k.issued.has(k.msgId)) k.carriedMj += x;
      else k.execMj += x;
      k.uncertainty += x * METHOD_REL_UNCERTAINTY[iv.method];
    }
    let given = 0;
    for (const x of shares.values()) given += x;
    this.#unattributed += s - given;
  }

  /**
   * Splits s whole millijoules by weight (largest remainder), carrying each kernel's
   * fraction to its next split so nobody's rounding drifts. `other` takes a share that
   * belongs to no kernel. Weights all zero: kernels share equally, or `other` takes all
   * when it is the only candidate left (CPU idle with no kernel activity).
   */
  #split(s: number, entries: Array<[string, number]>, other: number): Map<string, number> {
    const out = new Map<string, number>();
    let w = other;
    for (const [, x] of entries) w += x;
    if (w <= 0) {
      if (this.#policy === 'cpu') return out; // nobody used the CPU: nobody's bill
      entries = entries.map(([id]) => [id, 1]);
      w = entries.length;
    }
    if (s === 0 || entries.length === 0) return out;
    const exact = entries.map(([id, x]) => ({ id, e: (s * x) / w + (this.#carry.get(id) ?? 0) }));
    const otherExact = (s * other) / w;
    let sum = 0;
    const base = exact.map(({ id, e }) => {
      const v = Math.min(s, Math.max(0, Math.floor(e)));
      sum += v;
      return { id, e, v };
    });
    const budget = s - Math.floor(otherExact + 1e-9);
    // Hand out (or take back) single millijoules by largest (smallest) remainder.
    const order = [...base].sort((p, q) => q.e - q.v - (p.e - p.v) || (p.id < q.id ? -1 : 1));
    for (let i = 0; sum < budget && i < order.length * 2; i++) {
      const x = order[i % order.length]!;
      if (x.v < s) {
        x.v++;
        sum++;
      }
    }
    for (let i = order.length - 1; sum > budget && i >= 0; i--) {
      const x = order[i]!;
      if (x.v > 0) {
        x.v--;
        sum--;
      }
    }
    for (const x of base) {
      out.set(x.id, x.v);
      this.#carry.set(x.id, Math.max(-0.999, Math.min(0.999, x.e - x.v)));
    }
    return out;
  }
}
