// A ZMTP 3.0 subscriber (https://rfc.zeromq.org/spec/23/, NULL mechanism) for a kernel's
// iopub, read in JS instead of through libzmq. libzmq hands over a message only once all of
// it has arrived; a 10 MB stream message takes several ms to cross the kernel's socket, and
// this reader lets a large frame be handed on (and hashed) while it is still arriving.
//
// Only what a kernel's PUB speaks is understood: the greeting, the NULL handshake (READY),
// then message frames; PING is answered, other commands are ignored. Anything else from the
// peer (a bad greeting, another mechanism, a peer that is not a PUB, a frame over the limit
// before the handshake) closes the connection, and the reader connects again, as libzmq does.
import net from 'node:net';
import type { TcpEnds } from './peer-check.ts';

/** Where a large frame is written while it arrives. */
export interface LargeFrameSink {
  /** Exactly the frame's size. */
  readonly buffer: Buffer;
  /** Bytes 0..filled of `buffer` are in (called after each chunk, last with buffer.length). */
  progress(filled: number): void;
}

export interface ZmtpSubHandlers {
  /**
   * A frame of `size` bytes (at least `largeFrameBytes`) begins, after the message's frames
   * so far. Return a sink to have the frame written into it as it arrives, or undefined to
   * have it collected and delivered with the rest of the message by onMessage as usual.
   * A streamed frame is still part of the message onMessage gets (as the sink's buffer).
   */
  onLargeFrame?(framesSoFar: readonly Buffer[], size: number, more: boolean): LargeFrameSink | undefined;
  /** A whole message. `streamed`: one of its frames went to a sink. */
  onMessage(frames: Buffer[], streamed: boolean): void;
  /** A message was cut off (the connection broke mid-message); `streamed` as above. */
  onAbort?(streamed: boolean): void;
  /** A message skipped whole: one frame was over `maxFrameBytes`. */
  onOversize?(framesSoFar: readonly Buffer[], size: number): void;
  /** The connection failed or the peer broke the protocol (the reader connects again). */
  onError?(reason: string): void;
  /** ZmtpSubscriber: a connection completed its handshake (the peer's READY came); its two ends (undefined if the socket does not say). */
  onReady?(ends: TcpEnds | undefined): void;
  /** ZmtpSubscriber: the connection that onReady announced ended. */
  onGone?(): void;
}

export interface ZmtpSubOptions {
  readonly host: string;
  readonly port: number;
  /** Frames at least this big are offered to onLargeFrame (default 1 MiB). */
  readonly largeFrameBytes?: number;
  /** Frames over this are skipped and their message dropped (default 1 GiB). */
  readonly maxFrameBytes?: number;
  /** Frames in one message, at most (default 1024). */
  readonly maxFrames?: number;
  /** Wait before connecting again (default 100 ms, libzmq's ZMQ_RECONNECT_IVL). */
  readonly reconnectMs?: number;
}

const SIGNATURE_BYTES = 10;
const GREETING_BYTES = 64;
const FLAG_MORE = 1;
const FLAG_LONG = 2;
const FLAG_COMMAND = 4;
/** Commands are small; a peer that sends a large one is not a kernel. */
const MAX_COMMAND_BYTES = 64 * 1024;
/** Frames over this are skipped unless ZmtpSubOptions.maxFrameBytes says otherwise: 1 GiB. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024 * 1024;
/** Reads outside large frame bodies land in a reused buffer of this size. */
const SCRATCH_BYTES = 64 * 1024;
/** A frame body with at least this much left is read straight into its own buffer. */
const DIRECT_READ_BYTES = 16 * 1024;

/** Our greeting: ZMTP 3.0, mechanism NULL, as-server 0. */
function greeting(): Buffer {
  const g = Buffer.alloc(GREETING_BYTES);
  g[0] = 0xff;
  // RFC 23 calls the padding insignificant, but libzmq reads it as a ZMTP 1.0 length (that of
  // an empty routing id, 1) and drops a peer whose length is 0.
  g[8] = 1;
  g[9] = 0x7f;
  g[10] = 3;
  g[11] = 0;
  g.write('NULL', 12, 'latin1');
  return g;
}

function command(name: string, props: Record<string, string>): Buffer {
  const parts: Buffer[] = [Buffer.from([name.length]), Buffer.from(name, 'latin1')];
  for (const [k, v] of Object.entries(props)) {
    const len = Buffer.alloc(4);
    const value = Buffer.from(v, 'latin1');
    len.writeUInt32BE(value.length);
    parts.push(Buffer.from([k.length]), Buffer.from(k, 'latin1'), len, value);
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([FLAG_COMMAND, body.length]), body]);
}

