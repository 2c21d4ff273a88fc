import { TypedDataEncoder, Wallet, getAddress, recoverAddress, Signature } from 'ethers';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../errors.ts';
import { prng } from '../testing/prng.ts';
import { compileStruct, domainSeparator } from './eip712.ts';
import { bytesToHex, checksumAddress, fastSigner, recoverAddressFast } from './secp256k1.ts';

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

  it('hashes repeated strings (the cached path) exactly as ethers does', () => {
    const rand = prng(55);
    const h = compileStruct('Thing', FIELDS);
    const pool = ['python3', 'estimate', 'cpu:Intel Xeon', '', 'ünïcødé ✓'];
    const domain = { chainId: 31337n };
    for (let i = 0; i < 300; i++) {
      const msg = { ...randomMessage(rand), kernelId: pool[Math.floor(rand() * pool.length)]! };
      expect(bytesToHex(h.digest(domainSeparator(domain), msg))).toBe(TypedDataEncoder.hash(domain, { Thing: FIELDS }, msg));
    }
  });

  it('checksums addresses as ethers getAddress does, and refuses a wrong mixed-case checksum', () => {
    const rand = prng(55);
    for (let i = 0; i < 300; i++) {
      const a = getAddress('0x' + Array.from({ length: 20 }, () => Math.floor(rand() * 256).toString(16).padStart(2, '0')).join(''));
      const lower = a.toLowerCase();
      const upper = '0x' + a.slice(2).toUpperCase();
      for (const form of [a, lower, upper]) {
        expect(checksumAddress(form)).toBe(getAddress(form));
        expect(checksumAddress(form)).toBe(a); // twice: the memo answers the same
      }
      // Flip the case of one letter of a checksummed address: both must refuse it.
      const letters = [...a.slice(2)].map((c, j) => (/[a-fA-F]/.test(c) ? j : -1)).filter((j) => j >= 0);
      if (letters.length < 2) continue;
      const j = letters[Math.floor(rand() * letters.length)]! + 2;
      const c = a[j]!;
      const bad = a.slice(0, j) + (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()) + a.slice(j + 1);
      // A flip that leaves the address all lower or all upper case is a valid unchecksummed form.
      if (bad.slice(2) === bad.slice(2).toLowerCase() || bad.slice(2) === bad.slice(2).toUpperCase()) continue;
      expect(() => getAddress(bad)).toThrow();
      expect(() => checksumAddress(bad)).toThrow(ProtocolError);
    }
    for (const bad of ['', '0x', '0x123', 'ab'.repeat(20), '0x' + 'g'.repeat(40), '0x' + 'a'.repeat(41)]) expect(() => checksumAddress(bad)).toThrow(ProtocolError);
  });

  it('encodes integers given as decimal strings and numbers (the Number fast path) as ethers does, and range-checks them', () => {
    const fields = [
      { name: 'a', type: 'uint256' },
      { name: 'b', type: 'uint64' },
      { name: 'c', type: 'uint8' },
    ];
    const h = compileStruct('Ints', fields);
    const sep = domainSeparator({ chainId: 1n });
    const rand = prng(9);
    const samples = ['0', '1', '255', '999999999999999', '1000000000000000', String(2 ** 53 - 1), String(2n ** 64n - 1n), String(2n ** 200n + 7n), '007'];
    for (let i = 0; i < 300; i++) {
      const a = i < samples.length ? samples[i]! : String(Math.floor(rand() * 10 ** (1 + Math.floor(rand() * 15))));
      const b = i % 2 ? Number(a.length <= 15 ? a : '5') : a.length <= 19 && BigInt(a) < 2n ** 64n ? a : '12';
      const c = String(Math.floor(rand() * 256));
      const msg = { a, b, c };
      expect(bytesToHex(h.digest(sep, msg)), a).toBe(TypedDataEncoder.hash({ chainId: 1n }, { Ints: fields }, { a: BigInt(a), b: BigInt(b), c: BigInt(c) }));
    }
    expect(() => h.digest(sep, { a: '1', b: '1', c: '256' })).toThrow(ProtocolError);
    expect(() => h.digest(sep, { a: '1', b: String(2n ** 64n), c: '1' })).toThrow(ProtocolError);
    expect(() => h.digest(sep, { a: '-1', b: '1', c: '1' })).toThrow(ProtocolError);
    expect(() => h.digest(sep, { a: 'x', b: '1', c: '1' })).toThrow(ProtocolError);
    expect(() => h.digest(sep, { a: 1.5, b: '1', c: '1' })).toThrow(ProtocolError);
  });
});
