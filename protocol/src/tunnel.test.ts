import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from './errors.ts';
import { mutate, prng, randomBytes } from './testing/prng.ts';
import {
  authText,
  decodeFrame,
  DEFAULT_MAX_TUNNEL_FRAME,
  encodeControl,
  encodeCredit,
  encodeKernelFrame,
  encodeKernelPartHeader,
  decodeKernelPart,
  filterKernelEnv,
  FrameKind,
  KERNEL_PART_HEADER_BYTES,
  TUNNEL_FEATURES,
  uuidToBytes,
  validateControl,
  type ControlMessage,
} from './tunnel.ts';

const hardware = { devices: [{ kind: 'gpu', vendor: 'nvidia', name: 'RTX 4090', index: 0, memoryMiB: 24564, powerLimitW: 450 }], cpu: { model: 'x', cores: 8 }, memoryMiB: 32000, os: 'linux', arch: 'x64' } as const;
const hello: ControlMessage = {
  type: 'hello',
  version: 1,
  address: '0x' + 'ab'.repeat(20),
  signature: '0x' + '11'.repeat(65),
  name: 'rig',
  hardware,
  pricePerKwh: '250000',
  kernelspecs: [{ name: 'python3', spec: { argv: ['python3', '-m', 'ipykernel_launcher', '-f', '{connection_file}'], display_name: 'Python 3', language: 'python' }, resources: {} }],
  kernels: [{ kernelId: randomUUID(), specName: 'python3', status: 'idle' }],
};

