// One client WebSocket on /api/kernels/{id}/channels. It speaks either framing; the kernel
// hands it v1 bytes and, for legacy clients, a converter run at most once per message.
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import { corkForTick } from '@kinesis/protocol/node/cork';
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

export class ClientConnection {
  /** Set on pong; cleared when a ping goes out. A client that misses one ping interval is dropped. */
  alive = true;
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
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  send(v1Frame: Buffer, legacy: LegacyThunk, msgId?: string, head?: () => Buffer): void {
    if (!this.open) return;
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

  close(code: number, reason: string): void {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
    }
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }
}
