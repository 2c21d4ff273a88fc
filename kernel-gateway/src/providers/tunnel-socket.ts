// The gateway's end of a provider tunnel: a WebSocket server endpoint (RFC 6455) of its own
// instead of ws's, so that a kernel's large output crosses the gateway without being copied.
// ws gathers each frame's payload into a buffer of its own (a copy of every byte, and 10 MB
// of fresh memory per 10 MB of output to fault in and collect); here a frame's payload is
// handed on as the pieces of the socket reads it arrived in, unmasked in place, and the
// gateway writes those same pieces on to the clients (docs/gateway.md, "Where the time goes").
//
// Only what the tunnel needs: binary and text messages (fragmented or not), ping, pong, and
// the closing handshake; no extensions (none are offered, so RSV bits are a protocol error).
// Every rule a client frame must keep is checked, and a breach closes the tunnel with the
// RFC's code (1002 protocol error, 1007 bad close reason, 1009 message too big or in too many
// fragments); an error thrown by a listener closes that connection with 1011, nothing more.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY_RE = /^[+/0-9A-Za-z]{22}==$/;

/** A byte string as the pieces it arrived in (views into socket reads). */
export type Pieces = readonly Buffer[];

export interface TunnelSocketOptions {
  /** Most bytes of one message, all its fragments together; 1009 above it. */
  readonly maxPayload: number;
  /** How long a closing handshake may take before the socket is destroyed. Default 2000 ms. */
  readonly closeTimeoutMs?: number;
  /** Told of an error thrown by a listener; the connection is then closed with 1011. */
  readonly onListenerError?: (err: unknown) => void;
}

/** Most fragments of one message (1009 above it): each costs memory however few bytes it carries. */
export const MAX_FRAGMENTS = 1024;
/** Pieces shorter than this are copied together (a peer sending tiny TCP segments cannot make the gateway keep millions of views). */
const SMALL_PIECE = 4096;
const GATHER_BYTES = 16 * 1024;
/** A ping answered while more than this waits to be written keeps only the latest pong owed, sent on drain. */
const PONG_HOLD_BYTES = 64 * 1024;

