// The periodic sweep over every kernel's client connections: WebSocket pings, so that a
// client whose connection died without a close is found and terminated (the kernel then
// keeps its session's output for a reconnect); clients that stopped reading in the middle
// of a streamed message are dropped; and disconnected sessions that did not come back
// within `detachedTtlMs` are forgotten.
import type { Logger } from '../logger.ts';
import type { Kernel } from './kernel.ts';

export interface ClientKeepaliveOptions {
  readonly clientPingIntervalMs: number;
  /** How long output is kept for a disconnected session that does not come back. */
  readonly detachedTtlMs: number;
  readonly logger: Logger;
}

export class ClientKeepalive {
  readonly #timer: NodeJS.Timeout;

  constructor(
    /** The manager's kernels (its own map, read as it changes). */
    private readonly kernels: ReadonlyMap<string, Kernel>,
    private readonly opts: ClientKeepaliveOptions,
  ) {
    this.#timer = setInterval(() => this.#pingClients(), opts.clientPingIntervalMs);
    this.#timer.unref();
  }

  dispose(): void {
    clearInterval(this.#timer);
  }

  #pingClients(): void {
    const now = Date.now();
    for (const k of this.kernels.values()) {
      k.sweepDetached(now, this.opts.detachedTtlMs);
      for (const c of k.clients) {
        // A ping cannot be written into the middle of a frame being streamed; the frame's own
        // progress watches that client instead: one that completed no write in a whole
        // interval has stopped reading, and its congestion would hold the kernel's credit
        // (and so every other client's output) until it is gone.
        if (c.streaming) {
          if (c.streamStalled()) {
            this.opts.logger.warn('client stopped reading mid-message; dropping it', { kernel: k.id });
            c.abortStream();
          }
          continue;
        }
        if (c.held) continue;
        if (!c.alive) {
          c.ws.terminate();
          continue;
        }
        c.alive = false;
        try {
          c.ws.ping();
        } catch {
          // closing
        }
      }
    }
  }
}
