// Reconnect delays: exponential from 0.5 s, doubling to 30 s, each jittered by ±50 %
// (docs/protocols.md, "Liveness"). Jitter spreads providers that lost the same gateway so
// they do not all dial back in the same instant when it returns.
export interface BackoffOptions {
  readonly initialMs?: number;
  readonly maxMs?: number;
  /** Fraction of the delay to jitter by, either way (0.5 → ±50 %). */
  readonly jitter?: number;
  /** Uniform [0, 1) source; injectable for seeded tests. */
  readonly random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly initial: number;
  private readonly max: number;
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(o: BackoffOptions = {}) {
    this.initial = o.initialMs ?? 500;
    this.max = o.maxMs ?? 30_000;
    this.jitter = o.jitter ?? 0.5;
    this.random = o.random ?? Math.random;
  }

  /** The delay before the next attempt; each call moves one step up. */
  next(): number {
    const base = Math.min(this.max, this.initial * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(base * (1 + this.jitter * (2 * this.random() - 1)));
  }

  /** Jumps to the longest delay (for closes that mean "do not hurry back"). */
  exhaust(): void {
    this.attempt = Math.ceil(Math.log2(this.max / this.initial));
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
