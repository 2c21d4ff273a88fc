import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Channel } from '@kinesis/protocol/jupyter/messages';
import { decodeV1, peekV1, peekV1Head } from '@kinesis/protocol/jupyter/ws-framing';
import { bytesToUuid, decodeFrame, FrameKind, KERNEL_PART_HEADER_BYTES } from '@kinesis/protocol/tunnel';
import { prng, randomBytes } from '@kinesis/protocol/testing/prng';
import { dropNoticeFrame, dropReason, kernelFrameFromParts, kernelIdBytes, PartedMessage } from './kernel-frame.ts';
import type { WireParts } from './wire.ts';

// kernelFrameFromParts itself is tested against the protocol's decoders in wire.test.ts; here
// PartedMessage is tested against kernelFrameFromParts: its parts must make up the same v1 frame.

const j = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const CHANNELS: readonly Channel[] = ['shell', 'iopub', 'stdin', 'control'];

/** Random parts: headers of many sizes, empty content at times, zero-length buffers among the rest. */
function randomParts(rand: () => number): WireParts {
  const pick = (n: number): number => Math.floor(rand() * n);
  const size = (): number => (pick(4) === 0 ? 0 : pick(4) === 0 ? pick(20_000) : pick(600));
  return {
    header: j({ msg_id: randomUUID(), msg_type: 'stream', session: 's', username: 'u', date: '', version: '5.3', pad: 'h'.repeat(pick(3000)) }),
    parent: rand() < 0.3 ? j({}) : j({ msg_id: 'p', msg_type: 'execute_request', session: 's', username: 'u', date: '', version: '5.3', pad: 'p'.repeat(pick(500)) }),
    metadata: j({ m: 'é'.repeat(pick(300)) }),
    content: randomBytes(rand, size()),
    buffers: Array.from({ length: pick(5) }, () => randomBytes(rand, size())),
  };
}

/** Length of a part's message bytes (everything after its 33-byte header). */
const bodyLength = (part: readonly Buffer[]): number => part.slice(1).reduce((n, b) => n + b.length, 0);