/** READY's metadata (RFC 23: name-size, name, 4-byte value-size, value), names lowercased. */
export function parseProperties(b: Buffer): Map<string, Buffer> | undefined {
  const out = new Map<string, Buffer>();
  let at = 0;
  while (at < b.length) {
    const n = b[at]!;
    if (n === 0 || at + 1 + n + 4 > b.length) return undefined;
    const name = b.toString('latin1', at + 1, at + 1 + n).toLowerCase();
    const vlen = b.readUInt32BE(at + 1 + n);
    const vstart = at + 1 + n + 4;
    if (vstart + vlen > b.length) return undefined;
    out.set(name, b.subarray(vstart, vstart + vlen));
    at = vstart + vlen;
  }
  return out;
}

class ProtocolError extends Error {}

type Phase = 'signature' | 'greeting' | 'ready' | 'frames';

/**
 * The byte-level decoder, separate from the socket so that it can be fed any split of the
 * stream (tests do). `send` writes to the peer (the handshake, PONG).
 */
export class ZmtpSubDecoder {
  private phase: Phase = 'signature';
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private frames: Buffer[] = [];
  private streamed = false;
  /** The frame being read: its body's size, flags, and where its bytes go. */
  private body: { size: number; more: boolean; command: boolean; filled: number; into: Buffer | undefined; sink: LargeFrameSink | undefined; skip: boolean } | undefined;
  /** An empty frame (a whole body needs no buffer of its own when it lies in one chunk). */
  private static readonly EMPTY = Buffer.alloc(0);
  private skipping = false;
  private readonly largeFrameBytes: number;
  private readonly maxFrameBytes: number;
  private readonly maxFrames: number;
  private readonly onReady: (() => void) | undefined;

  constructor(
    private readonly h: ZmtpSubHandlers,
    private readonly send: (b: Buffer) => void,
    o: Pick<ZmtpSubOptions, 'largeFrameBytes' | 'maxFrameBytes' | 'maxFrames'> & { readonly onReady?: () => void } = {},
  ) {
    this.onReady = o.onReady;
    this.largeFrameBytes = o.largeFrameBytes ?? 1024 * 1024;
    this.maxFrameBytes = o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.maxFrames = o.maxFrames ?? 1024;
  }

  /**
   * What we send first, once connected: the greeting's signature. The rest of our handshake
   * goes out step by step as the peer's arrives, as libzmq's own clients do: libzmq 4.3 drops
   * a peer that sends its whole greeting and READY at once (seen against ipykernel's PUB).
   */
  static hello(): Buffer {
    return greeting().subarray(0, SIGNATURE_BYTES);
  }

  /**
   * The rest of the frame body being read when it is large enough to be read into directly
   * (then pushDirect follows), else undefined (push follows).
   */
  directTarget(): Buffer | undefined {
    const b = this.body;
    if (!b || b.skip || b.command || b.size - b.filled < DIRECT_READ_BYTES) return undefined;
    b.into ??= Buffer.allocUnsafe(b.size);
    return b.into.subarray(b.filled);
  }

  /** `n` bytes were read into directTarget(). */
  pushDirect(n: number): void {
    const b = this.body;
    if (!b || !b.into || n < 0 || b.filled + n > b.size) throw new RangeError('pushDirect without a direct target');
    b.filled += n;
    b.sink?.progress(b.filled);
    if (b.filled === b.size) this.endFrame();
  }

  /** The peer's READY arrived. */
  get handshaken(): boolean {
    return this.phase === 'frames';
  }

  /** True while a message is partly read. */
  get midMessage(): boolean {
    return this.frames.length > 0 || this.body !== undefined || this.skipping;
  }

  /** The connection ended: a message partly read is given up. */
  abort(): void {
    if (this.midMessage && !this.skipping) this.h.onAbort?.(this.streamed);
    this.frames = [];
    this.streamed = false;
    this.body = undefined;
    this.skipping = false;
  }

