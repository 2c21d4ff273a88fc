// After the gateway was away (a restart, a redeploy), @jupyterlab/services' kernel connection
// waits a random 10-30 s before it asks again: a WebSocket that failed early makes it fetch
// the kernel's model, and on a network error it retries that only after such a wait. The
// gateway keeps the session and kernel across its restart (kernel-gateway state-file.ts), so
// the notebook only has to come back: while the connection has been `connecting` for a few
// seconds, this asks the gateway for the kernel's model and reconnects as soon as the kernel
// is ready there. (A connection still waiting for a kernel that is starting is left alone.)

/** What the watcher needs of a kernel connection (Kernel.IKernelConnection has all of it). */
export interface Reconnectable {
  readonly isDisposed: boolean;
  readonly connectionStatus: string;
  reconnect(): Promise<void>;
}

export interface ReconnectOptions {
  /** Resolves true when the gateway answers and the kernel is ready there (idle or busy). */
  readonly kernelReady: () => Promise<boolean>;
  /** Leave a connection alone for its first this-many ms of `connecting` (default 3000). */
  readonly graceMs?: number;
  /** How often to ask, ms (default 1000). */
  readonly intervalMs?: number;
  /** No second reconnect() within this long of the last, ms (default 5000). */
  readonly backoffMs?: number;
}

/**
 * Watches `k` while it is `connecting`; call `check()` whenever its connection status changes.
 * `dispose()` stops it. Never throws into the page: a failed probe or reconnect just waits for
 * the next tick.
 */
export class ReconnectWatcher {
  #timer: ReturnType<typeof setInterval> | undefined;
  #since = 0;
  #lastTry = -Infinity;
  #probing = false;
  #disposed = false;

  constructor(
    private readonly k: Reconnectable,
    private readonly o: ReconnectOptions,
  ) {}

  check(): void {
    if (this.#disposed) return;
    if (this.k.isDisposed || this.k.connectionStatus !== 'connecting') {
      this.#stop();
      return;
    }
    if (this.#timer !== undefined) return;
    this.#since = Date.now();
    this.#timer = setInterval(() => void this.#tick(), this.o.intervalMs ?? 1000);
  }

  dispose(): void {
    this.#disposed = true;
    this.#stop();
  }

  #stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #tick(): Promise<void> {
    if (this.#probing) return;
    if (this.#disposed || this.k.isDisposed || this.k.connectionStatus !== 'connecting') return this.#stop();
    if (Date.now() - this.#since < (this.o.graceMs ?? 3000)) return;
    if (Date.now() - this.#lastTry < (this.o.backoffMs ?? 5000)) return;
    this.#probing = true;
    try {
      if (!(await this.o.kernelReady())) return;
      if (this.#disposed || this.k.isDisposed || this.k.connectionStatus !== 'connecting') return;
      this.#lastTry = Date.now();
      await this.k.reconnect().catch(() => undefined);
    } catch {
      // the gateway is still away: ask again on the next tick
    } finally {
      this.#probing = false;
    }
  }
}
