import { describe, expect, it } from 'vitest';
import { costOf, formatAmount, formatCost, formatEnergy, isMeasured, parseReceipt } from './receipts.ts';

const good = { kinesis: { receipt: { message: { energyMj: 1500, idleEnergyMj: 20, method: 'nvml-counter', quality: 'measured', device: 'NVIDIA H100', pricePerKwh: '250000', cumulativeEnergyMj: 4500, cumulativeAmount: '313' }, signature: '0xabc' } } };

describe('receipts', () => {
  it('parses a receipt and formats it', () => {
    const r = parseReceipt(good)!;
    expect(r.energyMj).toBe(1500);
    expect(r.pricePerKwh).toBe(250000n);
    expect(r.cumulativeAmount).toBe(313n);
    expect(isMeasured(r)).toBe(true);
    expect(isMeasured({ ...r, quality: 'estimated' })).toBe(false);
    expect(formatEnergy(1500)).toBe('1.50 J');
    expect(formatEnergy(12)).toBe('12 mJ');
    expect(formatEnergy(7_200_000)).toBe('2.000 Wh');
    expect(formatAmount(313n)).toBe('0.000313');
    expect(formatAmount(2_500_000n)).toBe('2.50');
    // 1 kWh at 250000 units/kWh costs 250000 units; 1500 mJ costs 1500*250000/3.6e9 ≈ 0.104 units
    expect(costOf(3_600_000_000, 250000n)).toBe(250000);
    expect(costOf(1500, 250000n)).toBeCloseTo(0.1042, 4);
    expect(formatCost(costOf(1500, 250000n))).toBe('0.00000010');
    expect(formatCost(250000)).toBe('0.2500');
    expect(formatCost(0)).toBe('0');
  });

  it.each([
    undefined, null, {}, { kinesis: {} }, { kinesis: { receipt: 'x' } },
    { kinesis: { receipt: { message: { ...good.kinesis.receipt.message, energyMj: -1 } } } },
    { kinesis: { receipt: { message: { ...good.kinesis.receipt.message, pricePerKwh: '1e9' } } } },
    { kinesis: { receipt: { message: { ...good.kinesis.receipt.message, cumulativeAmount: 1.5 } } } },
    { kinesis: { receipt: { message: { ...good.kinesis.receipt.message, method: 7 } } } },
  ])('ignores a missing or malformed receipt %#', (m) => {
    expect(parseReceipt(m)).toBeUndefined();
  });
});

describe('gateway verdicts', () => {
  it('keeps well-formed verdicts and drops anything else', async () => {
    const { parseVerdict, cellVerdict } = await import('./receipts.ts');
    expect(parseVerdict({ accepted: true })).toEqual({ accepted: true });
    expect(parseVerdict({ accepted: false, reason: 'bad-signature', detail: 'x' })).toEqual({ accepted: false, reason: 'bad-signature' });
    for (const bad of [undefined, null, 'yes', { accepted: 'true' }, { reason: 'x' }]) expect(parseVerdict(bad)).toBeUndefined();
    expect(cellVerdict({ kinesis: { receipt: {}, verdict: { accepted: true } } })).toEqual({ accepted: true });
    expect(cellVerdict({})).toBeUndefined();
  });
});