describe('PartedMessage', () => {
  it('its parts make up exactly the v1 frame kernelFrameFromParts builds (seeded, 200 cases)', () => {
    const rand = prng(0x9a27);
    let headOverPart = 0;
    let emptyContent = 0;
    for (let c = 0; c < 200; c++) {
      const id = randomUUID();
      const idBytes = kernelIdBytes(id);
      const channel = CHANNELS[Math.floor(rand() * CHANNELS.length)] ?? 'iopub';
      const p = randomParts(rand);
      // The provider passes metadata with a receipt added; sometimes it is p.metadata itself.
      const metadata = rand() < 0.5 ? p.metadata : j({ receipt: 'r'.repeat(Math.floor(rand() * 400)) });
      const partBytes = 1 + Math.floor(rand() * (rand() < 0.3 ? 400 : 9000));
      const expected = kernelFrameFromParts(idBytes, channel, p, metadata).subarray(17);
      // End of the head (offset table, channel, header, parent, metadata): the end of metadata.
      const headLen = Number(expected.readBigUInt64LE(8 * 5));
      if (headLen > partBytes) headOverPart++;
      if (p.content.length === 0) emptyContent++;

      const m = new PartedMessage(idBytes, channel, p, metadata, partBytes);
      expect(m.total).toBe(expected.length);
      expect(m.started).toBe(false);
      expect(m.done).toBe(false);
      const initialWire = m.remainingWireBytes;
      const bodies: Buffer[] = [];
      let offset = 0;
      let wire = 0;
      while (!m.done) {
        const before = m.remainingWireBytes;
        const part = m.next();
        const header = part[0] as Buffer;
        expect(header.length).toBe(KERNEL_PART_HEADER_BYTES);
        expect(header[0]).toBe(FrameKind.KernelPart);
        expect(bytesToUuid(header.subarray(1, 17))).toBe(id);
        expect(Number(header.readBigUInt64LE(17))).toBe(m.total);
        expect(Number(header.readBigUInt64LE(25))).toBe(offset); // contiguous
        for (const s of part.slice(1)) expect(s.length).toBeGreaterThan(0); // no empty fragments
        const n = bodyLength(part);
        if (offset === 0) {
          // The first part holds at least the whole head, even when the head is over partBytes.
          expect(n).toBe(Math.min(m.total, Math.max(partBytes, headLen)));
          const head = Buffer.concat(part.slice(1));
          expect(peekV1Head(head, m.total)).toEqual(peekV1(expected));
        } else {
          expect(n).toBe(Math.min(partBytes, m.total - offset));
        }
        // What the gateway reads: the fragments of one WebSocket message, as one frame.
        const f = decodeFrame(Buffer.concat(part));
        expect(f).toMatchObject({ kind: 'kernel-part', kernelId: id, total: m.total, offset });
        expect(m.started).toBe(true);
        expect(before - m.remainingWireBytes).toBe(KERNEL_PART_HEADER_BYTES + n);
        wire += KERNEL_PART_HEADER_BYTES + n;
        offset += n;
        bodies.push(...part.slice(1));
      }
      expect(offset).toBe(m.total);
      expect(m.remainingWireBytes).toBe(0);
      expect(wire).toBe(initialWire);
      expect(Buffer.concat(bodies).equals(expected)).toBe(true);
    }
    // The generator reaches the edges this test is about.
    expect(headOverPart).toBeGreaterThan(10);
    expect(emptyContent).toBeGreaterThan(10);
  });

  it('never copies content or buffers: parts are views of the kernel message', () => {
    const content = Buffer.alloc(300_000, 1);
    const buffer = Buffer.alloc(100_000, 2);
    const p: WireParts = { header: j({ msg_id: 'a', msg_type: 'stream' }), parent: j({}), metadata: j({}), content, buffers: [Buffer.alloc(0), buffer] };
    const m = new PartedMessage(kernelIdBytes(randomUUID()), 'iopub', p, p.metadata, 65_536);
    // Written after the message was built, before it was sent: the parts carry the change.
    content[0] = 0xab;
    content[content.length - 1] = 0xcd;
    buffer[50_000] = 0xef;
    const slices: Buffer[] = [];
    while (!m.done) slices.push(...m.next().slice(1));
    const fromContent = slices.filter((s) => s.buffer === content.buffer);
    const fromBuffer = slices.filter((s) => s.buffer === buffer.buffer);
    expect(fromContent.reduce((n, s) => n + s.length, 0)).toBe(content.length);
    expect(fromBuffer.reduce((n, s) => n + s.length, 0)).toBe(buffer.length);
    const whole = Buffer.concat(slices);
    expect(whole.equals(kernelFrameFromParts(kernelIdBytes(randomUUID()), 'iopub', p).subarray(17))).toBe(true);
    expect(whole[whole.length - 400_000]).toBe(0xab);
    expect(whole[whole.length - 100_001]).toBe(0xcd);
    expect(whole[whole.length - 50_000]).toBe(0xef);
  });

  it('with content still arriving, gives a part only once its bytes are in, and the same frame in the end (seeded)', () => {
    const rand = prng(0x51);
    for (let c = 0; c < 50; c++) {
      const idBytes = kernelIdBytes(randomUUID());
      const full = { ...randomParts(rand), content: randomBytes(rand, 1 + Math.floor(rand() * 200_000)), buffers: [] };
      const expected = kernelFrameFromParts(idBytes, 'iopub', full).subarray(17);
      const arriving = { filled: 0 };
      const content = Buffer.alloc(full.content.length);
      const partBytes = 1000 + Math.floor(rand() * 30_000);
      const m = new PartedMessage(idBytes, 'iopub', { ...full, content }, full.metadata, partBytes, arriving);
      const headLen = m.total - content.length;
      const bodies: Buffer[] = [];
      let offset = 0;
      while (!m.done) {
        // A part is ready exactly when all its bytes have arrived.
        const end = Math.min(m.total, offset + Math.max(partBytes, offset === 0 ? headLen : 0));
        expect(m.partReady).toBe(end <= headLen + arriving.filled);
        if (!m.partReady) {
          const n = Math.min(content.length, arriving.filled + 1 + Math.floor(rand() * 20_000));
          full.content.copy(content, arriving.filled, arriving.filled, n);
          arriving.filled = n;
          continue;
        }
        const part = m.next();
        bodies.push(...part.slice(1));
        offset = end;
      }
      expect(Buffer.concat(bodies).equals(expected)).toBe(true);
    }
  });

  it('starts over after rewind, with the same parts', () => {
    const rand = prng(5);
    const p: WireParts = { header: j({ msg_id: 'a' }), parent: j({}), metadata: j({}), content: randomBytes(rand, 10_000), buffers: [] };
    const m = new PartedMessage(kernelIdBytes(randomUUID()), 'iopub', p, p.metadata, 3000);
    const initial = m.remainingWireBytes;
    const first = Buffer.concat(m.next());
    m.next();
    m.rewind();
    expect(m.started).toBe(false);
    expect(m.remainingWireBytes).toBe(initial);
    expect(Buffer.concat(m.next()).equals(first)).toBe(true);
  });

  it('takes only a positive whole part size', () => {
    const p: WireParts = { header: j({}), parent: j({}), metadata: j({}), content: Buffer.alloc(10), buffers: [] };
    for (const bad of [0, -1, 1.5, NaN, Infinity]) expect(() => new PartedMessage(kernelIdBytes(randomUUID()), 'iopub', p, p.metadata, bad)).toThrow(RangeError);
  });

  it('a message no longer than one part goes as one part', () => {
    const p: WireParts = { header: j({ msg_id: 'a' }), parent: j({}), metadata: j({}), content: Buffer.alloc(100), buffers: [] };
    const m = new PartedMessage(kernelIdBytes(randomUUID()), 'iopub', p, p.metadata, 1 << 20);
    expect(m.remainingWireBytes).toBe(m.total + KERNEL_PART_HEADER_BYTES);
    expect(bodyLength(m.next())).toBe(m.total);
    expect(m.done).toBe(true);
    expect(m.remainingWireBytes).toBe(0);
  });
});