describe('tunnel frames', () => {
  it('round-trips every control message type', () => {
    const id = randomUUID();
    const msgs: ControlMessage[] = [
      { type: 'challenge', version: 1, gatewayId: 'gw', nonce: 'ab'.repeat(32) },
      hello,
      { type: 'advertise', name: 'rig', hardware, pricePerKwh: '1', kernelspecs: [] },
      { type: 'welcome', providerId: '0x' + 'ab'.repeat(20), initialCredit: 8 << 20 },
      { type: 'start_kernel', id: 1, kernelId: id, specName: 'python3', env: { KERNEL_X: '1' } },
      { type: 'interrupt_kernel', id: 2, kernelId: id },
      { type: 'restart_kernel', id: 3, kernelId: id },
      { type: 'shutdown_kernel', id: 4, kernelId: id },
      { type: 'reply', id: 4, ok: true },
      { type: 'reply', id: 5, ok: false, error: 'no such spec' },
      { type: 'kernel_status', kernelId: id, status: 'dead', reason: 'exit 137' },
      { type: 'kernel_receipt', kernelId: id, receipt: { message: { seq: '3' }, signature: '0x00' } },
      { type: 'kernel_part_abort', kernelId: id },
    ];
    for (const m of msgs) {
      const f = decodeFrame(encodeControl(m));
      expect(f).toEqual({ kind: 'control', message: m });
    }
  });

  it('carries kernel payloads and credit without touching the payload', () => {
    const id = randomUUID();
    const payload = Buffer.from([1, 2, 3, 4, 5]);
    const f = decodeFrame(encodeKernelFrame(id, payload));
    expect(f.kind).toBe('kernel');
    if (f.kind === 'kernel') {
      expect(f.kernelId).toBe(id);
      expect(Buffer.from(f.payload).equals(payload)).toBe(true);
    }
    expect(decodeFrame(encodeCredit(id, 12345))).toEqual({ kind: 'credit', kernelId: id, bytes: 12345 });
  });

  it('closes with the right code for bad frames', () => {
    expect(() => decodeFrame(Buffer.from([9, 1, 2]))).toThrow(expect.objectContaining({ closeCode: 1003 }));
    expect(() => decodeFrame(Buffer.from([1, 0x7b]))).toThrow(expect.objectContaining({ closeCode: 1007 }));
    expect(() => decodeFrame(Buffer.alloc(100), { maxBytes: 50 })).toThrow(expect.objectContaining({ closeCode: 1009 }));
    expect(() => decodeFrame(encodeControl({ ...hello, pricePerKwh: '-1' } as ControlMessage))).toThrow(ProtocolError);
    expect(() => decodeFrame(Buffer.from([2, 1, 2]))).toThrow(expect.objectContaining({ closeCode: 1007 }));
    // A closing receipt must be an object (its fields are the ledger's to judge) for a valid kernel id.
    expect(() => decodeFrame(encodeControl({ type: 'kernel_receipt', kernelId: randomUUID(), receipt: 'x' } as ControlMessage))).toThrow(expect.objectContaining({ closeCode: 1007 }));
    expect(() => decodeFrame(encodeControl({ type: 'kernel_receipt', kernelId: 'nope', receipt: {} } as ControlMessage))).toThrow(expect.objectContaining({ closeCode: 1007 }));
    expect(() => decodeFrame(encodeControl({ type: 'kernel_part_abort', kernelId: '../x' } as ControlMessage))).toThrow(expect.objectContaining({ closeCode: 1007 }));
    expect(() => decodeFrame(encodeControl({ type: 'kernel_part_abort' } as ControlMessage))).toThrow(expect.objectContaining({ closeCode: 1007 }));
  });

  it('drops environment variables a stranger must not set', () => {
    expect(filterKernelEnv({ KERNEL_A: '1', LANG: 'C', LD_PRELOAD: '/evil.so', PATH: '/x', KERNEL_B: 3, 'BAD NAME': 'x' })).toEqual({ KERNEL_A: '1', LANG: 'C' });
  });

  it('binds the auth text to gateway and nonce', () => {
    expect(authText('g', 'n')).not.toBe(authText('g2', 'n'));
  });

  it('fuzz: mutated frames decode or throw ProtocolError', () => {
    const rand = prng(7);
    const seeds = [
      encodeControl(hello),
      encodeKernelFrame(randomUUID(), Buffer.from('x')),
      encodeCredit(randomUUID(), 5),
      partFrame(randomUUID(), 100, 40, randomBytes(rand, 60)),
      partFrame(randomUUID(), 1, 0, Buffer.from([7])),
    ];
    for (let i = 0; i < 20_000; i++) {
      try {
        decodeFrame(mutate(rand, seeds[i % seeds.length]!));
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
      }
    }
  });

  it('fuzz: random KERNEL PART frames decode consistently or throw ProtocolError (seeded)', () => {
    const rand = prng(0x0404);
    const max = 10_000;
    let decoded = 0;
    let rejected = 0;
    // Lengths and fields near the edges: header-only, total around the bound, offsets around total.
    const pick = (n: number): number => Math.floor(rand() * n);
    const u64 = (): bigint => {
      switch (pick(4)) {
        case 0:
          return BigInt(pick(64));
        case 1:
          return BigInt(pick(2 * max));
        case 2:
          return BigInt(max) + BigInt(pick(3)) - 1n;
        default:
          return (BigInt(pick(2 ** 32)) << 32n) | BigInt(pick(2 ** 32));
      }
    };
    for (let i = 0; i < 20_000; i++) {
      const len = pick(4) === 0 ? pick(KERNEL_PART_HEADER_BYTES + 1) : KERNEL_PART_HEADER_BYTES + pick(80);
      const f = randomBytes(rand, len);
      if (len > 0) f[0] = FrameKind.KernelPart;
      const total = u64();
      const offset = u64();
      if (len >= 25) f.writeBigUInt64LE(total, 17);
      if (len >= 33) f.writeBigUInt64LE(offset, 25);
      // Header and bytes given apart (as two WebSocket fragments) decode the same, or fail the same.
      const apart = (): unknown => decodeKernelPart(f.subarray(0, KERNEL_PART_HEADER_BYTES), f.subarray(KERNEL_PART_HEADER_BYTES), { maxBytes: max });
      try {
        const d = decodeFrame(f, { maxBytes: max });
        if (d.kind !== 'kernel-part') throw new Error(`decoded as ${d.kind}`);
        expect(apart()).toEqual(d);
        decoded++;
        expect(d.bytes.length).toBe(len - KERNEL_PART_HEADER_BYTES);
        expect(d.bytes.length).toBeGreaterThan(0);
        expect(BigInt(d.total)).toBe(total);
        expect(BigInt(d.offset)).toBe(offset);
        expect(d.offset + d.bytes.length).toBeLessThanOrEqual(d.total);
        expect(d.total).toBeLessThanOrEqual(max);
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
        expect(apart).toThrow(ProtocolError);
        rejected++;
      }
    }
    // The generator reaches both sides.
    expect(decoded).toBeGreaterThan(500);
    expect(rejected).toBeGreaterThan(500);
  });
});

