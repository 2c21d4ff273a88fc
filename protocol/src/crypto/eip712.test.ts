import { TypedDataEncoder, Wallet, recoverAddress, Signature } from 'ethers';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../errors.ts';
import { prng } from '../testing/prng.ts';
import { compileStruct, domainSeparator } from './eip712.ts';
import { bytesToHex, fastSigner, recoverAddressFast } from './secp256k1.ts';

const FIELDS = [
  { name: 'provider', type: 'address' },
  { name: 'kernelId', type: 'string' },
  { name: 'seq', type: 'uint64' },
  { name: 'energyMj', type: 'uint256' },
  { name: 'ok', type: 'bool' },
  { name: 'id', type: 'bytes32' },
];

function randomMessage(rand: () => number): Record<string, unknown> {
  const hex = (n: number): string => '0x' + Array.from({ length: n }, () => Math.floor(rand() * 256).toString(16).padStart(2, '0')).join('');
  return {
    provider: Wallet.createRandom().address,
    kernelId: 'k-' + String.fromCodePoint(...Array.from({ length: Math.floor(rand() * 20) }, () => 32 + Math.floor(rand() * 3000))),
    seq: BigInt(Math.floor(rand() * 2 ** 53)),
    energyMj: BigInt(hex(Math.floor(1 + rand() * 31))),
    ok: rand() < 0.5,
    id: hex(32),
  };
}

describe('fast EIP-712 and secp256k1', () => {
  it('hashes exactly as ethers does (seeded random messages and domains)', () => {
    const rand = prng(712);
    const h = compileStruct('Thing', FIELDS);
    for (let i = 0; i < 200; i++) {
      const domain = { name: 'KinesisReceipt', version: String(i % 3), chainId: BigInt(1 + Math.floor(rand() * 1e9)), ...(i % 2 ? { verifyingContract: Wallet.createRandom().address } : {}) };
      const msg = randomMessage(rand);
      expect(bytesToHex(h.digest(domainSeparator(domain), msg))).toBe(TypedDataEncoder.hash(domain, { Thing: FIELDS }, msg));
    }
  });

  it('signs as ethers signs, and recovers what ethers recovers', () => {
    const rand = prng(1);
    for (let i = 0; i < 50; i++) {
      const w = Wallet.createRandom();
      const s = fastSigner(w.privateKey);
      expect(s.address).toBe(w.address);
      const digest = compileStruct('Thing', FIELDS).digest(domainSeparator({ chainId: 1n }), randomMessage(rand));
      const sig = s.sign(digest);
      expect(sig).toBe(w.signingKey.sign(digest).serialized); // RFC 6979: deterministic, same bytes
      expect(recoverAddressFast(digest, sig)).toBe(w.address);
      expect(recoverAddress(digest, sig)).toBe(w.address);
    }
  });

  it('rejects malleable (high-s), bad-v and malformed signatures', () => {
    const w = Wallet.createRandom();
    const digest = new Uint8Array(32).fill(7);
    const sig = Signature.from(w.signingKey.sign(digest).serialized);
    const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
    const highS = '0x' + sig.r.slice(2) + (n - BigInt(sig.s)).toString(16).padStart(64, '0') + (sig.v === 27 ? '1c' : '1b');
    expect(() => recoverAddressFast(digest, highS)).toThrow(ProtocolError);
    expect(() => recoverAddressFast(digest, sig.serialized.slice(0, -2) + '05')).toThrow(ProtocolError);
    expect(() => recoverAddressFast(digest, '0x1234')).toThrow(ProtocolError);
    expect(() => recoverAddressFast(digest, '0x' + '00'.repeat(65))).toThrow(ProtocolError);
  });
});
