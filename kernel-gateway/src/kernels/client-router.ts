// How one kernel's messages reach the clients on its channels, and what is kept for the
// clients that are away: each session whose connections all dropped gets a replay buffer
// (bounded, oldest session out) replayed when it reconnects, and output nobody has connected
// for yet waits for the first client. The kernel (kernel.ts) owns this and decides when.
//
// Routing (Jupyter messaging 5.3, https://jupyter-client.readthedocs.io/en/stable/messaging.html):
// iopub goes to every client; shell/stdin/control replies go to the clients whose
// `session_id` equals the reply's `parent_header.session` (plus clients that gave no
// session_id, e.g. a Jupyter Server proxying for its own browsers). A reply that matches no
// client falls back to every client rather than vanish. Frames are routed as v1 bytes.
import { encodeV1, makeMessage, peekV1, v1ToLegacy, type MessageHeader, type V1Peek } from '@kinesis/protocol';
import { errorText, type Logger } from '../logger.ts';
import { binaryFrameHeader, type ClientConnection } from './client.ts';
import type { CreditGate } from './credit-gate.ts';
import { ReplayBuffer, type DropReport } from './replay-buffer.ts';
import type { SentLog } from './sent-log.ts';
import type { StreamedMessage } from './streamed-message.ts';

export interface ClientRouterOptions {
  /** Bytes kept per disconnected client session (and for output nobody has connected for yet). */
  readonly bufferBytes: number;
  readonly maxDetachedSessions: number;
  readonly logger: Logger;
}

/** What the router reads of its kernel, as it changes. */
export interface RoutedKernel {
  readonly disposed: () => boolean;
  readonly dead: () => boolean;
  /** The session id of messages the gateway writes itself (notices). */
  readonly session: () => string;
}

export class ClientRouter {
  readonly #detached = new Map<string, ReplayBuffer>();
  #orphan: ReplayBuffer;

  constructor(
    private readonly kernelId: string,
    /** The kernel's clients (the kernel's own set: attach and detach change it here). */
    private readonly clients: Set<ClientConnection>,
    /** The kernel's credit gate, asked after each frame whether a client is congested. */
    private readonly credit: CreditGate,
    private readonly opts: ClientRouterOptions,
    private readonly kernel: RoutedKernel,
  ) {
    this.#orphan = new ReplayBuffer(opts.bufferBytes);
  }

  /** Delivers one v1 frame. Returns true when a receiving client is congested. */
  route(frame: Buffer, peek: V1Peek, skip?: ReadonlySet<ClientConnection>): boolean {
    this.detachClosed();
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
    return this.credit.congested();
  }

  /** A message in parts is complete: everyone it was not streamed to gets it whole. */
  finishStreamed(m: StreamedMessage): void {
    const { done, unsent } = m.finish();
    // Whoever did not get it streamed gets it now, by the ordinary route: clients that
    // attached meanwhile or speak the legacy framing, sessions that dropped (including a
    // streamed client that closed before the end), output nobody is connected for.
    let rest = this.#detached.size > 0 || this.clients.size === 0;
    for (const c of this.clients) if (!done.has(c)) rest = true;
    if (rest) this.route(m.whole(), m.peek, done);
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
    if (this.kernel.disposed() || !conn.sessionId || frames.length === 0) return;
    this.detach(conn); // keeps a replay buffer for the session unless it has another connection
    for (const f of frames) {
      let live: ClientConnection | undefined;
      for (const c of this.clients) if (c !== conn && c.open && c.sessionId === conn.sessionId) live = c;
      if (live) this.#replayTo(live, f);
      else this.#detached.get(conn.sessionId)?.push(f, peekV1(f).parentHeader);
    }
  }

  /**
   * Adds the client and replays what was kept for it: its session's buffer (or, when it
   * resumes, what its old connection was sent after the last message it read) and the
   * output nobody was connected for. Returns false when nothing was kept to replay.
   */
  attach(conn: ClientConnection): boolean {
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
    return replay.length > 0;
  }

  detach(conn: ClientConnection): void {
    if (!this.clients.delete(conn)) return;
    if (this.kernel.disposed() || this.kernel.dead() || !conn.sessionId) return;
    for (const c of this.clients) if (c.sessionId === conn.sessionId) return;
    // Keep what this session would have received until it reconnects (bounded, oldest session out).
    if (this.#detached.size >= this.opts.maxDetachedSessions) {
      const oldest = this.#detached.keys().next().value;
      if (oldest !== undefined) this.#detached.delete(oldest);
    }
    this.#detached.set(conn.sessionId, new ReplayBuffer(this.opts.bufferBytes, conn.sentLog));
  }

  /**
   * A client whose socket stopped being OPEN (its close frame arrived, or its TCP connection
   * died) is detached now rather than at ws's 'close' event, which comes only once the closing
   * handshake ends: frames routed in between would otherwise go to a socket that can no
   * longer take them and be lost instead of kept for the replay.
   */
  detachClosed(): void {
    for (const c of this.clients) if (!c.open) this.detach(c);
  }

  /** Forgets disconnected sessions that have not come back within `ttlMs`. */
  sweepDetached(now: number, ttlMs: number): void {
    for (const [session, b] of this.#detached) if (now - b.createdAt > ttlMs) this.#detached.delete(session);
  }

  /** Sends a frame the gateway made to one client. */
  send(conn: ClientConnection, frame: Buffer, msgId?: string): void {
    conn.send(frame, () => this.#toLegacy(frame), msgId);
  }

  /** Drops what was kept and closes every client. */
  dispose(code: number, reason: string): void {
    this.#detached.clear();
    this.#orphan.drain();
    for (const c of this.clients) c.close(code, reason);
    this.clients.clear();
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

  #toLegacy(frame: Buffer): string | Buffer | undefined {
    try {
      return v1ToLegacy(frame);
    } catch (err) {
      this.opts.logger.warn('a kernel message could not be converted for a legacy client; dropped', { kernel: this.kernelId, error: errorText(err) });
      return undefined;
    }
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
      session: this.kernel.session(),
      parent,
      content: { name: 'stderr', text },
    });
    this.send(conn, encodeV1(msg), msg.header.msg_id);
  }
}
