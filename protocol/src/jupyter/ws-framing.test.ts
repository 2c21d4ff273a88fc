import { describe, expect, it } from 'vitest';
// The real neighbour: JupyterLab's own serializer, as every browser client uses it.
import { deserialize as jlDeserialize, serialize as jlSerialize } from '@jupyterlab/services/lib/kernel/serialize.js';
import type { KernelMessage } from '@jupyterlab/services';
import { ProtocolError } from '../errors.ts';
import { mutate, prng, randomBytes } from '../testing/prng.ts';
import { makeMessage, type JupyterMessage } from './messages.ts';
import { V1_SUBPROTOCOL, decodeLegacy, decodeV1, encodeLegacy, encodeV1, legacyToV1, peekV1, splitV1, v1ToLegacy } from './ws-framing.ts';

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
