// One client WebSocket on /api/kernels/{id}/channels. It speaks either framing; the kernel
// hands it v1 bytes and, for legacy clients, a converter run at most once per message.
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import { corkForTick } from '@kinesis/protocol/node/cork';
import type { Pieces } from '../providers/tunnel-socket.ts';
import { SentLog } from './sent-log.ts';

/** What a resuming client's connection remembers of what was sent to it. */
const SENT_LOG_FRAMES = 512;
const SENT_LOG_BYTES = 4 * 1024 * 1024;

export type LegacyThunk = () => string | Buffer | undefined;

/** The header of an unmasked, final, binary WebSocket frame of `n` payload bytes (RFC 6455 §5.2). */
export function binaryFrameHeader(n: number): Buffer {
  if (n < 126) return Buffer.from([0x82, n]);
  if (n < 65536) {
    const h = Buffer.allocUnsafe(4);
    h[0] = 0x82;
    h[1] = 126;
    h.writeUInt16BE(n, 2);
    return h;
  }
  const h = Buffer.allocUnsafe(10);
  h[0] = 0x82;
  h[1] = 127;
  h.writeBigUInt64BE(BigInt(n), 2);
  return h;
}

type Deferred = readonly [v1Frame: Buffer, legacy: LegacyThunk, msgId: string | undefined, head: (() => Buffer) | undefined];