  /**
   * Feeds bytes from the peer; the caller may overwrite `chunk` afterwards (the socket reads
   * into one reused buffer), so nothing keeps a view of it. Throws ProtocolError when the
   * peer breaks the protocol.
   */
  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      const b = this.body;
      if (b) {
        // Body bytes: straight into the frame's buffer (or dropped when skipping).
        const n = Math.min(b.size - b.filled, chunk.length - at);
        if (!b.skip) {
          (b.into ??= Buffer.allocUnsafe(b.size)).set(chunk.subarray(at, at + n), b.filled);
        }
        b.filled += n;
        at += n;
        b.sink?.progress(b.filled);
        if (b.filled === b.size) this.endFrame();
        continue;
      }
      // Anything else is read whole from `pending` first.
      const need = this.needed(chunk, at);
      if (need === undefined) {
        this.pending.push(Buffer.from(chunk.subarray(at)));
        this.pendingBytes += chunk.length - at;
        return;
      }
      const head = this.take(need, chunk, at);
      at = head.next;
      this.onHead(head.bytes);
    }
  }

  /** How many bytes the next header needs, or undefined when pending + chunk[at..] has too few. */
  private needed(chunk: Buffer, at: number): number | undefined {
    const have = this.pendingBytes + chunk.length - at;
    if (this.phase === 'signature') return have >= SIGNATURE_BYTES ? SIGNATURE_BYTES : undefined;
    if (this.phase === 'greeting') return have >= GREETING_BYTES - SIGNATURE_BYTES ? GREETING_BYTES - SIGNATURE_BYTES : undefined;
    if (have < 1) return undefined;
    const flags = this.pendingBytes > 0 ? this.pending[0]![0]! : chunk[at]!;
    const n = flags & FLAG_LONG ? 9 : 2;
    return have >= n ? n : undefined;
  }

  /** `n` bytes from pending then chunk[at..]. */
  private take(n: number, chunk: Buffer, at: number): { bytes: Buffer; next: number } {
    if (this.pendingBytes === 0) return { bytes: chunk.subarray(at, at + n), next: at + n };
    const all = Buffer.concat([...this.pending, chunk.subarray(at)]);
    const fromChunk = n - this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    return { bytes: all.subarray(0, n), next: at + fromChunk };
  }

  private onHead(h: Buffer): void {
    if (this.phase === 'signature') {
      if (h[0] !== 0xff || (h[9]! & 1) === 0) throw new ProtocolError('peer does not speak ZMTP 3 (bad signature)');
      this.phase = 'greeting';
      this.send(greeting().subarray(SIGNATURE_BYTES));
      return;
    }
    if (this.phase === 'greeting') {
      // h is the greeting from its byte 10 on: version, mechanism, as-server, filler.
      if (h[0]! < 3) throw new ProtocolError(`peer speaks ZMTP ${h[0]}, not 3`);
      const mech = h.toString('latin1', 2, 22).replace(/\0+$/, '');
      if (mech !== 'NULL') throw new ProtocolError(`peer wants security mechanism ${JSON.stringify(mech)}, not NULL`);
      this.phase = 'ready';
      // READY, then the subscription to everything (ZMTP 3.0: a message whose first byte is 1).
      this.send(Buffer.concat([command('READY', { 'Socket-Type': 'SUB' }), Buffer.from([0, 1, 1])]));
      return;
    }
    const flags = h[0]!;
    let size: number;
    if (flags & FLAG_LONG) {
      const big = h.readBigUInt64BE(1);
      size = big > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(big);
    } else size = h[1]!;
    const isCommand = (flags & FLAG_COMMAND) !== 0;
    const more = (flags & FLAG_MORE) !== 0;
    if (isCommand) {
      if (more) throw new ProtocolError('command frame with MORE set');
      if (size > MAX_COMMAND_BYTES) throw new ProtocolError(`command of ${size} bytes`);
      if (this.midMessage) throw new ProtocolError('command in the middle of a message');
    } else if (this.phase !== 'frames') throw new ProtocolError('message before the READY command');
    let into: Buffer | undefined;
    let sink: LargeFrameSink | undefined;
    let skip = this.skipping;
    if (!isCommand && !skip) {
      if (size > this.maxFrameBytes || this.frames.length >= this.maxFrames) {
        this.h.onOversize?.(this.frames, size);
        this.frames = [];
        skip = this.skipping = true;
      } else if (size >= this.largeFrameBytes && !this.streamed) {
        sink = this.h.onLargeFrame?.(this.frames, size, more);
        if (sink && sink.buffer.length !== size) throw new RangeError('a large frame sink must be exactly the frame size');
        if (sink) this.streamed = true;
      }
      if (sink) into = sink.buffer;
    }
    if (size === 0) into = ZmtpSubDecoder.EMPTY;
    this.body = { size, more, command: isCommand, filled: 0, into, sink, skip };
    if (size === 0) this.endFrame();
  }

  private endFrame(): void {
    const b = this.body!;
    this.body = undefined;
    if (b.command) return this.onCommand(b.into!);
    if (!b.skip) this.frames.push(b.into!);
    if (b.more) return;
    const frames = this.frames;
    const streamed = this.streamed;
    this.frames = [];
    this.streamed = false;
    if (b.skip) {
      this.skipping = false;
      return;
    }
    this.h.onMessage(frames, streamed);
  }

  private onCommand(body: Buffer): void {
    const n = body[0] ?? 0;
    if (n === 0 || 1 + n > body.length) throw new ProtocolError('malformed command');
    const name = body.toString('latin1', 1, 1 + n);
    if (this.phase === 'ready') {
      if (name !== 'READY') throw new ProtocolError(`expected READY, got ${JSON.stringify(name)}`);
      const props = parseProperties(body.subarray(1 + n));
      const type = props?.get('socket-type')?.toString('latin1');
      if (type !== 'PUB' && type !== 'XPUB') throw new ProtocolError(`peer is a ${type ?? 'socket of no type'}, not a PUB`);
      this.phase = 'frames';
      this.onReady?.();
      return;
    }
    if (name === 'PING') {
      // PING: TTL (2 bytes), then context, which PONG echoes.
      const ctx = body.subarray(1 + n + 2);
      const pong = Buffer.concat([Buffer.from([4]), Buffer.from('PONG', 'latin1'), ctx]);
      this.send(Buffer.concat([Buffer.from([FLAG_COMMAND, pong.length]), pong]));
    }
    if (name === 'ERROR') throw new ProtocolError(`peer reports an error: ${body.toString('latin1', 1 + n + 1)}`);
    // Anything else (PONG, unknown commands) is ignored, as RFC 37 asks.
  }
}

