import { describe, expect, it } from 'vitest';
// The real neighbour: JupyterLab's own serializer, as every browser client uses it.
import { deserialize as jlDeserialize, serialize as jlSerialize } from '@jupyterlab/services/lib/kernel/serialize.js';
import type { KernelMessage } from '@jupyterlab/services';
import { ProtocolError } from '../errors.ts';
import { mutate, prng, randomBytes } from '../testing/prng.ts';
import { makeMessage, type JupyterMessage } from './messages.ts';
import { DEFAULT_MAX_FRAME, V1_SUBPROTOCOL, decodeLegacy, decodeV1, encodeLegacy, encodeV1, legacyToV1, peekV1, peekV1Head, splitV1, v1ToLegacy } from './ws-framing.ts';

function sample(buffers: Uint8Array[] = []): JupyterMessage {
  return makeMessage({
    channel: 'iopub',
    msgType: 'display_data',
    session: 's-1',
    content: { data: { 'text/plain': 'héllo ✓' }, metadata: {}, transient: {} },
    metadata: { a: 1 },
    parent: makeMessage({ channel: 'shell', msgType: 'execute_request', session: 's-1' }).header,
    buffers,
  });
}

const norm = (m: { buffers?: readonly (Uint8Array | ArrayBuffer | DataView)[] } & object) => ({
  ...m,
  buffers: (m.buffers ?? []).map((b) => Buffer.from(b instanceof ArrayBuffer ? b : (b as Uint8Array).buffer.slice((b as Uint8Array).byteOffset, (b as Uint8Array).byteOffset + (b as Uint8Array).byteLength)).toString('hex')),
});

const toArrayBuffer = (b: Uint8Array): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
// JupyterLab's serializer takes buffers as ArrayBuffers or DataViews, as a browser has them.
const jl = (m: JupyterMessage): KernelMessage.IMessage => ({ ...m, buffers: m.buffers.map(toArrayBuffer) }) as unknown as KernelMessage.IMessage;

describe('v1.kernel.websocket.jupyter.org framing', () => {
  it('round-trips a message with binary buffers', () => {
    const m = sample([Buffer.from([0, 1, 2, 255]), Buffer.alloc(0), randomBytes(prng(1), 1000)]);
    const back = decodeV1(encodeV1(m));
    expect(norm(back)).toEqual(norm(m));
  });

  it('is byte-compatible with @jupyterlab/services in both directions', () => {
    const m = sample([Buffer.from('buffer-one'), Buffer.from([9, 8, 7])]);
    const ours = encodeV1(m);
    const theirs = Buffer.from(jlSerialize(jl(m), V1_SUBPROTOCOL) as ArrayBuffer);
    expect(ours.equals(theirs)).toBe(true);
    const parsed = jlDeserialize(toArrayBuffer(ours), V1_SUBPROTOCOL);
    expect(parsed.header).toEqual(m.header);
    expect(parsed.content).toEqual(m.content);
    expect(parsed.buffers?.length).toBe(2);
  });

  it('peeks routing fields without touching content', () => {
    const m = sample();
    const p = peekV1(encodeV1(m));
    expect(p.channel).toBe('iopub');
    expect(p.header.msg_id).toBe(m.header.msg_id);
    expect(p.parentHeader.msg_type).toBe('execute_request');
  });

  it('splits into raw parts that re-encode identically', () => {
    const f = encodeV1(sample([Buffer.from('x')]));
    const { channel, parts } = splitV1(f);
    expect(channel).toBe('iopub');
    expect(parts).toHaveLength(5);
  });

  it('rejects oversize frames with 1009 before parsing', () => {
    const f = encodeV1(sample());
    expect(() => decodeV1(f, { maxBytes: 10 })).toThrow(expect.objectContaining({ closeCode: 1009 }));
    // Legacy text frames are judged by their UTF-8 length: 'é' is 2 bytes, '✓' 3.
    const text = JSON.stringify({ ...sample(), buffers: [] });
    const n = Buffer.byteLength(text);
    expect(decodeLegacy(text, { maxBytes: n }).header.msg_type).toBe(sample().header.msg_type);
    expect(() => decodeLegacy(text, { maxBytes: n - 1 })).toThrow(expect.objectContaining({ closeCode: 1009 }));
    const wide = JSON.stringify({ ...sample(), content: { t: '✓'.repeat(100) }, buffers: [] });
    expect(() => decodeLegacy(wide, { maxBytes: Buffer.byteLength(wide) - 1 })).toThrow(expect.objectContaining({ closeCode: 1009 }));
    expect(decodeLegacy(wide, { maxBytes: Buffer.byteLength(wide) }).content).toEqual({ t: '✓'.repeat(100) });
  });

  it('fuzz: mutated frames decode or throw ProtocolError, never anything else', () => {
    const rand = prng(0xfeed);
    const base = [encodeV1(sample()), encodeV1(sample([Buffer.from('abc'), Buffer.alloc(3)]))];
    for (let i = 0; i < 20_000; i++) {
      const input = mutate(rand, base[i % 2]!);
      try {
        decodeV1(input);
        peekV1(input);
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
      }
    }
  });
});