export class ClientConnection {
  /** Set on pong; cleared when a ping goes out. A client that misses one ping interval is dropped. */
  alive = true;
  /**
   * Not being read while its kernel's tunnel is backed up (channels.ts): it cannot answer
   * pings meanwhile, so the keepalive leaves it be; the tunnel's own liveness bounds how long.
   */
  held = false;
  /**
   * True between `beginStream` and `endStream`: the socket is in the middle of one data frame
   * whose bytes are still arriving from the provider. Nothing else may be written to it until
   * the frame is complete (RFC 6455 §5.4: control frames may be injected between the
   * fragments of a message, never inside a frame), so messages, pongs and pings wait.
   */
  #streaming = false;
  #deferred: Deferred[] = [];
  #pongOwed: Buffer | undefined;
  #below: { readonly bytes: number; readonly fn: () => void } | undefined;
  #flushed = 0;
  #flushedAtCheck = 0;
  /** Frames that were routed to this connection but will never be written to it (client-router.ts rehomes them). */
  onUnsent: ((frames: Buffer[]) => void) | undefined;
  readonly #onWritten = (): void => {
    this.#flushed++;
    const b = this.#below;
    if (b && this.bufferedAmount <= b.bytes) {
      this.#below = undefined;
      b.fn();
    }
  };
  readonly connectedAt = Date.now();
  /** Kept for a client that can resume (sent-log.ts); undefined for plain Jupyter clients. */
  readonly sentLog: SentLog | undefined;

  constructor(
    readonly ws: WebSocket,
    /** `session_id` from the URL; '' for a client that gave none (it then sees every reply, as a proxy must). */
    readonly sessionId: string,
    readonly v1: boolean,
    /** The TCP socket under `ws`, corked per event-loop turn. */
    readonly socket?: Duplex,
    /**
     * `kinesis_last_msg_id` from the URL: the last message this session's client read before
     * it lost its previous connection ('' for none); undefined when the client did not ask.
     */
    readonly resumeAfter?: string,
  ) {
    this.sentLog = resumeAfter === undefined ? undefined : new SentLog(SENT_LOG_FRAMES, SENT_LOG_BYTES);
    // ws answers a close frame from the client, or a protocol error in what it sent (1009 for
    // an oversized frame...), at once by calling close() on this object. Mid-stream that close
    // frame would land inside the frame being streamed: it is held until the frame is whole.
    const close = ws.close.bind(ws);
    this.#close = close;
    ws.close = ((code?: number, reason?: string | Buffer) => {
      if (this.#streaming) this.#closeOwed ??= { code, reason };
      else close(code, reason);
    }) as WebSocket['close'];
  }

  readonly #close: WebSocket['close'];
  #closeOwed: { readonly code: number | undefined; readonly reason: string | Buffer | undefined } | undefined;

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  get streaming(): boolean {
    return this.#streaming;
  }

  /** Can this connection take a message as it arrives (a v1 client on a raw socket)? */
  get canStream(): boolean {
    return this.v1 && this.socket !== undefined && this.open && !this.#streaming;
  }

  /**
   * Starts one unfragmented binary frame of `total` payload bytes: the header now, the
   * payload through `streamBytes`, and `endStream` once all of it went out.
   */
  beginStream(total: number, first: Pieces): void {
    const socket = this.socket;
    if (!socket || !this.open) return;
    this.#streaming = true;
    corkForTick(socket);
    socket.write(binaryFrameHeader(total));
    for (const p of first) socket.write(p, this.#onWritten);
  }

  /** More of the frame, as the pieces it arrived in from the provider (written as they are: no copy). */
  streamBytes(pieces: Pieces): void {
    if (!this.#streaming || !this.socket || this.socket.destroyed) return;
    corkForTick(this.socket);
    for (const p of pieces) this.socket.write(p, this.#onWritten);
  }

  /**
   * Calls `fn` once, as soon as a completed write of a streamed frame leaves no more than
   * `bytes` buffered (flow control: the kernel withholds its provider's credit meanwhile).
   * A later call replaces an earlier one.
   */
  whenBufferedAtMost(bytes: number, fn: () => void): void {
    this.#below = { bytes, fn };
  }

  /**
   * The streamed frame is complete: its log entry, then whatever waited behind it. Returns
   * the v1 frames that waited and were never sent, for a connection that closed on the way.
   */
  endStream(msgId: string, total: number, whole: () => Buffer): Buffer[] {
    if (!this.#streaming) return [];
    if (!this.open) {
      // It did not get the frame whole: neither it nor what waited enters the log, or a
      // resume would replay them from there as well as from the session's replay buffer,
      // which the kernel fills instead (client-router.ts finishStreamed).
      return this.#stopStreaming().map(([f]) => f);
    }
    const pong = this.#pongOwed;
    const owed = this.#closeOwed;
    const deferred = this.#stopStreaming();
    if (this.sentLog) {
      if (total > this.sentLog.maxBytes) this.sentLog.clear();
      else this.sentLog.push(msgId, whole());
    }
    for (const [f, legacy, id, head] of deferred) this.send(f, legacy, id, head);
    if (pong && this.open) this.ws.pong(pong);
    if (owed) this.#close(owed.code, owed.reason);
    return [];
  }

  /** Leaves the streaming state; returns what waited behind the frame. */
  #stopStreaming(): Deferred[] {
    const deferred = this.#deferred;
    this.#streaming = false;
    this.#deferred = [];
    this.#pongOwed = undefined;
    this.#closeOwed = undefined;
    return deferred;
  }

  /**
   * The streamed frame will not be completed on this connection (its provider went away,
   * the client stopped reading, the connection is being closed): it cannot be saved. What
   * waited behind the frame was never written; `onUnsent` (set by the kernel) keeps it for
   * the session.
   */
  abortStream(): void {
    if (!this.#streaming) return;
    const deferred = this.#stopStreaming();
    this.#below = undefined;
    this.ws.terminate();
    if (deferred.length) this.onUnsent?.(deferred.map(([f]) => f));
  }

  /**
   * True when this connection is mid-frame with bytes buffered and not one of its writes
   * completed since the previous call: a client that stopped reading. The keepalive cannot
   * ping it (a ping cannot go inside a frame) and its congestion holds the kernel's credit,
   * so without this check it would stall the kernel's output for every client.
   */
  streamStalled(): boolean {
    const stalled = this.#streaming && this.bufferedAmount > 0 && this.#flushed === this.#flushedAtCheck;
    this.#flushedAtCheck = this.#flushed;
    return stalled;
  }

  /** Answers a client's ping (the server runs with autoPong off), after any frame in flight. */
  pong(data: Buffer): void {
    if (this.#streaming) this.#pongOwed = data;
    else if (this.open) this.ws.pong(data);
  }

  send(v1Frame: Buffer, legacy: LegacyThunk, msgId?: string, head?: () => Buffer): void {
    if (!this.open) return;
    if (this.#streaming) {
      this.#deferred.push([v1Frame, legacy, msgId, head]);
      return;
    }
    if (this.sentLog && msgId !== undefined) this.sentLog.push(msgId, v1Frame);
    corkForTick(this.socket);
    if (this.v1) {
      if (this.socket && head) {
        // The same unmasked frame header serves every client of a broadcast (RFC 6455 §5.2):
        // written straight to the socket, whole frames only, so ws's own control frames can
        // only ever fall between ours. Saves ws's per-client framing and allocation on a
        // message fanned out to many clients.
        this.socket.write(head());
        this.socket.write(v1Frame);
        return;
      }
      this.ws.send(v1Frame, { binary: true });
      return;
    }
    const data = legacy();
    if (data === undefined) return;
    this.ws.send(data, { binary: typeof data !== 'string' });
  }

  /**
   * Closes for something the client did (a bad frame): mid-stream, once the frame being
   * streamed is whole, so the client reads the close code instead of a torn frame.
   */
  closeAfterFrame(code: number, reason: string): void {
    if (this.#streaming) this.#closeOwed ??= { code, reason };
    else this.close(code, reason);
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    if (this.#streaming) {
      // A close frame now would land inside the data frame in flight.
      this.abortStream();
      return;
    }
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
    }
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }
}