describe('dropNoticeFrame', () => {
  it('is a stderr stream message for the kernel, under the dropped output\'s parent when that parses', () => {
    const id = randomUUID();
    const parent = { msg_id: 'p1', msg_type: 'execute_request', session: 's', username: 'u', date: '2026-01-01T00:00:00.000Z', version: '5.3' };
    const f = decodeFrame(dropNoticeFrame(id, 3, 4096, Buffer.from(JSON.stringify(parent))));
    expect(f.kind === 'kernel' && f.kernelId).toBe(id);
    const m = decodeV1(f.kind === 'kernel' ? f.payload : new Uint8Array());
    expect(m.channel).toBe('iopub');
    expect(m.content).toMatchObject({ name: 'stderr' });
    expect(String(m.content['text'])).toContain('3 output message(s), 4096 bytes, were dropped: the gateway could not take them');
    const why = decodeFrame(dropNoticeFrame(id, 1, 5, undefined, 'it was too large'));
    expect(String(decodeV1(why.kind === 'kernel' ? why.payload : new Uint8Array()).content['text'])).toContain('1 output message(s), 5 bytes, were dropped: it was too large.');
    expect(dropReason(2, 2, 64 * 1024 * 1024)).toBe('too large for the gateway to take (over its limit of 64 MiB for one message)');
    expect(dropReason(3, 1, 1000)).toBe('1 of them too large for the gateway to take (over its limit of 1000 bytes for one message), the rest because the gateway could not take them fast enough or was unreachable');
    expect(m.parent_header.msg_id).toBe('p1');
    for (const bad of [Buffer.from('{not json'), Buffer.from('{"msg_id":1}'), undefined]) {
      const g = decodeFrame(dropNoticeFrame(id, 1, 1, bad));
      expect(g.kind === 'kernel' && decodeV1(g.payload).parent_header).toEqual({});
    }
  });
});
