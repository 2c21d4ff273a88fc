// Builds a tunnel KERNEL frame straight from a kernel message's parts, in ONE allocation:
//   0x02 ‖ kernel id (16 bytes) ‖ v1 frame (u64le count, u64le offsets, channel, parts…)
// protocol's encodeV1Parts + encodeKernelFrame would copy the message twice; output is the
// provider's hot path (10 MB of stdout, large display_data buffers), so we write the layout
// of docs/protocols.md here once and test it against the protocol's own decoders
// (kernel-frame.test.ts), which stay the single source of truth for reading it.
import { makeMessage, validateHeader, type Channel } from '@kinesis/protocol/jupyter/messages';
import { encodeV1 } from '@kinesis/protocol/jupyter/ws-framing';
import { encodeKernelFrame, encodeKernelPartHeader, FrameKind, KERNEL_PART_HEADER_BYTES, uuidToBytes } from '@kinesis/protocol/tunnel';
import type { WireParts } from './wire.ts';

export function kernelIdBytes(kernelId: string): Buffer {
  return uuidToBytes(kernelId);
}

export function kernelFrameFromParts(idBytes: Buffer, channel: Channel, p: WireParts, metadata: Uint8Array = p.metadata): Buffer {
  const parts: Uint8Array[] = [p.header, p.parent, metadata, p.content, ...p.buffers];
  const out = Buffer.allocUnsafe(17 + v1Length(channel, parts));
  out[0] = FrameKind.Kernel;
  idBytes.copy(out, 1);
  // Offsets are relative to the v1 frame, which starts after the 17-byte tunnel header.
  let at = 17 + writeV1Prefix(out, 17, channel, parts);
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

/** Bytes of a v1 frame's offset table and channel name, for `partCount` parts after them. */
function v1PrefixLength(channel: Channel, partCount: number): number {
  // count, then channel start, channel end and the end of each part
  return 8 * (partCount + 3) + channel.length;
}

function v1Length(channel: Channel, parts: readonly Uint8Array[]): number {
  let n = v1PrefixLength(channel, parts.length);
  for (const part of parts) n += part.byteLength;
  return n;
}

/**
 * Writes a v1 frame's offset table (offsets of all `parts`, relative to `base`) and channel
 * name at `out[base]`; returns where, relative to `base`, the first part goes.
 */
function writeV1Prefix(out: Buffer, base: number, channel: Channel, parts: readonly Uint8Array[]): number {
  const k = 2 + parts.length;
  let at = 8 * (k + 1);
  out.writeBigUInt64LE(BigInt(k), base);
  out.writeBigUInt64LE(BigInt(at), base + 8);
  out.write(channel, base + at, 'latin1');
  at += channel.length;
  out.writeBigUInt64LE(BigInt(at), base + 16);
  const first = at;
  parts.forEach((part, i) => {
    at += part.byteLength;
    out.writeBigUInt64LE(BigInt(at), base + 8 * (i + 3));
  });
  return first;
}

/**
 * 1 MiB. Smaller parts overlap the two hops more closely on a slow link (over two 12.5 MB/s
 * links, 10 MB took 1,022 ms in 256 KiB parts and 1,089 ms in 1 MiB parts, against 1,850 ms
 * whole), but each part has a fixed cost at both ends: on one machine's loopback, 10 MB in
 * 256 KiB parts measured 145-158 ms against 140-144 whole, and in 1 MiB parts 132-140
 * against 131-141 (four A/B runs of 20, two providers on one gateway, runs alternated).
 */
export const DEFAULT_PART_BYTES = 1024 * 1024;

/**
 * A kernel message sent as tunnel KERNEL PART frames (docs/protocols.md), for output too big
 * to cross as one frame without holding up the gateway: the gateway forwards each part to
 * its clients as it arrives. The message's own buffers are never copied: each part goes out
 * as fragments of one WebSocket message, a 33-byte header then slices of the parts.
 */
export class PartedMessage {
  /** Length of the v1 frame the parts make up. */
  readonly total: number;
  #offset = 0;
  #held = false;
  readonly #segments: Uint8Array[];
  /** Bytes of the frame before the content (the head). */
  readonly #headBytes: number;

  constructor(
    private readonly idBytes: Buffer,
    channel: Channel,
    p: WireParts,
    metadata: Uint8Array,
    private readonly partBytes: number,
    /** Content still arriving (its bytes behind `filled` are in): parts wait for their bytes. */
    private readonly arriving?: { readonly filled: number },
  ) {
    // 0 would make every part after the first empty, and the message would never end.
    if (!Number.isSafeInteger(partBytes) || partBytes < 1) throw new RangeError(`partBytes must be a positive integer, not ${partBytes}`);
    // The v1 frame's head (offset table, channel, header, parent, metadata) is small and must
    // arrive whole in the first part: the gateway routes the message by it.
    const heads: Uint8Array[] = [p.header, p.parent, metadata];
    const bodies: Uint8Array[] = [p.content, ...p.buffers];
    const all = [...heads, ...bodies];
    let headLen = v1PrefixLength(channel, all.length);
    for (const h of heads) headLen += h.byteLength;
    const head = Buffer.allocUnsafe(headLen);
    let at = writeV1Prefix(head, 0, channel, all);
    for (const h of heads) {
      head.set(h, at);
      at += h.byteLength;
    }
    this.total = v1Length(channel, all);
    this.#headBytes = headLen;
    this.#segments = [head, ...bodies.filter((b) => b.byteLength > 0)];
  }

  get started(): boolean {
    return this.#offset > 0;
  }

  /** Holds the last part back, and the message whole, until release(): its signature is still being checked. */
  hold(): void {
    this.#held = true;
  }

  release(): void {
    this.#held = false;
  }

  get held(): boolean {
    return this.#held;
  }

  /** Can next() be called now? Not for the last part of a held message, nor for a part whose bytes have not arrived. */
  get partReady(): boolean {
    const end = this.#partEnd(this.#offset);
    if (this.arriving && end > this.#headBytes + this.arriving.filled) return false;
    return !this.#held || end < this.total;
  }

  get done(): boolean {
    return this.#offset >= this.total;
  }

  /**
   * Bytes left to send, tunnel headers included: exactly what the remaining `next()` calls
   * return (0 once done), so that a queue can count it in and take it back out part by part.
   */
  get remainingWireBytes(): number {
    const left = this.total - this.#offset;
    if (left <= 0) return 0;
    // The first part may be longer than partBytes (it carries the whole head); the rest are not.
    const parts = this.#offset === 0 ? 1 + Math.ceil((this.total - this.#partEnd(0)) / this.partBytes) : Math.ceil(left / this.partBytes);
    return left + KERNEL_PART_HEADER_BYTES * parts;
  }

  /**
   * Starts the message over from its first part. Parts are per connection (docs/protocols.md:
   * the first has offset 0): a gateway on a new tunnel never saw the parts sent on the old one.
   */
  rewind(): void {
    this.#offset = 0;
  }

  /** Where the part starting at `start` ends. */
  #partEnd(start: number): number {
    // The first part takes the whole head even when the head alone is over partBytes.
    return Math.min(this.total, start + Math.max(this.partBytes, start === 0 ? (this.#segments[0]?.byteLength ?? 0) : 0));
  }

  /**
   * The whole message as one KERNEL frame (`0x02 ‖ kernel id ‖ v1 frame`), for a gateway that
   * does not take parts (the tunnel reconnected to one while this message waited). One copy.
   */
  whole(): Buffer {
    const out = Buffer.allocUnsafe(17 + this.total);
    out[0] = FrameKind.Kernel;
    this.idBytes.copy(out, 1);
    let at = 17;
    for (const s of this.#segments) {
      out.set(s, at);
      at += s.byteLength;
    }
    return out;
  }

  /** The next part: its header, then the slices of the message it carries. */
  next(): Buffer[] {
    const start = this.#offset;
    const end = this.#partEnd(start);
    const out: Buffer[] = [encodeKernelPartHeader(this.idBytes, this.total, start)];
    let segStart = 0;
    for (const s of this.#segments) {
      const segEnd = segStart + s.byteLength;
      if (segEnd > start && segStart < end) {
        const from = Math.max(start, segStart) - segStart;
        const to = Math.min(end, segEnd) - segStart;
        out.push(Buffer.from(s.buffer, s.byteOffset + from, to - from));
      }
      segStart = segEnd;
      if (segStart >= end) break;
    }
    this.#offset = end;
    return out;
  }
}

/**
 * The stderr line that stands where a kernel's output was dropped (the queue was full or a
 * message too large), as a KERNEL frame; under the dropped output's parent when it is known.
 */
export function dropNoticeFrame(kernelId: string, count: number, bytes: number, parent: Buffer | undefined, why = 'the gateway could not take them fast enough or was unreachable'): Buffer {
  let parentHeader = {};
  try {
    if (parent) parentHeader = validateHeader(JSON.parse(parent.toString('utf8')));
  } catch {
    // no parent: the notice stands alone
  }
  const msg = makeMessage({
    channel: 'iopub',
    msgType: 'stream',
    session: 'kinesis-provider',
    parent: parentHeader,
    content: { name: 'stderr', text: `\n[kinesis] ${count} output message(s), ${bytes} bytes, were dropped: ${why}.\n` },
  });
  return encodeKernelFrame(kernelId, encodeV1(msg));
}

/** Why output went missing, when some of it was too large to ever cross (the other reason is dropNoticeFrame's default). */
export function dropReason(count: number, tooLarge: number, limitBytes: number): string {
  const large = `too large for the gateway to take (over its limit of ${limitBytes % 1048576 === 0 ? `${limitBytes / 1048576} MiB` : `${limitBytes} bytes`} for one message)`;
  return tooLarge === count ? large : `${tooLarge} of them ${large}, the rest because the gateway could not take them fast enough or was unreachable`;
}
