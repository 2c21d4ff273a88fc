import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from './errors.ts';
import { mutate, prng } from './testing/prng.ts';
import { authText, decodeFrame, encodeControl, encodeCredit, encodeKernelFrame, filterKernelEnv, type ControlMessage } from './tunnel.ts';

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
  });

  it('drops environment variables a stranger must not set', () => {
    expect(filterKernelEnv({ KERNEL_A: '1', LANG: 'C', LD_PRELOAD: '/evil.so', PATH: '/x', KERNEL_B: 3, 'BAD NAME': 'x' })).toEqual({ KERNEL_A: '1', LANG: 'C' });
  });

  it('binds the auth text to gateway and nonce', () => {
    expect(authText('g', 'n')).not.toBe(authText('g2', 'n'));
  });

  it('fuzz: mutated frames decode or throw ProtocolError', () => {
    const rand = prng(7);
    const seeds = [encodeControl(hello), encodeKernelFrame(randomUUID(), Buffer.from('x')), encodeCredit(randomUUID(), 5)];
    for (let i = 0; i < 20_000; i++) {
      try {
        decodeFrame(mutate(rand, seeds[i % 3]!));
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
      }
    }
  });
});
