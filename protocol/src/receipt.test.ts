import { describe, expect, it } from 'vitest';
import { Wallet, verifyTypedData } from 'ethers';
import {
  MJ_PER_KWH,
  RECEIPT_TYPES,
  amountForEnergy,
  parseSignedReceipt,
  receiptDomain,
  signReceipt,
  validateReceipt,
  verifyReceipt,
  type UsageReceipt,
} from './receipt.ts';
import { ProtocolError } from './errors.ts';
import { prng as rng } from './testing/prng.ts';

const wallet = new Wallet('0x' + '11'.repeat(32));
const CHAIN = 31337n;

function sample(over: Partial<UsageReceipt> = {}): UsageReceipt {
  const cum = over.cumulativeEnergyMj ?? '5000';
  const price = over.pricePerKwh ?? '250000';
  return {
    provider: wallet.address,
    kernelId: '6f1c4a52-59d3-4a53-9d55-3d0a0e8b9a10',
    msgId: 'a1b2c3',
    seq: '1',
    fromMs: '1700000000000',
    toMs: '1700000001000',
    startMs: '1700000000100',
    endMs: '1700000000900',
    energyMj: '4000',
    idleEnergyMj: '1000',
    carriedMj: '0',
    uncertaintyMj: '250',
    method: 'estimate',
    quality: 'estimated',
    split: 'exclusive',
    device: 'cpu:Test CPU',
    powerCapMw: '65000',
    pricePerKwh: price,
    cumulativeEnergyMj: cum,
    cumulativeAmount: amountForEnergy(BigInt(cum), BigInt(price)).toString(),
    ...over,
  };
}


describe('amountForEnergy', () => {
  it('is floor(mJ × price / 3.6e9)', () => {
    expect(MJ_PER_KWH).toBe(3_600_000_000n);
    expect(amountForEnergy(3_600_000_000n, 7n)).toBe(7n); // exactly 1 kWh
    expect(amountForEnergy(3_599_999_999n, 7n)).toBe(6n); // rounds down
    expect(amountForEnergy(0n, 10n ** 30n)).toBe(0n);
    expect(() => amountForEnergy(-1n, 1n)).toThrow();
  });

  it('summing per-step amounts drifts, the cumulative conversion never does (seeded)', () => {
    const r = rng(42);
    let cum = 0n;
    let summedDeltas = 0n;
    const price = 123_456_789n;
    for (let i = 0; i < 2000; i++) {
      const before = amountForEnergy(cum, price);
      cum += BigInt(Math.floor(r() * 5_000_000));
      const after = amountForEnergy(cum, price);
      summedDeltas += after - before; // telescopes: the ledger's per-record amounts
      expect(after).toBe((cum * price) / MJ_PER_KWH);
      expect(after * MJ_PER_KWH <= cum * price).toBe(true);
      expect((after + 1n) * MJ_PER_KWH > cum * price).toBe(true);
    }
    expect(summedDeltas).toBe(amountForEnergy(cum, price));
  });
});

describe('sign and verify', () => {
  it('signs EIP-712 typed data that ethers verifyTypedData accepts', async () => {
    const msg = sample();
    const signed = signReceipt(wallet, msg, CHAIN);
    expect(verifyTypedData(receiptDomain(CHAIN), RECEIPT_TYPES, msg, signed.signature)).toBe(wallet.address);
    // Same bytes as the async ethers API.
    expect(await wallet.signTypedData(receiptDomain(CHAIN), RECEIPT_TYPES, msg)).toBe(signed.signature);
    expect(verifyReceipt(JSON.parse(JSON.stringify(signed)), CHAIN).signer).toBe(wallet.address);
  });

  it('a different chain id or a changed field recovers a different signer', () => {
    const signed = signReceipt(wallet, sample(), CHAIN);
    expect(verifyReceipt(signed, 1n).signer).not.toBe(wallet.address);
    const tampered = { ...signed, message: { ...signed.message, energyMj: '4001', cumulativeEnergyMj: '5001' } };
    expect(verifyReceipt(tampered, CHAIN).signer).not.toBe(wallet.address);
  });

  it('refuses to sign for another provider address', () => {
    const other = Wallet.createRandom();
    expect(() => signReceipt(wallet, sample({ provider: other.address }), CHAIN)).toThrow(/not the signer/);
  });
});

