// One kernel as the gateway sees it: its model (Jupyter Server's kernel model), the clients on
// its channels, what waits for the kernel to be ready, and what waits for a client to return.
// How its messages reach the clients, and what is kept for those away, is client-router.ts.
// Frames are routed as v1 bytes; only iopub `status` content is decoded (it is a few bytes)
// to keep `execution_state`.
import { encodeV1, makeMessage, peekV1, splitV1, type V1Peek } from '@kinesis/protocol';
import { isRecord } from '@kinesis/protocol/validate';
import type { ProviderLink } from '../providers/link.ts';
import type { Pieces } from '../providers/tunnel-socket.ts';
import { errorText, type Logger } from '../logger.ts';
import type { ClientConnection } from './client.ts';
import { ClientRouter } from './client-router.ts';
import { CreditGate } from './credit-gate.ts';
import { own } from './replay-buffer.ts';
import { StreamedMessage } from './streamed-message.ts';

export type KernelState = 'starting' | 'idle' | 'busy' | 'restarting' | 'dead';

export interface KernelModel {
  readonly id: string;
  readonly name: string;
  /** ISO 8601 with milliseconds and `Z`, as Jupyter Server's isoformat(utc) gives. */
  readonly last_activity: string;
  readonly execution_state: KernelState;
  readonly connections: number;
  readonly kinesis: { readonly provider: string; readonly spec: string };
}

export interface KernelOptions {
  /** Bytes kept per disconnected client session (and for output nobody has connected for yet). */
  readonly bufferBytes: number;
  /** Bytes of client messages held while the kernel is starting/restarting/reconnecting. */
  readonly pendingMaxBytes: number;
  readonly maxDetachedSessions: number;
  /** Credit is withheld while any client has more than this buffered on its socket. */
  readonly clientHighWaterBytes: number;
  /** A client with more than this buffered is dropped (it can reconnect and get the replay). */
  readonly clientMaxBufferedBytes: number;
  readonly logger: Logger;
  /** Called once when the kernel becomes `dead` (the gateway's state file records it). */
  readonly onDead?: (k: Kernel) => void;
}

export type SendResult = 'sent' | 'queued' | 'full' | 'dead';

/** One slice of a kernel message that crosses the tunnel in parts (tunnel KERNEL PART frames). */
export interface KernelPart {
  readonly total: number;
  readonly offset: number;
  /** The part's bytes as the pieces they arrived in (views into the tunnel's socket reads). */
  readonly pieces: Pieces;
  /** Bytes in `pieces`. */
  readonly length: number;
}

// Session id of messages the gateway itself writes when it has not yet seen the kernel's own.
const GATEWAY_SESSION = 'kinesis-gateway';

export class Kernel {
  state: KernelState;
  lastActivity = Date.now();
  /** The tunnel the kernel lives behind, while connected. */
  link: ProviderLink | undefined;
  /** Frames flow to the provider only when ready; before that they wait in `pending`. */
  ready = false;
  graceTimer: NodeJS.Timeout | undefined;
  /** A restart the gateway asked for is in flight: the old process's last statuses must not overwrite `restarting`. */
  restartPending = false;
  readonly clients = new Set<ClientConnection>();
  #kernelSession = '';
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  readonly #credit: CreditGate;
  readonly #router: ClientRouter;
  #disposed = false;
  #inflight: StreamedMessage | undefined;