/** Offset `i` of a v1 frame's table: 0 channel start, 1 channel end, 2 header end, 3 parent end. */
const offsetAt = (f: Buffer, i: number): number => Number(f.readBigUInt64LE(8 * (i + 1)));

/** A message with random sizes of every part, so that heads end at many different lengths. */
function randomMessage(rand: () => number): JupyterMessage {
  const text = (n: number): string => 'xé✓'.repeat(Math.floor(rand() * n));
  const channels = ['iopub', 'shell', 'stdin', 'control'] as const;
  return makeMessage({
    channel: channels[Math.floor(rand() * channels.length)] ?? 'iopub',
    msgType: rand() < 0.5 ? 'stream' : 'display_data',
    session: 's-' + text(20),
    content: rand() < 0.2 ? {} : { text: text(400) },
    metadata: rand() < 0.5 ? {} : { m: text(50) },
    ...(rand() < 0.3 ? {} : { parent: makeMessage({ channel: 'shell', msgType: 'execute_request', session: text(30) }).header }),
    buffers: Array.from({ length: Math.floor(rand() * 4) }, () => randomBytes(rand, Math.floor(rand() * 200))),
  });
}

describe('peekV1Head: the start of a v1 frame that arrives in parts', () => {
  const code = (closeCode: number) => expect.objectContaining({ name: 'ProtocolError', closeCode });

  it('peeks as peekV1 does from every prefix that holds the parent header, and from none shorter (seeded)', () => {
    const rand = prng(0x4ead);
    for (let i = 0; i < 40; i++) {
      const f = encodeV1(i === 0 ? sample([Buffer.from('abc')]) : randomMessage(rand));
      const whole = peekV1(f);
      const parentEnd = offsetAt(f, 3);
      for (let n = parentEnd; n <= f.length; n++) expect(peekV1Head(f.subarray(0, n), f.length)).toEqual(whole);
      for (let n = 0; n < parentEnd; n++) expect(() => peekV1Head(f.subarray(0, n), f.length)).toThrow(code(1007));
    }
  });

  it('reads a head that is a plain Uint8Array, not a Buffer', () => {
    const f = encodeV1(sample());
    const n = offsetAt(f, 3);
    const u = new Uint8Array(f.buffer.slice(f.byteOffset, f.byteOffset + n));
    expect(peekV1Head(u, f.length)).toEqual(peekV1(f));
  });

  it('rejects offsets that point past the total, even those not yet arrived', () => {
    const f = encodeV1(sample([Buffer.from('buffer')]));
    const head = f.subarray(0, offsetAt(f, 3));
    const last = offsetAt(f, 6);
    expect(last).toBe(f.length);
    expect(peekV1Head(head, last)).toEqual(peekV1(f));
    for (const total of [last - 1, offsetAt(f, 4), head.length]) expect(() => peekV1Head(head, total)).toThrow(code(1007));
    // An offset in the table rewritten past the total.
    const bad = Buffer.from(head);
    bad.writeBigUInt64LE(BigInt(f.length + 1), 8 * 6);
    expect(() => peekV1Head(bad, f.length)).toThrow(code(1007));
    bad.writeBigUInt64LE(2n ** 64n - 1n, 8 * 6);
    expect(() => peekV1Head(bad, f.length)).toThrow(code(1007));
  });

  it('rejects a head longer than the frame', () => {
    const f = encodeV1(sample());
    expect(() => peekV1Head(f, f.length - 1)).toThrow(code(1007));
    expect(() => peekV1Head(f, 0)).toThrow(code(1007));
  });

  it('rejects a total over the bound with 1009, and a total that is not a byte count with 1007', () => {
    const f = encodeV1(sample());
    const head = f.subarray(0, offsetAt(f, 3));
    expect(() => peekV1Head(head, f.length, { maxBytes: f.length - 1 })).toThrow(code(1009));
    expect(peekV1Head(head, f.length, { maxBytes: f.length })).toEqual(peekV1(f));
    expect(() => peekV1Head(head, DEFAULT_MAX_FRAME + 1)).toThrow(code(1009));
    for (const total of [NaN, -1, 1.5, Infinity, 2 ** 60]) expect(() => peekV1Head(head, total, { maxBytes: Number.MAX_SAFE_INTEGER })).toThrow(ProtocolError);
  });

  it('still validates the channel, header and parent header it reads', () => {
    const f = encodeV1(sample());
    const n = offsetAt(f, 3);
    const badChannel = Buffer.from(f.subarray(0, n));
    badChannel[offsetAt(f, 0)] = 'x'.charCodeAt(0);
    expect(() => peekV1Head(badChannel, f.length)).toThrow(code(1007));
    const badHeader = Buffer.from(f.subarray(0, n));
    badHeader[offsetAt(f, 1)] = '['.charCodeAt(0);
    expect(() => peekV1Head(badHeader, f.length)).toThrow(code(1007));
    const badParent = Buffer.from(f.subarray(0, n));
    badParent[offsetAt(f, 3) - 1] = 0xff;
    expect(() => peekV1Head(badParent, f.length)).toThrow(code(1007));
  });

  it('fuzz: mutated heads with random totals peek or throw ProtocolError, never anything else', () => {
    const rand = prng(0xbead);
    const frames = [encodeV1(sample()), encodeV1(sample([Buffer.from('abc'), Buffer.alloc(3)]))];
    let peeked = 0;
    for (let i = 0; i < 20_000; i++) {
      const f = frames[i % 2]!;
      const head = mutate(rand, f.subarray(0, offsetAt(f, 3) + Math.floor(rand() * (f.length - offsetAt(f, 3) + 1))));
      const total = rand() < 0.5 ? f.length : Math.floor(rand() * 2 * f.length);
      try {
        peekV1Head(head, total);
        peeked++;
        expect(head.length).toBeLessThanOrEqual(total);
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
      }
    }
    expect(peeked).toBeGreaterThan(1000);
  });
});