export interface UpgradeRefusal {
  readonly status: number;
  readonly message: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * Checks a WebSocket opening handshake (RFC 6455 §4.2.1) and answers it with 101 and
 * `protocol` as the subprotocol. Returns the socket, or why the request was refused (nothing
 * written yet: the caller answers with that status).
 */
export function acceptTunnel(req: IncomingMessage, socket: Duplex, head: Buffer, protocol: string, opts: TunnelSocketOptions): TunnelSocket | UpgradeRefusal {
  if (req.method !== 'GET') return { status: 400, message: 'a WebSocket upgrade must be a GET request' };
  if (String(req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return { status: 400, message: 'Upgrade must be websocket' };
  const version = req.headers['sec-websocket-version'];
  if (version !== '13') return { status: 426, message: 'Sec-WebSocket-Version must be 13', headers: { 'Sec-WebSocket-Version': '13' } };
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || !KEY_RE.test(key.trim())) return { status: 400, message: 'missing or invalid Sec-WebSocket-Key' };
  if (!socket.readable || !socket.writable) {
    socket.destroy();
    return { status: 400, message: 'the connection closed during the upgrade' };
  }
  const accept = createHash('sha1').update(key.trim() + ACCEPT_GUID).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`);
  return new TunnelSocket(socket, head, protocol, opts);
}

const enum Op {
  Continuation = 0x0,
  Text = 0x1,
  Binary = 0x2,
  Close = 0x8,
  Ping = 0x9,
  Pong = 0xa,
}

class FrameError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** The states of ws's WebSocket, so code written against either reads the same. */
export const OPEN = 1;
const CLOSING = 2;
export const CLOSED = 3;

/**
 * Events: `message` (fragments: Pieces[], isBinary: boolean): one message, each of its
 * WebSocket fragments as its pieces; `pong`; `close` (code: number, reason: Buffer), once,
 * when the TCP connection is gone (1005 for a close frame without a code, 1006 for none).
 */
export class TunnelSocket extends EventEmitter {
  readonly OPEN = OPEN;
  readonly CLOSED = CLOSED;
  readyState: number = OPEN;
  /** Most bytes of one message; 1009 above it. Lowered while the peer is not yet authenticated. */
  maxPayload: number;

  // Receiving. A frame's header (2 to 14 bytes) is gathered in #head, its payload as pieces.
  readonly #head = Buffer.alloc(14);
  #headHave = 0;
  #headNeed = 2;
  #inPayload = false;
  #fin = false;
  #opcode = 0;
  #mask = Buffer.alloc(4);
  #masked = false;
  #left = 0;
  #frameLen = 0;
  #maskAt = 0;
  #pieces: Buffer[] = [];
  /** Where short pieces of the frame's payload are copied together (see SMALL_PIECE). */
  #gather: Buffer | undefined;
  #gathered = 0;
  #gatherFrom = 0;
  /** A pong held back while the socket's writes are backed up (see PONG_HOLD_BYTES). */
  #pongOwed: Buffer | undefined;
  /** The fragments of the data message being received; undefined between messages. */
  #fragments: Pieces[] | undefined;
  #messageBinary = true;
  #messageBytes = 0;
  #failed = false;

  // Sending.
  #sendingFragmented = false;
  #closeSent = false;
  #closeReceived: { code: number; reason: Buffer } | undefined;
  #closeTimer: NodeJS.Timeout | undefined;
  #emittedClose = false;

  constructor(
    readonly socket: Duplex,
    head: Buffer,
    readonly protocol: string,
    readonly opts: TunnelSocketOptions,
  ) {
    super();
    this.maxPayload = opts.maxPayload;
    // Bytes read with the upgrade request come first, as ws does it.
    if (head.length > 0) socket.unshift(head);
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('end', () => {
      // The peer will send no more: finish our side too.
      if (this.readyState === OPEN) this.readyState = CLOSING;
      socket.end();
    });
    socket.on('close', () => this.#closed());
    socket.on('error', () => socket.destroy());
  }

  get bufferedAmount(): number {
    return this.socket.writableLength;
  }

  // ---- sending ---------------------------------------------------------------------

  /** Sends one binary message, or one fragment of it (`fin: false` for all but the last). */
  send(data: Uint8Array, opts: { binary?: boolean; fin?: boolean } = {}): void {
    if (this.readyState !== OPEN) return;
    const fin = opts.fin !== false;
    const op = this.#sendingFragmented ? Op.Continuation : opts.binary === false ? Op.Text : Op.Binary;
    this.#sendingFragmented = !fin;
    this.#write(op, fin, data);
  }

  ping(data: Uint8Array = EMPTY): void {
    if (this.readyState !== OPEN) return;
    this.#write(Op.Ping, true, data);
  }

  /** Starts the closing handshake; the socket is destroyed if the peer does not finish it in time. */
  close(code = 1000, reason = ''): void {
    if (this.readyState === CLOSED) return;
    this.#sendClose(code, reason);
    if (this.#closeReceived) this.socket.end();
  }

  terminate(): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSING;
    this.socket.destroy();
  }

  #write(op: Op, fin: boolean, data: Uint8Array): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    const n = data.byteLength;
    let h: Buffer;
    if (n < 126) {
      h = Buffer.allocUnsafe(2);
      h[1] = n;
    } else if (n < 65536) {
      h = Buffer.allocUnsafe(4);
      h[1] = 126;
      h.writeUInt16BE(n, 2);
    } else {
      h = Buffer.allocUnsafe(10);
      h[1] = 127;
      h.writeBigUInt64BE(BigInt(n), 2);
    }
    h[0] = (fin ? 0x80 : 0) | op;
    this.socket.cork();
    this.socket.write(h);
    if (n > 0) this.socket.write(data);
    this.socket.uncork();
  }

  #sendClose(code: number, reason: string): void {
    if (this.#closeSent || this.socket.destroyed) return;
    this.#closeSent = true;
    this.readyState = CLOSING;
    // At most 123 bytes of reason (RFC 6455 §5.5), cut between characters: a peer must be able to read it as UTF-8.
    let r = Buffer.from(reason, 'utf8');
    if (r.length > 123) {
      let end = 123;
      while (end > 0 && (r[end]! & 0xc0) === 0x80) end--;
      r = r.subarray(0, end);
    }
    const payload = Buffer.allocUnsafe(2 + r.length);
    payload.writeUInt16BE(code, 0);
    r.copy(payload, 2);
    this.#write(Op.Close, true, payload);
    this.#closeTimer = setTimeout(() => this.socket.destroy(), this.opts.closeTimeoutMs ?? 2000);
    this.#closeTimer.unref();
  }

  #closed(): void {
    this.readyState = CLOSED;
    if (this.#closeTimer) clearTimeout(this.#closeTimer);
    if (this.#emittedClose) return;
    this.#emittedClose = true;
    const r = this.#closeReceived;
    this.emit('close', r ? r.code : 1006, r ? r.reason : EMPTY_BUFFER);
  }

  // ---- receiving -------------------------------------------------------------------

  #receive(chunk: Buffer): void {
    if (this.#failed || this.#closeReceived) return; // nothing after a close frame counts
    try {
      let at = 0;
      while (at < chunk.length && !this.#failed && !this.#closeReceived) {
        at = this.#inPayload ? this.#takePayload(chunk, at) : this.#takeHead(chunk, at);
      }
    } catch (err) {
      if (err instanceof FrameError) return this.#fail(err.code, err.message);
      // A listener's error: this connection ends, the gateway goes on.
      this.opts.onListenerError?.(err);
      this.#fail(1011, 'internal error');
    }
  }

  /** A frame that breaks the protocol: close with its code and read nothing more. */
  #fail(code: number, reason: string): void {
    this.#failed = true;
    this.#pieces = [];
    this.#gather = undefined;
    this.#fragments = undefined;
    this.#sendClose(code, reason);
    this.socket.end();
  }

  #takeHead(chunk: Buffer, at: number): number {
    const n = Math.min(this.#headNeed - this.#headHave, chunk.length - at);
    chunk.copy(this.#head, this.#headHave, at, at + n);
    this.#headHave += n;
    at += n;
    if (this.#headHave < this.#headNeed) return at;
    const h = this.#head;
    if (this.#headNeed === 2) {
      // The first two bytes tell how long the rest of the header is.
      if (h[0]! & 0x70) throw new FrameError(1002, 'RSV bits set without a negotiated extension');
      if (!(h[1]! & 0x80)) throw new FrameError(1002, 'client frames must be masked');
      const len7 = h[1]! & 0x7f;
      this.#headNeed = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + 4;
      if (this.#headHave < this.#headNeed) return at;
    }
    this.#fin = (h[0]! & 0x80) !== 0;
    this.#opcode = h[0]! & 0x0f;
    const len7 = h[1]! & 0x7f;
    let len: number;
    if (len7 === 126) len = h.readUInt16BE(2);
    else if (len7 === 127) {
      const big = h.readBigUInt64BE(2);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError(1009, 'frame length too large');
      len = Number(big);
    } else len = len7;
    const maskAt = this.#headNeed - 4;
    h.copy(this.#mask, 0, maskAt, maskAt + 4);
    this.#masked = (this.#mask[0]! | this.#mask[1]! | this.#mask[2]! | this.#mask[3]!) !== 0;
    this.#maskAt = 0;
    this.#headHave = 0;
    this.#headNeed = 2;
    this.#checkFrame(len);
    this.#left = len;
    this.#frameLen = len;
    this.#pieces = [];
    this.#inPayload = true;
    if (len === 0) this.#frameDone();
    return at;
  }

  #checkFrame(len: number): void {
    const op = this.#opcode;
    if (op >= Op.Close) {
      if (op > Op.Pong) throw new FrameError(1002, `unknown opcode ${op}`);
      if (!this.#fin) throw new FrameError(1002, 'control frames must not be fragmented');
      if (len > 125) throw new FrameError(1002, 'control frame payload over 125 bytes');
      return;
    }
    if (op === Op.Continuation) {
      if (!this.#fragments) throw new FrameError(1002, 'continuation frame without a message to continue');
    } else if (op === Op.Text || op === Op.Binary) {
      if (this.#fragments) throw new FrameError(1002, 'a new message began before the previous one ended');
      this.#fragments = [];
      this.#messageBinary = op === Op.Binary;
      this.#messageBytes = 0;
    } else throw new FrameError(1002, `unknown opcode ${op}`);
    if (this.#fragments.length >= MAX_FRAGMENTS) throw new FrameError(1009, `message in more than ${MAX_FRAGMENTS} fragments`);
    this.#messageBytes += len;
    if (this.#messageBytes > this.maxPayload) throw new FrameError(1009, `message over ${this.maxPayload} bytes`);
  }

  #takePayload(chunk: Buffer, at: number): number {
    const n = Math.min(this.#left, chunk.length - at);
    const piece = chunk.subarray(at, at + n);
    if (this.#masked) this.#maskAt = unmask(piece, this.#mask, this.#maskAt);
    // A whole frame in one read stays a view (small messages are not copied); only a frame
    // split across reads gathers its short pieces.
    if (n < SMALL_PIECE && n !== this.#frameLen) this.#gatherPiece(piece);
    else {
      this.#flushGathered();
      this.#pieces.push(piece);
    }
    this.#left -= n;
    if (this.#left === 0) this.#frameDone();
    return at + n;
  }

  #gatherPiece(piece: Buffer): void {
    if (this.#gather && this.#gathered + piece.length > this.#gather.length) {
      this.#flushGathered();
      this.#gather = undefined;
    }
    if (!this.#gather) {
      this.#gather = Buffer.allocUnsafe(GATHER_BYTES);
      this.#gathered = this.#gatherFrom = 0;
    }
    piece.copy(this.#gather, this.#gathered);
    this.#gathered += piece.length;
  }

  /** Ends the run of gathered bytes as one piece; the rest of the gather buffer serves the next run. */
  #flushGathered(): void {
    const g = this.#gather;
    if (!g || this.#gathered === this.#gatherFrom) return;
    this.#pieces.push(g.subarray(this.#gatherFrom, this.#gathered));
    this.#gatherFrom = this.#gathered;
    if (g.length - this.#gathered < SMALL_PIECE) this.#gather = undefined;
  }

  #frameDone(): void {
    this.#inPayload = false;
    this.#flushGathered();
    const pieces = this.#pieces;
    this.#pieces = [];
    const op = this.#opcode;
    if (op >= Op.Close) return this.#control(op, joinPieces(pieces));
    this.#fragments!.push(pieces);
    if (!this.#fin) return;
    const fragments = this.#fragments!;
    this.#fragments = undefined;
    // After our close frame (or terminate()), data is read but not acted on.
    if (this.readyState !== OPEN) return;
    this.emit('message', fragments, this.#messageBinary);
  }

  #payPong(): void {
    const p = this.#pongOwed;
    this.#pongOwed = undefined;
    if (p && this.readyState === OPEN) this.#write(Op.Pong, true, p);
  }

  #control(op: Op, payload: Buffer): void {
    if (op === Op.Ping) {
      if (this.readyState !== OPEN) return;
      if (this.socket.writableLength > PONG_HOLD_BYTES) {
        // A peer that pings without reading gets one pong, the latest, once our writes drain.
        if (!this.#pongOwed) this.socket.once('drain', () => this.#payPong());
        this.#pongOwed = Buffer.from(payload);
        return;
      }
      this.#write(Op.Pong, true, payload);
      return;
    }
    if (op === Op.Pong) {
      this.emit('pong', payload);
      return;
    }
    // Close (RFC 6455 §5.5.1, §7.4).
    let code = 1005;
    let reason: Buffer = EMPTY_BUFFER;
    if (payload.length === 1) throw new FrameError(1002, 'close frame with a one-byte payload');
    if (payload.length >= 2) {
      code = payload.readUInt16BE(0);
      if (!validCloseCode(code)) throw new FrameError(1002, `invalid close code ${code}`);
      reason = payload.subarray(2);
      try {
        UTF8.decode(reason);
      } catch {
        throw new FrameError(1007, 'close reason is not valid UTF-8');
      }
    }
    this.#closeReceived = { code, reason };
    if (!this.#closeSent) this.#sendClose(code === 1005 ? 1000 : code, '');
    // The server closes the TCP connection first (RFC 6455 §7.1.1).
    this.socket.end();
  }
}

const EMPTY = new Uint8Array(0);
const EMPTY_BUFFER = Buffer.alloc(0);
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Codes a peer may send in a close frame (RFC 6455 §7.4; 1004-1006 and 1015 never go on the wire). */
function validCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/** Joins pieces into one buffer (no copy when there is one). */
export function joinPieces(pieces: Pieces): Buffer {
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
}

/** Joins a message's fragments and their pieces into one buffer (no copy when there is one piece). */
export function joinFragments(fragments: readonly Pieces[]): Buffer {
  if (fragments.length === 1) return joinPieces(fragments[0]!);
  return Buffer.concat(fragments.flat());
}

/**
 * XORs `b` in place with `mask`, starting at byte `at` of the mask (a payload can span
 * several pieces); returns where the next piece starts in the mask. Four bytes a step where
 * the piece is aligned for it.
 */
export function unmask(b: Buffer, mask: Buffer, at: number): number {
  let i = 0;
  const n = b.length;
  // Bytes up to a 4-byte boundary of the underlying memory.
  while (i < n && (b.byteOffset + i) % 4 !== 0) {
    b[i] = b[i]! ^ mask[(at + i) & 3]!;
    i++;
  }
  const words = (n - i) >>> 2;
  if (words > 0) {
    const m = (at + i) & 3;
    // The mask rotated to start where this word does, read in the machine's byte order.
    const key = new Uint32Array(new Uint8Array([mask[m]!, mask[(m + 1) & 3]!, mask[(m + 2) & 3]!, mask[(m + 3) & 3]!]).buffer)[0]!;
    const u32 = new Uint32Array(b.buffer, b.byteOffset + i, words);
    for (let w = 0; w < words; w++) u32[w] = u32[w]! ^ key;
    i += words * 4;
  }
  while (i < n) {
    b[i] = b[i]! ^ mask[(at + i) & 3]!;
    i++;
  }
  return (at + n) & 3;
}