function partFrame(kernelId: string, total: number, offset: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([encodeKernelPartHeader(uuidToBytes(kernelId), total, offset), bytes]);
}

describe('KERNEL PART frames', () => {
  const code = (closeCode: number) => expect.objectContaining({ name: 'ProtocolError', closeCode });

  it('round-trips header and bytes, the bytes as a view of the frame', () => {
    const rand = prng(11);
    for (const [total, offset, n] of [
      [1, 0, 1],
      [1000, 0, 1000],
      [1000, 0, 1],
      [1000, 999, 1],
      [1000, 200, 300],
      [DEFAULT_MAX_TUNNEL_FRAME, DEFAULT_MAX_TUNNEL_FRAME - 5, 5],
    ] as const) {
      const id = randomUUID();
      const bytes = randomBytes(rand, n);
      const header = encodeKernelPartHeader(uuidToBytes(id), total, offset);
      expect(header.length).toBe(KERNEL_PART_HEADER_BYTES);
      expect(header[0]).toBe(FrameKind.KernelPart);
      const frame = Buffer.concat([header, bytes]);
      const f = decodeFrame(frame);
      expect(f.kind).toBe('kernel-part');
      if (f.kind !== 'kernel-part') continue;
      expect(f.kernelId).toBe(id);
      expect(f.total).toBe(total);
      expect(f.offset).toBe(offset);
      expect(f.bytes.equals(bytes)).toBe(true);
      expect(f.bytes.buffer).toBe(frame.buffer);
      expect(f.bytes.byteOffset).toBe(frame.byteOffset + KERNEL_PART_HEADER_BYTES);
    }
  });

  it('writes the layout of docs/protocols.md: kind, id, u64le total, u64le offset', () => {
    const id = '00112233-4455-6677-8899-aabbccddeeff';
    const h = encodeKernelPartHeader(uuidToBytes(id), 0x0102030405, 0x0a0b);
    expect(h.toString('hex')).toBe('04' + '00112233445566778899aabbccddeeff' + '0504030201000000' + '0b0a000000000000');
  });

  it('decodes a Uint8Array that is not a Buffer', () => {
    const id = randomUUID();
    const b = partFrame(id, 10, 2, Buffer.from([1, 2, 3]));
    const u = new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
    const f = decodeFrame(u);
    expect(f).toMatchObject({ kind: 'kernel-part', kernelId: id, total: 10, offset: 2 });
    if (f.kind === 'kernel-part') expect([...f.bytes]).toEqual([1, 2, 3]);
  });

  it('rejects short frames and frames without bytes with 1007', () => {
    const full = partFrame(randomUUID(), 10, 0, Buffer.from([1]));
    for (let n = 1; n <= KERNEL_PART_HEADER_BYTES; n++) expect(() => decodeFrame(full.subarray(0, n))).toThrow(code(1007));
  });

  it('rejects a part that runs past its message with 1007', () => {
    const id = randomUUID();
    expect(() => decodeFrame(partFrame(id, 10, 8, Buffer.alloc(3)))).toThrow(code(1007));
    expect(() => decodeFrame(partFrame(id, 10, 10, Buffer.alloc(1)))).toThrow(code(1007));
    expect(() => decodeFrame(partFrame(id, 2, 0, Buffer.alloc(3)))).toThrow(code(1007));
    // An offset near 2^64 must not wrap around.
    const h = encodeKernelPartHeader(uuidToBytes(id), 10, 0);
    h.writeBigUInt64LE(2n ** 64n - 1n, 25);
    expect(() => decodeFrame(Buffer.concat([h, Buffer.alloc(1)]))).toThrow(code(1007));
    // Exactly up to the end is fine.
    expect(decodeFrame(partFrame(id, 10, 7, Buffer.alloc(3)))).toMatchObject({ kind: 'kernel-part', offset: 7, total: 10 });
  });

  it('decodes header and bytes given apart without copying the bytes, and refuses a header of another kind', () => {
    const id = randomUUID();
    const bytes = Buffer.from([1, 2, 3]);
    const f = decodeKernelPart(encodeKernelPartHeader(uuidToBytes(id), 10, 2), bytes);
    expect(f).toMatchObject({ kind: 'kernel-part', kernelId: id, total: 10, offset: 2 });
    expect(f.bytes).toBe(bytes);
    const other = encodeKernelPartHeader(uuidToBytes(id), 10, 2);
    other[0] = FrameKind.Kernel;
    expect(() => decodeKernelPart(other, bytes)).toThrow(code(1007));
  });

  it('rejects a total over the frame bound with 1009, and the frame itself over it', () => {
    const id = randomUUID();
    expect(() => decodeFrame(partFrame(id, DEFAULT_MAX_TUNNEL_FRAME + 1, 0, Buffer.alloc(1)))).toThrow(code(1009));
    expect(decodeFrame(partFrame(id, DEFAULT_MAX_TUNNEL_FRAME, 0, Buffer.alloc(1)))).toMatchObject({ total: DEFAULT_MAX_TUNNEL_FRAME });
    expect(() => decodeFrame(partFrame(id, 101, 0, Buffer.alloc(1)), { maxBytes: 100 })).toThrow(code(1009));
    expect(decodeFrame(partFrame(id, 100, 0, Buffer.alloc(1)), { maxBytes: 100 })).toMatchObject({ total: 100 });
    const h = encodeKernelPartHeader(uuidToBytes(id), 0, 0);
    h.writeBigUInt64LE(2n ** 64n - 1n, 17);
    expect(() => decodeFrame(Buffer.concat([h, Buffer.alloc(1)]))).toThrow(code(1009));
    // The frame's own length is checked before anything in it.
    expect(() => decodeFrame(partFrame(id, 1000, 0, Buffer.alloc(100)), { maxBytes: 100 })).toThrow(code(1009));
  });
});

