import { Signature, Wallet } from 'ethers';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, VoucherError } from './errors.ts';
import { parseDeployment, parseSignedVoucher, parseUint, parseVoucher, ZERO_ADDRESS, type Session } from './types.ts';
import { canonicalSignature, escrowDomain, hashVoucher, recoverVoucherSigner, signVoucher, verifyVoucher } from './voucher.ts';
import { prng as rng } from '@kinesis/protocol/testing/prng';

const randBig = (r: () => number, bits: number): bigint => {
  let x = 0n;
  for (let i = 0; i < bits; i += 16) x = (x << 16n) | BigInt(Math.floor(r() * 65536));
  return x & ((1n << BigInt(bits)) - 1n);
};

const payer = new Wallet('0x' + '11'.repeat(32));
const sessionKey = new Wallet('0x' + '22'.repeat(32));
const stranger = new Wallet('0x' + '33'.repeat(32));
const domain = escrowDomain(31337, '0x5FbDB2315678afecb367f032d93F642f64180aa3');
const sessionId = payer.address.toLowerCase() + '000000000000000000000001';

function session(over: Partial<Session> = {}): Session {
  return {
    sessionId,
    payer: payer.address,
    provider: '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC',
    signer: sessionKey.address,
    cap: 1_000_000n,
    claimed: 0n,
    claimedEnergyMj: 0n,
    expiresAt: 2_000_000_000n,
    closed: false,
    ...over,
  };
}

describe('EIP-712 vouchers', () => {
  it('sign → recover round-trips for random vouchers and keys (seed 42)', async () => {
    const r = rng(42);
    for (let i = 0; i < 25; i++) {
      // 250 bits + 1: never zero, always below the curve order.
      const key = new Wallet('0x' + (randBig(r, 250) + 1n).toString(16).padStart(64, '0'));
      const v = { sessionId: '0x' + randBig(r, 256).toString(16).padStart(64, '0'), cumulativeAmount: randBig(r, 100), cumulativeEnergyMj: randBig(r, 90) };
      const signed = await signVoucher(key, domain, v);
      expect(recoverVoucherSigner(domain, signed.voucher, signed.signature)).toBe(key.address);
      // A different domain (chain or contract) recovers someone else.
      expect(recoverVoucherSigner(escrowDomain(1, domain.verifyingContract), signed.voucher, signed.signature)).not.toBe(key.address);
    }
  });

  it('matches the EIP-712 digest computed by hand', () => {
    // keccak256("\x19\x01" ‖ domainSeparator ‖ hashStruct(voucher)), see EIP-712 §"Specification".
    const v = { sessionId, cumulativeAmount: 5n, cumulativeEnergyMj: 7n };
    const h = hashVoucher(domain, v);
    expect(h).toMatch(/^0x[0-9a-f]{64}$/);
    expect(hashVoucher(domain, { ...v, cumulativeEnergyMj: 8n })).not.toBe(h);
  });

  it('verifies against a session like the contract would', async () => {
    const signed = await signVoucher(sessionKey, domain, { sessionId, cumulativeAmount: 400n, cumulativeEnergyMj: 10n });
    expect(verifyVoucher(domain, session(), signed)).toEqual({ signer: sessionKey.address, increment: 400n });
    expect(verifyVoucher(domain, session({ claimed: 100n }), signed).increment).toBe(300n);
    const byPayer = await signVoucher(payer, domain, signed.voucher);
    expect(verifyVoucher(domain, session(), byPayer).signer).toBe(payer.address);

    const reason = (s: Session, sv = signed): string => {
      try {
        verifyVoucher(domain, s, sv);
      } catch (e) {
        expect(e).toBeInstanceOf(VoucherError);
        return (e as VoucherError).reason;
      }
      return 'accepted';
    };
    expect(reason(session({ claimed: 400n }))).toBe('not-increasing');
    expect(reason(session({ cap: 399n }))).toBe('over-cap');
    expect(reason(session({ claimedEnergyMj: 11n }))).toBe('energy-decreased');
    expect(reason(session({ closed: true }))).toBe('session-closed');
    expect(reason(session({ sessionId: sessionId.replace(/1$/, '2') }))).toBe('wrong-session');
    expect(reason(session({ signer: ZERO_ADDRESS }))).toBe('unauthorized-signer');
    expect(reason(session(), await signVoucher(stranger, domain, signed.voucher))).toBe('unauthorized-signer');
  });

  it('rejects the malleable twin and malformed signatures', async () => {
    const signed = await signVoucher(sessionKey, domain, { sessionId, cumulativeAmount: 1n, cumulativeEnergyMj: 1n });
    const sig = Signature.from(signed.signature);
    const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
    const highS = '0x' + (n - BigInt(sig.s)).toString(16).padStart(64, '0');
    const twin = sig.r + highS.slice(2) + (sig.v === 27 ? '1c' : '1b');
    expect(() => recoverVoucherSigner(domain, signed.voucher, twin)).toThrow(/malleable/);
    // What a sloppy wallet might return is rewritten into the one form the escrow accepts.
    expect(canonicalSignature(twin)).toBe(signed.signature);
    const vLow = signed.signature.slice(0, 130) + (sig.v === 27 ? '00' : '01');
    expect(canonicalSignature(vLow)).toBe(signed.signature);
    expect(() => recoverVoucherSigner(domain, signed.voucher, signed.signature.slice(0, 130))).toThrow(VoucherError);
    expect(() => recoverVoucherSigner(domain, signed.voucher, signed.signature.slice(0, 130) + '00')).toThrow(/v must be 27 or 28/);
  });

  it('refuses to sign what the escrow could never accept', async () => {
    await expect(signVoucher(sessionKey, domain, { sessionId, cumulativeAmount: 1n, cumulativeEnergyMj: 1n << 96n })).rejects.toThrow(/96-bit/);
    await expect(signVoucher(sessionKey, domain, { sessionId: '0x12', cumulativeAmount: 1n, cumulativeEnergyMj: 1n })).rejects.toThrow(InvalidArgumentError);
  });
});