describe('validateReceipt', () => {
  const bad: Array<[string, unknown]> = [
    ['not an object', 'x'],
    ['extra field', { ...sample(), extra: 1 }],
    ['missing field', (({ seq: _s, ...rest }) => rest)(sample())],
    ['number instead of string', { ...sample(), energyMj: 4000 }],
    ['leading zero', sample({ energyMj: '04000' })],
    ['negative', sample({ idleEnergyMj: '-1' })],
    ['uint64 overflow', sample({ seq: (1n << 64n).toString() })],
    ['seq 0', sample({ seq: '0' })],
    ['from after to', sample({ fromMs: '1700000002000' })],
    ['start after end', sample({ startMs: '1700000000901' })],
    ['unknown method', { ...sample(), method: 'vibes' }],
    ['unknown quality', { ...sample(), quality: 'great' }],
    ['bad address', sample({ provider: '0x1234' })],
    ['bad checksum', sample({ provider: wallet.address.replace(/[a-f]/, (c) => c.toUpperCase()) })],
    ['kernel id with space', sample({ kernelId: 'a b' })],
    ['empty device', sample({ device: '' })],
    ['lines over cumulative', sample({ energyMj: '5001' })],
    ['amount off by one', { ...sample(), cumulativeAmount: (BigInt(sample().cumulativeAmount) + 1n).toString() }],
  ];
  it.each(bad)('rejects %s with a ProtocolError', (_name, v) => {
    expect(() => validateReceipt(v)).toThrow(ProtocolError);
  });

  it('accepts a lowercase address and returns it checksummed', () => {
    expect(validateReceipt(sample({ provider: wallet.address.toLowerCase() })).provider).toBe(wallet.address);
  });

  it('parseSignedReceipt refuses oversize text before parsing and bad signatures', () => {
    expect(() => parseSignedReceipt(' '.repeat(9000))).toThrow(/over the limit/);
    expect(() => parseSignedReceipt('{')).toThrow(ProtocolError);
    const signed = signReceipt(wallet, sample(), CHAIN);
    expect(() => parseSignedReceipt(JSON.stringify({ ...signed, signature: '0x1234' }))).toThrow(ProtocolError);
    expect(parseSignedReceipt(JSON.stringify(signed))).toEqual(signed);
  });

  it('survives seeded random garbage without anything but ProtocolError', () => {
    const r = rng(7);
    const base = sample() as unknown as Record<string, unknown>;
    const junk = [null, 1, -1, 1.5, '', 'x', '1e3', [], {}, true, '0x', '99999999999999999999999999999999999999999999999999999999999999999999999999999999'];
    for (let i = 0; i < 500; i++) {
      const copy: Record<string, unknown> = { ...base };
      const keys = Object.keys(copy);
      const k = keys[Math.floor(r() * keys.length)]!;
      copy[k] = junk[Math.floor(r() * junk.length)];
      try {
        validateReceipt(copy);
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
      }
    }
  });
});

describe('receiptDigest', () => {
  it('equals ethers TypedDataEncoder.hash for several chains', async () => {
    const { TypedDataEncoder } = await import('ethers');
    const { receiptDigest } = await import('./receipt.ts');
    for (const chain of [1n, 31337n, 8453n]) {
      expect(receiptDigest(sample(), chain)).toBe(TypedDataEncoder.hash(receiptDomain(chain), RECEIPT_TYPES, sample()));
    }
  });
});

describe('validateUsageNotice', () => {
  it('accepts a receipt with or without the gateway verdict, and nothing else', async () => {
    const { validateUsageNotice } = await import('./receipt.ts');
    const receipt = signReceipt(wallet, sample(), CHAIN);
    expect(validateUsageNotice({ receipt })).toEqual({ receipt });
    const v = { receipt, verdict: { accepted: false, reason: 'sequence', detail: 'seq 3, expected 2' } };
    expect(validateUsageNotice(JSON.parse(JSON.stringify(v)))).toEqual(v);
    for (const bad of [{}, { receipt, extra: 1 }, { receipt, verdict: { accepted: 'yes' } }, { receipt, verdict: { accepted: true, x: 1 } }, { receipt: { ...receipt, signature: '0x' } }]) {
      expect(() => validateUsageNotice(bad)).toThrow(ProtocolError);
    }
  });
});
