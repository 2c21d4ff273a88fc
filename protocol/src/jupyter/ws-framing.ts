// The two WebSocket framings of Jupyter kernel channels.
// Legacy: jupyter_server/base/zmqhandlers.py serialize_binary_message.
// v1: jupyter_server/services/kernels/connection/base.py serialize_msg_to_ws_v1, and
// @jupyterlab/services src/kernel/serialize.ts. See docs/protocols.md.
import { malformed, ProtocolError, tooBig } from '../errors.ts';
import { isChannel, validateHeader, validateMessage, validateParentHeader, type Channel, type JupyterMessage, type MessageHeader } from './messages.ts';

export const V1_SUBPROTOCOL = 'v1.kernel.websocket.jupyter.org';
export const DEFAULT_MAX_FRAME = 64 * 1024 * 1024;
const MAX_BUFFERS = 1024;

export interface DecodeOptions {
  readonly maxBytes?: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function checkSize(size: number, opts?: DecodeOptions): void {
  const max = opts?.maxBytes ?? DEFAULT_MAX_FRAME;
  if (size > max) throw tooBig(size, max);
}

function parseJson(bytes: Uint8Array, field: string): unknown {
  try {
    return JSON.parse(dec.decode(bytes));
  } catch (cause) {
    throw malformed(`${field} is not valid UTF-8 JSON`, cause);
  }
}

/**
 * Reads the v1 offset table; every offset is checked against the frame before use. `end` is
 * the frame's length: `f` itself, or only its first bytes when the frame arrives in parts.
 */
function v1Offsets(f: Buffer, end = f.length): number[] {
  if (f.length < 8) throw malformed('v1 frame shorter than its offset count');
  const count = f.readBigUInt64LE(0);
  // channel start + channel end + header, parent, metadata, content ends = 6 at least.
  if (count < 6n || count > BigInt(6 + MAX_BUFFERS)) throw malformed('v1 frame has an invalid offset count');
  const k = Number(count);
  const tableEnd = 8 * (k + 1);
  if (f.length < tableEnd) throw malformed('v1 frame shorter than its offset table');
  const offsets: number[] = new Array<number>(k);
  let prev = tableEnd;
  for (let i = 0; i < k; i++) {
    const o = f.readBigUInt64LE(8 * (i + 1));
    if (o > BigInt(end)) throw malformed('v1 frame offset points past its end');
    const n = Number(o);
    if (n < prev) throw malformed('v1 frame offsets are not increasing');
    if (i === 0 && n !== tableEnd) throw malformed('v1 frame channel does not follow the offset table');
    offsets[i] = n;
    prev = n;
  }
  return offsets;
}

function v1Channel(f: Buffer, offsets: readonly number[]): Channel {
  const channel = f.toString('latin1', offsets[0], offsets[1]);
  if (!isChannel(channel)) throw malformed('v1 frame names an unknown channel');
  return channel;
}

export interface V1Peek {
  readonly channel: Channel;
  readonly header: MessageHeader;
  readonly parentHeader: Partial<MessageHeader>;
}

/** Parses only what routing needs: channel, header, parent header. Content and buffers stay bytes. */
export function peekV1(frame: Uint8Array, opts?: DecodeOptions): V1Peek {
  checkSize(frame.byteLength, opts);
  const f = asBuffer(frame);
  const o = v1Offsets(f);
  return {
    channel: v1Channel(f, o),
    header: validateHeader(parseJson(f.subarray(o[1], o[2]), 'header')),
    parentHeader: validateParentHeader(parseJson(f.subarray(o[2], o[3]), 'parent_header')),
  };
}

/**
 * `peekV1` for a frame of `total` bytes of which only the first `head.length` have arrived
 * (a message crossing the tunnel in parts): the offset table, channel, header and parent
 * header must all lie within `head`.
 */
export function peekV1Head(head: Uint8Array, total: number, opts?: DecodeOptions): V1Peek {
  // Checked here, not left to BigInt(total) below, which throws a RangeError for a fraction or NaN.
  if (!Number.isSafeInteger(total) || total < 0) throw malformed('v1 frame length must be a whole number of bytes');
  checkSize(total, opts);
  const f = asBuffer(head);
  if (f.length > total) throw malformed('v1 frame head is longer than the frame');
  const o = v1Offsets(f, total);
  if ((o[3] ?? Infinity) > f.length) throw malformed('the first part of a v1 frame must hold its channel, header and parent header');
  return {
    channel: v1Channel(f, o),
    header: validateHeader(parseJson(f.subarray(o[1], o[2]), 'header')),
    parentHeader: validateParentHeader(parseJson(f.subarray(o[2], o[3]), 'parent_header')),
  };
}

export function decodeV1(frame: Uint8Array, opts?: DecodeOptions): JupyterMessage {
  checkSize(frame.byteLength, opts);
  const f = asBuffer(frame);
  const o = v1Offsets(f);
  const part = (i: number, field: string): unknown => parseJson(f.subarray(o[i], o[i + 1]), field);
  const buffers: Uint8Array[] = [];
  // Buffers are views into the frame: no copy. The last offset is the frame's end.
  for (let i = 5; i < o.length - 1; i++) buffers.push(f.subarray(o[i], o[i + 1]));
  if ((o[o.length - 1] ?? 0) !== f.length) throw malformed('v1 frame has bytes after its last part');
  return validateMessage(
    { channel: v1Channel(f, o), header: part(1, 'header'), parent_header: part(2, 'parent_header'), metadata: part(3, 'metadata'), content: part(4, 'content') },
    buffers,
  );
}

/** Encodes from already-serialized JSON parts (how the provider forwards ZMQ frames without re-encoding). */
export function encodeV1Parts(channel: Channel, parts: readonly Uint8Array[]): Buffer {
  const k = 2 + parts.length;
  const table = Buffer.allocUnsafe(8 * (k + 1));
  table.writeBigUInt64LE(BigInt(k), 0);
  let at = 8 * (k + 1);
  table.writeBigUInt64LE(BigInt(at), 8);
  at += channel.length;
  table.writeBigUInt64LE(BigInt(at), 16);
  parts.forEach((p, i) => {
    at += p.byteLength;
    table.writeBigUInt64LE(BigInt(at), 8 * (i + 3));
  });
  return Buffer.concat([table, Buffer.from(channel, 'latin1'), ...parts.map(asBuffer)], at);
}

export function encodeV1(msg: JupyterMessage): Buffer {
  return encodeV1Parts(msg.channel, [
    enc.encode(JSON.stringify(msg.header)),
    enc.encode(JSON.stringify(msg.parent_header ?? {})),
    enc.encode(JSON.stringify(msg.metadata ?? {})),
    enc.encode(JSON.stringify(msg.content ?? {})),
    ...msg.buffers,
  ]);
}

/** Raw JSON parts of a v1 frame (header, parent, metadata, content) and its buffers, as views. */
export function splitV1(frame: Uint8Array, opts?: DecodeOptions): { channel: Channel; parts: Buffer[] } {
  checkSize(frame.byteLength, opts);
  const f = asBuffer(frame);
  const o = v1Offsets(f);
  const parts: Buffer[] = [];
  for (let i = 1; i < o.length - 1; i++) parts.push(f.subarray(o[i], o[i + 1]));
  return { channel: v1Channel(f, o), parts };
}

function legacyJson(msg: JupyterMessage): string {
  return JSON.stringify({
    header: msg.header,
    parent_header: msg.parent_header,
    metadata: msg.metadata,
    content: msg.content,
    channel: msg.channel,
    buffers: [],
  });
}

/** Legacy framing: a text frame without buffers, the offsets framing with them. */
export function encodeLegacy(msg: JupyterMessage): string | Buffer {
  if (msg.buffers.length === 0) return legacyJson(msg);
  const parts = [Buffer.from(legacyJson(msg), 'utf8'), ...msg.buffers.map(asBuffer)];
  const n = parts.length;
  const head = Buffer.allocUnsafe(4 * (n + 1));
  head.writeUInt32BE(n, 0);
  let at = 4 * (n + 1);
  parts.forEach((p, i) => {
    head.writeUInt32BE(at, 4 * (i + 1));
    at += p.length;
  });
  return Buffer.concat([head, ...parts], at);
}

export function decodeLegacy(data: string | Uint8Array, opts?: DecodeOptions): JupyterMessage {
  if (typeof data === 'string') {
    // Counting a string's UTF-8 bytes scans it (1.5 ms for 10 MB); 3 bytes per UTF-16 unit
    // is an upper bound, so only a string that could be over the limit is counted.
    if (data.length * 3 > (opts?.maxBytes ?? DEFAULT_MAX_FRAME)) checkSize(Buffer.byteLength(data), opts);
    let v: unknown;
    try {
      v = JSON.parse(data);
    } catch (cause) {
      throw malformed('message is not valid JSON', cause);
    }
    return validateMessage(v);
  }
  checkSize(data.byteLength, opts);
  const f = asBuffer(data);
  if (f.length < 8) throw malformed('binary message shorter than its header');
  const n = f.readUInt32BE(0);
  if (n < 1 || n > MAX_BUFFERS + 1) throw malformed('binary message has an invalid part count');
  if (f.length < 4 * (n + 1)) throw malformed('binary message shorter than its offset table');
  const offsets: number[] = [];
  let prev = 4 * (n + 1);
  for (let i = 0; i < n; i++) {
    const o = f.readUInt32BE(4 * (i + 1));
    if (o < prev || o > f.length) throw malformed('binary message offsets out of order or past its end');
    if (i === 0 && o !== 4 * (n + 1)) throw malformed('binary message JSON does not follow the offset table');
    offsets.push(o);
    prev = o;
  }
  offsets.push(f.length);
  const buffers: Uint8Array[] = [];
  for (let i = 1; i < n; i++) buffers.push(f.subarray(offsets[i], offsets[i + 1]));
  return validateMessage(parseJson(f.subarray(offsets[0], offsets[1]), 'message'), buffers);
}

export function v1ToLegacy(frame: Uint8Array, opts?: DecodeOptions): string | Buffer {
  return encodeLegacy(decodeV1(frame, opts));
}

export function legacyToV1(data: string | Uint8Array, opts?: DecodeOptions): Buffer {
  return encodeV1(decodeLegacy(data, opts));
}

export { ProtocolError };
