// One kernel as the gateway sees it: its model (Jupyter Server's kernel model), the clients on
// its channels, what waits for the kernel to be ready, and what waits for a client to return.
//
// Routing (Jupyter messaging 5.3, https://jupyter-client.readthedocs.io/en/stable/messaging.html):
// iopub goes to every client; shell/stdin/control replies go to the clients whose
// `session_id` equals the reply's `parent_header.session` (plus clients that gave no
// session_id, e.g. a Jupyter Server proxying for its own browsers). A reply that matches no
// client falls back to every client rather than vanish. Frames are routed as v1 bytes; only
// iopub `status` content is decoded (it is a few bytes) to keep `execution_state`.
import { encodeV1, makeMessage, peekV1, splitV1, v1ToLegacy, type MessageHeader, type V1Peek } from '@kinesis/protocol';
import { isRecord } from '@kinesis/protocol/validate';
import type { ProviderLink } from '../providers/link.ts';
import { errorText, type Logger } from '../logger.ts';
import { binaryFrameHeader, type ClientConnection } from './client.ts';
import { CreditGate } from './credit-gate.ts';
import { own, ReplayBuffer, type DropReport } from './replay-buffer.ts';
import { StreamedMessage } from './streamed-message.ts';
import type { SentLog } from './sent-log.ts';

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
  readonly bytes: Buffer;
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
  readonly #detached = new Map<string, ReplayBuffer>();
  #orphan: ReplayBuffer;
  readonly #credit: CreditGate;
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
    this.#orphan = new ReplayBuffer(opts.bufferBytes);
    this.#credit = new CreditGate(id, this.clients, opts);
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
    this.#credit.settle(link, frameBytes, this.#route(payload, peek));
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
    this.lastActivity = Date.now();
    let m = this.#inflight;
    if (part.offset === 0 && peek) {
      this.#abortInflight();
      if (peek.header.session) this.#kernelSession = peek.header.session;
      this.#detachClosed();
      m = this.#inflight = new StreamedMessage(peek, part.total, part.bytes, this.clients);
    } else if (m) {
      m.add(part.bytes);
    } else {
      // The start was dropped (kernel unknown or aborted then): nothing to add to.
      link.grantCredit(this.id, frameBytes);
      return false;
    }
    if (m.complete) this.#completeInflight(m);
    this.#credit.settle(link, frameBytes, this.#credit.congested());
    return true;
  }

  #completeInflight(m: StreamedMessage): void {
    this.#inflight = undefined;
    const { done, unsent } = m.finish();
    // Whoever did not get it streamed gets it now, by the ordinary route: clients that
    // attached meanwhile or speak the legacy framing, sessions that dropped (including a
    // streamed client that closed before the end), output nobody is connected for.
    let rest = this.#detached.size > 0 || this.clients.size === 0;
    for (const c of this.clients) if (!done.has(c)) rest = true;
    if (rest) this.#route(m.whole(), m.peek, done);
    // What was routed to a streamed client while it was mid-frame, and never sent because it
    // closed before the frame ended, follows the frame to its session.
    for (const [c, f] of unsent) this.#rehome(c, [f]);
  }

  /**
   * Frames routed to `conn` that will never be written to it (it closed, or was cut off
   * mid-frame): to another live connection of its session, else to the session's replay
   * buffer, in order. Only messages the gateway made itself end up here (statuses,
   * receipt verdicts, notices): a kernel's own output never waits behind a frame.
   */
  #rehome(conn: ClientConnection, frames: readonly Buffer[]): void {
    if (this.#disposed || !conn.sessionId || frames.length === 0) return;
    this.detach(conn); // keeps a replay buffer for the session unless it has another connection
    for (const f of frames) {
      let live: ClientConnection | undefined;
      for (const c of this.clients) if (c !== conn && c.open && c.sessionId === conn.sessionId) live = c;
      if (live) this.#replayTo(live, f);
      else this.#detached.get(conn.sessionId)?.push(f, peekV1(f).parentHeader);
    }
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
    // What was routed to them meanwhile goes to their sessions (onUnsent → #rehome).
    if (m.abort() > 0) this.opts.logger.warn('a kernel message was cut off mid-stream; its clients were disconnected', { kernel: this.id, received: m.received, total: m.total });
  }

  /** Writes a `status` message on iopub, as Jupyter Server does for `restarting` and `dead`. */
  emitStatus(state: 'restarting' | 'dead' | 'starting'): void {
    const frame = this.#statusFrame(state);
    this.#route(frame, { channel: 'iopub', header: { msg_id: '', msg_type: 'status', session: '', username: '', date: '', version: '' }, parentHeader: {} });
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
    this.clients.add(conn);
    conn.onUnsent = (frames) => this.#rehome(conn, frames);
    const replay: ReplayBuffer[] = [];
    let sentBefore: SentLog | undefined;
    if (conn.sessionId) {
      if (conn.resumeAfter !== undefined) {
        // The client saw its old connection die before the gateway did (half-open TCP): that
        // connection is superseded, and what it was sent is where the resume looks.
        for (const c of this.clients) {
          if (c === conn || c.sessionId !== conn.sessionId || !c.sentLog) continue;
          sentBefore = c.sentLog;
          this.clients.delete(c);
          c.close(1000, 'superseded by a new connection of this session');
        }
      }
      const d = this.#detached.get(conn.sessionId);
      if (d) {
        this.#detached.delete(conn.sessionId);
        replay.push(d);
        sentBefore ??= d.sentBefore;
      }
    }
    if (conn.resumeAfter !== undefined && sentBefore) {
      // Frames the old connection was sent after the last one its client read: lost in flight.
      const lost = sentBefore.after(conn.resumeAfter);
      if (lost) for (const f of lost) this.#replayTo(conn, f);
      else this.#sendNotice(conn, `[kinesis gateway] the connection dropped; output sent just before the drop may be missing (message ${conn.resumeAfter.slice(0, 64)} is older than the gateway keeps).\n`, {});
    }
    if (!this.#orphan.empty) {
      replay.push(this.#orphan);
      this.#orphan = new ReplayBuffer(this.opts.bufferBytes);
    }
    for (const b of replay) {
      const { frames, dropped } = b.drain();
      if (dropped) this.#sendDropMarker(conn, dropped, b.maxBytes);
      for (const f of frames) this.#replayTo(conn, f);
    }
    // A client that (re)connects to a dead kernel learns it at once, as it would have live.
    if (this.state === 'dead' && !replay.length) {
      const frame = this.#statusFrame('dead');
      conn.send(frame, () => this.#toLegacy(frame));
    }
  }

  #replayTo(conn: ClientConnection, f: Buffer): void {
    let msgId: string | undefined;
    if (conn.sentLog) {
      try {
        msgId = peekV1(f).header.msg_id;
      } catch {
        msgId = undefined;
      }
    }
    conn.send(f, () => this.#toLegacy(f), msgId);
  }

  /**
   * Delivers an iopub message the gateway itself made (a receipt verdict) exactly as if the
   * kernel had sent it: to every connection, and into the replay buffers of dropped ones.
   */
  deliverFromGateway(frame: Buffer): void {
    if (this.#disposed) return;
    this.#route(frame, peekV1(frame));
  }

  detach(conn: ClientConnection): void {
    if (!this.clients.delete(conn)) return;
    if (this.#disposed || this.state === 'dead' || !conn.sessionId) return;
    for (const c of this.clients) if (c.sessionId === conn.sessionId) return;
    // Keep what this session would have received until it reconnects (bounded, oldest session out).
    if (this.#detached.size >= this.opts.maxDetachedSessions) {
      const oldest = this.#detached.keys().next().value;
      if (oldest !== undefined) this.#detached.delete(oldest);
    }
    this.#detached.set(conn.sessionId, new ReplayBuffer(this.opts.bufferBytes, conn.sentLog));
  }

  /** Forgets disconnected sessions that have not come back within `ttlMs`. */
  sweepDetached(now: number, ttlMs: number): void {
    for (const [session, b] of this.#detached) if (now - b.createdAt > ttlMs) this.#detached.delete(session);
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
    this.#detached.clear();
    this.#orphan.drain();
    for (const c of this.clients) c.close(code, reason);
    this.clients.clear();
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

  #toLegacy(frame: Buffer): string | Buffer | undefined {
    try {
      return v1ToLegacy(frame);
    } catch (err) {
      this.opts.logger.warn('a kernel message could not be converted for a legacy client; dropped', { kernel: this.id, error: errorText(err) });
      return undefined;
    }
  }

  /**
   * A client whose socket stopped being OPEN (its close frame arrived, or its TCP connection
   * died) is detached now rather than at ws's 'close' event, which comes only once the closing
   * handshake ends: frames routed in between would otherwise go to a socket that can no
   * longer take them and be lost instead of kept for the replay.
   */
  #detachClosed(): void {
    for (const c of this.clients) if (!c.open) this.detach(c);
  }

  /** Delivers one v1 frame. Returns true when a receiving client is congested. */
  #route(frame: Buffer, peek: V1Peek, skip?: ReadonlySet<ClientConnection>): boolean {
    this.#detachClosed();
    let legacy: string | Buffer | undefined | null = null;
    const thunk = (): string | Buffer | undefined => (legacy === null ? (legacy = this.#toLegacy(frame)) : legacy);
    let wsHead: Buffer | undefined;
    const head = (): Buffer => (wsHead ??= binaryFrameHeader(frame.length));
    const parent = peek.parentHeader;
    if (peek.channel === 'iopub') {
      for (const c of this.clients) if (!skip?.has(c)) c.send(frame, thunk, peek.header.msg_id, head);
      for (const b of this.#detached.values()) b.push(frame, parent);
      if (this.clients.size === 0 && this.#detached.size === 0) this.#orphan.push(frame, parent);
    } else {
      const session = parent.session ?? '';
      let delivered = false;
      let sessionLive = false;
      for (const c of this.clients) {
        if (c.sessionId === '' || c.sessionId === session) {
          c.send(frame, thunk, peek.header.msg_id, head);
          delivered = true;
          if (c.sessionId === session) sessionLive = true;
        }
      }
      const d = session && !sessionLive ? this.#detached.get(session) : undefined;
      if (d) {
        d.push(frame, parent);
        delivered = true;
      }
      if (!delivered) {
        if (this.clients.size > 0) for (const c of this.clients) c.send(frame, thunk, peek.header.msg_id, head);
        else this.#orphan.push(frame, parent);
      }
    }
    return this.#credit.congested();
  }

  #sendDropMarker(conn: ClientConnection, dropped: DropReport, limit: number): void {
    const text = `[kinesis gateway] ${dropped.count} message(s) (${dropped.bytes} bytes) of kernel output were dropped while no client was connected (replay buffer limit ${limit} bytes).\n`;
    this.#sendNotice(conn, text, dropped.parent as Partial<MessageHeader>);
  }

  /** A stderr line from the gateway itself, shown in the cell of `parent`. */
  #sendNotice(conn: ClientConnection, text: string, parent: Partial<MessageHeader>): void {
    const msg = makeMessage({
      channel: 'iopub',
      msgType: 'stream',
      session: this.#kernelSession || GATEWAY_SESSION,
      parent,
      content: { name: 'stderr', text },
    });
    const frame = encodeV1(msg);
    conn.send(frame, () => this.#toLegacy(frame), msg.header.msg_id);
  }
}