/** A SUB connection to a kernel's iopub that connects again after it breaks, until closed. */
export class ZmtpSubscriber {
  private socket: net.Socket | undefined;
  private decoder: ZmtpSubDecoder | undefined;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  /** Connections in a row that failed while reading: each doubles the wait before the next try (up to 5 s). */
  private failures = 0;

  constructor(
    private readonly o: ZmtpSubOptions,
    private readonly h: ZmtpSubHandlers,
  ) {
    this.connect();
  }

  private connect(): void {
    if (this.closed) return;
    // Reads land in a reused scratch buffer, except inside a large frame's body: there they
    // go straight into the frame's own buffer (no copy, and reads as large as the socket has).
    const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
    let direct = false;
    let broke = false;
    // Made first: net.connect asks for the first read buffer at once.
    const d = new ZmtpSubDecoder(this.h, (b) => s.write(b), {
      ...this.o,
      onReady: () => {
        const { localAddress, localPort, remoteAddress, remotePort } = s;
        this.h.onReady?.(localAddress && localPort && remoteAddress && remotePort ? { localAddress, localPort, remoteAddress, remotePort } : undefined);
      },
    });
    const s: net.Socket = net.connect({
      host: this.o.host,
      port: this.o.port,
      noDelay: true,
      onread: {
        buffer: () => {
          const into = d.directTarget();
          direct = into !== undefined;
          return into ?? scratch;
        },
        callback: (n: number, buf: Uint8Array) => {
          if (this.socket !== s) return false;
          try {
            if (direct) d.pushDirect(n);
            else d.push(Buffer.from(buf.buffer, buf.byteOffset, n));
          } catch (e) {
            // A peer that breaks the protocol, or a handler that threw (a bug: the decoder's
            // state is then unknown): either way this connection is done, and we connect again.
            broke = true;
            this.failures++;
            this.h.onError?.(e instanceof ProtocolError ? e.message : `reading the kernel's iopub failed: ${e instanceof Error ? e.message : String(e)}`);
            s.destroy();
            return false;
          }
          return true;
        },
      },
    });
    this.socket = s;
    this.decoder = d;
    s.on('connect', () => s.write(ZmtpSubDecoder.hello()));
    s.on('error', (e: NodeJS.ErrnoException) => {
      // Refused while the kernel is still starting: quietly try again, as libzmq does.
      if (e.code !== 'ECONNREFUSED') this.h.onError?.(e.message);
    });
    s.on('close', () => {
      if (this.socket !== s) return;
      d.abort();
      this.socket = undefined;
      if (d.handshaken) this.h.onGone?.();
      if (d.handshaken && !broke) this.failures = 0;
      const wait = Math.min((this.o.reconnectMs ?? 100) * 2 ** Math.min(this.failures, 16), 5000);
      if (!this.closed) this.timer = setTimeout(() => this.connect(), wait);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const s = this.socket;
    this.socket = undefined;
    this.decoder?.abort();
    s?.destroy();
  }
}