  constructor(
    readonly id: string,
    /** The gateway kernelspec name, e.g. `python3-cpu`. */
    readonly name: string,
    /** The provider's own kernelspec name, e.g. `python3`. */
    readonly baseSpec: string,
    readonly providerId: string,
    readonly opts: KernelOptions,
    state: KernelState = 'starting',
  ) {
    this.state = state;
    this.#credit = new CreditGate(id, this.clients, opts);
    this.#router = new ClientRouter(id, this.clients, this.#credit, opts, {
      disposed: () => this.#disposed,
      dead: () => this.state === 'dead',
      session: () => this.#kernelSession || GATEWAY_SESSION,
    });
  }

  model(): KernelModel {
    return {
      id: this.id,
      name: this.name,
      last_activity: new Date(this.lastActivity).toISOString(),
      execution_state: this.state,
      connections: this.clients.size,
      kinesis: { provider: this.providerId, spec: this.baseSpec },
    };
  }

  get pendingCount(): number {
    return this.#pending.length;
  }

  // ---- client → kernel --------------------------------------------------------------

  fromClient(payload: Buffer): SendResult {
    if (this.state === 'dead' || this.#disposed) return 'dead';
    this.lastActivity = Date.now();
    if (this.ready && this.link && this.#pending.length === 0) {
      this.link.sendKernel(this.id, payload);
      return 'sent';
    }
    if (this.#pendingBytes + payload.length > this.opts.pendingMaxBytes) return 'full';
    this.#pending.push(own(payload));
    this.#pendingBytes += payload.length;
    return 'queued';
  }

  /** The kernel can take messages through `link`: send what waited, in order. */
  setReady(link: ProviderLink): void {
    if (this.state === 'dead' || this.#disposed) return;
    this.#setLink(link);
    this.ready = true;
    const queued = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    for (const p of queued) link.sendKernel(this.id, p);
  }

  /** The provider that will run the kernel; messages wait until `setReady`. */
  bind(link: ProviderLink): void {
    this.#setLink(link);
  }

  /** Hold client messages (restart in progress); the link stays. */
  hold(): void {
    this.ready = false;
  }

  /** The provider's tunnel dropped: hold messages until it comes back (or the grace ends). */
  detachLink(): void {
    this.ready = false;
    this.#setLink(undefined);
  }

  // ---- kernel → clients -------------------------------------------------------------

  fromKernel(link: ProviderLink, payload: Buffer, peek: V1Peek, frameBytes: number): void {
    this.lastActivity = Date.now();
    if (peek.header.session) this.#kernelSession = peek.header.session;
    if (peek.channel === 'iopub' && peek.header.msg_type === 'status') this.#trackStatus(payload);
    this.#credit.settle(link, frameBytes, this.#router.route(payload, peek));
  }

  /**
   * One part of an iopub message the provider sends in parts (the link checked that parts
   * come in order; `peek` is given with the first). v1 clients get each part as it arrives,
   * behind a frame header written with the first: the gateway never holds the whole message
   * for them, and the provider→gateway and gateway→client transfers overlap. Everyone else
   * (legacy clients, replay buffers, resume logs) gets the whole frame once it is complete.
   * Returns false when the part was dropped (credited, not kept).
   */
  partFromKernel(link: ProviderLink, part: KernelPart, peek: V1Peek | undefined, frameBytes: number): boolean {
    if (link !== this.link || this.state === 'dead' || this.#disposed) {
      // A tunnel this kernel has left (replaced by a newer connection of its provider) may
      // still deliver what it had in flight: its link checked the order of its own parts only,
      // so they must not be spliced into a message arriving over the current tunnel. A dead
      // kernel takes no output in parts: nothing would ever end it.
      link.grantCredit(this.id, frameBytes);
      return false;
    }
    let m = this.#inflight;
    if (part.offset === 0 && peek) {
      this.#abortInflight();
      this.#router.detachClosed();
      m = this.#inflight = new StreamedMessage(peek, part.total, part.pieces, part.length, this.clients);
    } else if (m) {
      m.add(part.pieces, part.length);
    } else {
      // The start was dropped (kernel unknown or aborted then): nothing to add to.
      link.grantCredit(this.id, frameBytes);
      return false;
    }
    if (m.complete) {
      // What a message tells about the kernel counts once it is whole: the provider may send
      // the first parts of large output before it has checked the kernel's signature on it,
      // and takes back one that fails (kernel_part_abort).
      this.lastActivity = Date.now();
      if (m.peek.header.session) this.#kernelSession = m.peek.header.session;
      this.#inflight = undefined;
      this.#router.finishStreamed(m);
    }
    this.#credit.settle(link, frameBytes, this.#credit.congested());
    return true;
  }

  /** The provider took back the message in parts under way (its signature check failed there). */
  abortParts(link: ProviderLink): void {
    if (link === this.link) this.#abortInflight();
  }

  /** A message in parts that will never be completed: its streamed clients cannot be saved. */
  #abortInflight(): void {
    const m = this.#inflight;
    if (!m) return;
    this.#inflight = undefined;
    // What was routed to them meanwhile goes to their sessions (onUnsent, set by ClientRouter.attach).
    if (m.abort() > 0) this.opts.logger.warn('a kernel message was cut off mid-stream; its clients were disconnected', { kernel: this.id, received: m.received, total: m.total });
  }

  /** Writes a `status` message on iopub, as Jupyter Server does for `restarting` and `dead`. */
  emitStatus(state: 'restarting' | 'dead' | 'starting'): void {
    const frame = this.#statusFrame(state);
    this.#router.route(frame, { channel: 'iopub', header: { msg_id: '', msg_type: 'status', session: '', username: '', date: '', version: '' }, parentHeader: {} });
  }

  #statusFrame(state: string): Buffer {
    return encodeV1(makeMessage({ channel: 'iopub', msgType: 'status', session: this.#kernelSession || GATEWAY_SESSION, content: { execution_state: state } }));
  }

  die(reason: string): void {
    if (this.state === 'dead' || this.#disposed) return;
    this.opts.logger.info('kernel is dead', { kernel: this.id, reason });
    this.state = 'dead';
    this.ready = false;
    this.#abortInflight();
    this.#pending = [];
    this.#pendingBytes = 0;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.emitStatus('dead');
    this.opts.onDead?.(this);
  }

  // ---- clients ----------------------------------------------------------------------

  attach(conn: ClientConnection): void {
    const replayed = this.#router.attach(conn);
    // A client that (re)connects to a dead kernel learns it at once, as it would have live.
    if (this.state === 'dead' && !replayed) this.#router.send(conn, this.#statusFrame('dead'));
  }

  /**
   * Delivers an iopub message the gateway itself made (a receipt verdict) exactly as if the
   * kernel had sent it: to every connection, and into the replay buffers of dropped ones.
   */
  deliverFromGateway(frame: Buffer): void {
    if (this.#disposed) return;
    this.#router.route(frame, peekV1(frame));
  }

  detach(conn: ClientConnection): void {
    this.#router.detach(conn);
  }

  /** Forgets disconnected sessions that have not come back within `ttlMs`. */
  sweepDetached(now: number, ttlMs: number): void {
    this.#router.sweepDetached(now, ttlMs);
  }

  dispose(code: number, reason: string): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.ready = false;
    this.#abortInflight();
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.#credit.dispose();
    this.#pending = [];
    this.#router.dispose(code, reason);
  }

  // ---- internals --------------------------------------------------------------------

  #setLink(link: ProviderLink | undefined): void {
    if (link !== this.link) {
      // The rest of a message in parts was to come over the old tunnel.
      this.#abortInflight();
      this.#credit.reset();
    }
    this.link = link;
  }

  #trackStatus(payload: Buffer): void {
    if (this.restartPending || this.state === 'dead') return;
    try {
      // Only the content is parsed (a status message is read on every execution's hot path).
      const content = splitV1(payload).parts[3];
      const parsed: unknown = content ? JSON.parse(content.toString('utf8')) : undefined;
      const s = isRecord(parsed) ? parsed['execution_state'] : undefined;
      if (s === 'idle' || s === 'busy' || s === 'starting') this.state = s;
    } catch (err) {
      this.opts.logger.debug('undecodable status message', { kernel: this.id, error: errorText(err) });
    }
  }
}