describe('welcome features', () => {
  const welcome = { type: 'welcome', providerId: '0x' + 'ab'.repeat(20), initialCredit: 8 << 20 };
  const code1007 = expect.objectContaining({ name: 'ProtocolError', closeCode: 1007 });

  it('has no features key when the gateway names none', () => {
    const w = validateControl(welcome);
    expect(w).toEqual(welcome);
    expect(Object.keys(w)).not.toContain('features');
  });

  it('keeps the features this side knows and ignores the rest', () => {
    expect(validateControl({ ...welcome, features: ['kernel-parts', 'future-thing'] })).toEqual({ ...welcome, features: ['kernel-parts'] });
    expect(validateControl({ ...welcome, features: ['future-thing', 7, null, { x: 1 }] })).toEqual({ ...welcome, features: [] });
    expect(validateControl({ ...welcome, features: [] })).toEqual({ ...welcome, features: [] });
    expect(validateControl({ ...welcome, features: [...TUNNEL_FEATURES] })).toEqual({ ...welcome, features: [...TUNNEL_FEATURES] });
    // And through a frame, as the provider reads it.
    const f = decodeFrame(encodeControl({ ...welcome, features: ['kernel-parts'] } as ControlMessage));
    expect(f).toEqual({ kind: 'control', message: { ...welcome, features: ['kernel-parts'] } });
  });

  it('rejects features that are not an array, or more than 64 of them', () => {
    for (const bad of ['kernel-parts', null, 1, { 0: 'kernel-parts' }, true]) {
      expect(() => validateControl({ ...welcome, features: bad })).toThrow(code1007);
    }
    expect(validateControl({ ...welcome, features: Array.from({ length: 64 }, () => 'kernel-parts') })).toMatchObject({ type: 'welcome' });
    expect(() => validateControl({ ...welcome, features: Array.from({ length: 65 }, () => 'x') })).toThrow(code1007);
  });

  it('takes maxPartialBytes as an integer from 1 MiB to 1 TiB, and has no such key when absent', () => {
    expect(Object.keys(validateControl(welcome))).not.toContain('maxPartialBytes');
    expect(validateControl({ ...welcome, maxPartialBytes: 256 << 20 })).toEqual({ ...welcome, maxPartialBytes: 256 << 20 });
    expect(validateControl({ ...welcome, maxPartialBytes: 1 << 20 })).toEqual({ ...welcome, maxPartialBytes: 1 << 20 });
    for (const bad of [(1 << 20) - 1, 0, -1, 1.5, 2 ** 40 + 1, '268435456', null, Number.NaN, Infinity]) {
      expect(() => validateControl({ ...welcome, maxPartialBytes: bad }), String(bad)).toThrow(code1007);
    }
  });
});