describe('validators', () => {
  it('parse vouchers from JSON and reject junk', () => {
    const ok = parseSignedVoucher({ voucher: { sessionId, cumulativeAmount: '12', cumulativeEnergyMj: 3 }, signature: '0x' + 'ab'.repeat(65) });
    expect(ok.voucher.cumulativeAmount).toBe(12n);
    for (const bad of [null, [], 'x', { sessionId }, { sessionId, cumulativeAmount: -1, cumulativeEnergyMj: 0 }, { sessionId, cumulativeAmount: 1.5, cumulativeEnergyMj: 0 }, { sessionId: 'x'.repeat(10_000), cumulativeAmount: 1, cumulativeEnergyMj: 0 }]) {
      expect(() => parseVoucher(bad)).toThrow(InvalidArgumentError);
    }
    expect(() => parseUint('x', '1'.repeat(80))).toThrow(InvalidArgumentError);
    expect(() => parseUint('x', 2n ** 256n)).toThrow(/outside/);
  });

  it('parse deployment files strictly', () => {
    const d = {
      format: 'kinesis-deployment/1', chainId: 31337, escrow: '0x5FbDB2315678afecb367f032d93F642f64180aa3', token: '0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512',
      tokenSymbol: 'KUSD', tokenDecimals: 6, closeGrace: 3600, deployer: '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266', blockNumber: 2, deployedAt: new Date(0).toISOString(), testToken: true,
    };
    expect(parseDeployment(d)).toEqual(d);
    expect(() => parseDeployment({ ...d, format: 'other' })).toThrow(/format/);
    expect(() => parseDeployment({ ...d, escrow: '0x5fbDB2315678afecb367f032d93F642f64180aa3' })).toThrow(/checksum/);
    expect(() => parseDeployment({ ...d, tokenDecimals: 300 })).toThrow(/tokenDecimals/);
  });
});
