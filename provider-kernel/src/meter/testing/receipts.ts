// Shared by the meter's tests: what a receipt should hold for a board at constant power.
import type { SignedReceipt } from '@kinesis/protocol/receipt';

/**
 * mJ a constant `mw` board delivers over the part of the execution window the receipt
 * could measure: from its start to the last sample (toMs). Timing-robust on a loaded machine.
 */
export function measuredPart(r: SignedReceipt, mw: number): number {
  const m = r.message;
  const ms = Math.max(0, Math.min(Number(m.toMs), Number(m.endMs)) - Math.max(Number(m.startMs), Number(m.fromMs)));
  return (mw * ms) / 1000;
}
