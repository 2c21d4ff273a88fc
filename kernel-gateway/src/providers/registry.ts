// The connected providers: accepts tunnels (handshake), replaces a provider's older
// connection when it dials again, pings every link, and tells the kernel manager when a
// provider comes and goes.
import { encodeControl, TUNNEL_FEATURES, type Hello, type KernelStatusEvent, type KernelReceiptEvent } from '@kinesis/protocol';
import type { Logger } from '../logger.ts';
import { CLOSE_REPLACED, handshake } from './handshake.ts';
import { ProviderLink } from './link.ts';
import type { TunnelSocket } from './tunnel-socket.ts';
import type { KernelPart } from '../kernels/kernel.ts';

export interface ProviderEvents {
  onAttach(link: ProviderLink, hello: Hello): void;
  onDetach(link: ProviderLink): void;
  onKernelFrame(link: ProviderLink, kernelId: string, payload: Buffer, frameBytes: number): void;
  onKernelPart(link: ProviderLink, kernelId: string, part: KernelPart, frameBytes: number): boolean;
  onKernelPartAbort(link: ProviderLink, kernelId: string): void;
  onKernelStatus(link: ProviderLink, ev: KernelStatusEvent): void;
  onKernelReceipt(link: ProviderLink, ev: KernelReceiptEvent): void;
}

export interface ProviderRegistryOptions {
  readonly gatewayId: string;
  readonly initialCredit: number;
  /** Owed bytes per CREDIT frame (capped at half the initial credit). */
  readonly creditBatchBytes?: number;
  readonly maxFrameBytes: number;
  /** Most bytes of messages in parts unfinished at once on one tunnel (named in `welcome`). */
  readonly maxPartialBytes: number;
  readonly requestTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly logger: Logger;
}

export class ProviderRegistry {
  readonly #links = new Map<string, ProviderLink>();
  readonly #sockets = new Set<TunnelSocket>();
  #handshaking = 0;
  readonly #timer: NodeJS.Timeout;
  #events: ProviderEvents | undefined;
  #closed = false;

  constructor(readonly opts: ProviderRegistryOptions) {
    this.#timer = setInterval(() => this.#pingAll(), opts.pingIntervalMs);
    this.#timer.unref();
  }

  setEvents(events: ProviderEvents): void {
    this.#events = events;
  }

  get(id: string): ProviderLink | undefined {
    return this.#links.get(id.toLowerCase());
  }

  list(): ProviderLink[] {
    return [...this.#links.values()];
  }

  /** Tunnels whose peer has not yet proved its key (app.ts refuses new ones above a limit). */
  get handshaking(): number {
    return this.#handshaking;
  }

  async accept(ws: TunnelSocket): Promise<void> {
    if (this.#closed) {
      ws.terminate();
      return;
    }
    this.#sockets.add(ws);
    ws.once('close', () => this.#sockets.delete(ws));
    this.#handshaking++;
    let hello: Hello | undefined;
    try {
      hello = await handshake(ws, { gatewayId: this.opts.gatewayId, timeoutMs: this.opts.handshakeTimeoutMs, logger: this.opts.logger });
    } finally {
      this.#handshaking--;
    }
    if (!hello || this.#closed || ws.readyState !== ws.OPEN) return;
    const events = this.#events;
    if (!events) throw new Error('ProviderRegistry used before setEvents');
    const link = new ProviderLink(
      ws,
      hello,
      {
        onKernelFrame: (l, k, p, n) => events.onKernelFrame(l, k, p, n),
        onKernelPart: (l, k, p, n) => events.onKernelPart(l, k, p, n),
        onKernelPartAbort: (l, k) => events.onKernelPartAbort(l, k),
        onKernelStatus: (l, ev) => events.onKernelStatus(l, ev),
        onKernelReceipt: (l, ev) => events.onKernelReceipt(l, ev),
        onAdvertise: () => this.opts.logger.info('provider updated its offer', { provider: link.id }),
        onClose: (l, code, reason) => {
          this.opts.logger.info('provider disconnected', { provider: l.id, code, reason });
          // A link replaced by a newer connection of the same provider is not a departure.
          if (this.#links.get(l.id.toLowerCase()) !== l) return;
          this.#links.delete(l.id.toLowerCase());
          events.onDetach(l);
        },
      },
      {
        maxFrameBytes: this.opts.maxFrameBytes,
        maxPartialBytes: this.opts.maxPartialBytes,
        creditBatchBytes: Math.min(this.opts.creditBatchBytes ?? 1, Math.floor(this.opts.initialCredit / 2)),
        requestTimeoutMs: this.opts.requestTimeoutMs,
        logger: this.opts.logger,
        socket: ws.socket,
      },
    );
    const old = this.#links.get(link.id.toLowerCase());
    this.#links.set(link.id.toLowerCase(), link);
    if (old) {
      this.opts.logger.info('provider connected again; replacing its older connection', { provider: link.id });
      old.close(CLOSE_REPLACED, 'replaced by a newer connection');
    }
    ws.send(encodeControl({ type: 'welcome', providerId: link.id, initialCredit: this.opts.initialCredit, features: [...TUNNEL_FEATURES], maxPartialBytes: this.opts.maxPartialBytes }), { binary: true });
    this.opts.logger.info('provider connected', { provider: link.id, name: link.name, hardware: link.hardwareClass.label, kernels: hello.kernels.length });
    link.ping(Date.now(), this.opts.pingTimeoutMs); // first latency sample right away
    events.onAttach(link, hello);
  }

  /** Closes every tunnel with 1001 (providers reconnect by themselves) and stops the ping timer. */
  async close(graceMs = 500): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await closeSockets([...this.#sockets], 1001, 'gateway shutting down', graceMs);
    this.#sockets.clear();
  }

  #pingAll(): void {
    const now = Date.now();
    for (const link of this.#links.values()) link.ping(now, this.opts.pingTimeoutMs);
  }
}

/** What closeSockets needs of a socket: ws's WebSocket and TunnelSocket both have it. */
export interface ClosableSocket {
  readonly readyState: number;
  readonly CLOSED: number;
  close(code: number, reason: string): void;
  terminate(): void;
  once(event: 'close', fn: () => void): unknown;
}

/** Sends a close frame to each socket, waits up to `graceMs` for the closing handshakes, then cuts what is left. */
export async function closeSockets(sockets: readonly ClosableSocket[], code: number, reason: string, graceMs: number): Promise<void> {
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === ws.CLOSED) return resolve();
          const t = setTimeout(() => {
            ws.terminate();
            resolve();
          }, graceMs);
          ws.once('close', () => {
            clearTimeout(t);
            resolve();
          });
          try {
            ws.close(code, reason);
          } catch {
            ws.terminate();
          }
        }),
    ),
  );
}