describe('legacy framing', () => {
  it('uses a text frame without buffers and matches JupyterLab', () => {
    const m = sample();
    const text = encodeLegacy(m);
    expect(typeof text).toBe('string');
    expect(JSON.parse(jlSerialize(jl(m), '') as string)).toEqual(JSON.parse(text as string));
    expect(norm(decodeLegacy(text))).toEqual(norm(m));
  });

  it('uses the offsets framing with buffers, readable by JupyterLab', () => {
    const m = sample([Buffer.from([1, 2, 3]), Buffer.from('four')]);
    const bin = encodeLegacy(m) as Buffer;
    expect(Buffer.isBuffer(bin)).toBe(true);
    const parsed = jlDeserialize(toArrayBuffer(bin), '');
    expect(parsed.header).toEqual(m.header);
    expect(parsed.buffers?.length).toBe(2);
    expect(norm(decodeLegacy(bin))).toEqual(norm(m));
    const theirs = Buffer.from(jlSerialize(jl(m), '') as ArrayBuffer);
    expect(norm(decodeLegacy(theirs))).toEqual(norm(m));
  });

  it('converts between the framings', () => {
    const m = sample([Buffer.from('zz')]);
    expect(norm(decodeV1(legacyToV1(encodeLegacy(m))))).toEqual(norm(m));
    expect(norm(decodeLegacy(v1ToLegacy(encodeV1(m))))).toEqual(norm(m));
  });

  it('rejects malformed JSON and missing fields with 1007', () => {
    for (const bad of ['{', '[]', '{"channel":"shell"}', '{"channel":"nope","header":{"msg_id":"a","msg_type":"b"}}', '{"channel":"shell","header":{"msg_id":1,"msg_type":"b"}}']) {
      expect(() => decodeLegacy(bad)).toThrow(expect.objectContaining({ closeCode: 1007 }));
    }
  });

  it('fuzz: mutated binary and text messages never throw anything but ProtocolError', () => {
    const rand = prng(42);
    const bin = encodeLegacy(sample([Buffer.from('abc')])) as Buffer;
    const text = Buffer.from(encodeLegacy(sample()) as string);
    for (let i = 0; i < 20_000; i++) {
      const input = mutate(rand, i % 2 ? bin : text);
      try {
        decodeLegacy(i % 3 === 0 ? input.toString('utf8') : input);
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
      }
    }
  });
});
