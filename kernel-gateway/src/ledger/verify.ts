// What the gateway checks on every usage receipt before it passes it on (docs/metering.md,
// "What the gateway checks"). Pure: the previous accepted receipt of the kernel comes in,
// a verdict goes out; ledger.ts does the storage.
import { getAddress } from 'ethers';
import {
  amountForEnergy,
  receiptCapMj,
  receiptTotalMj,
  recoverReceiptSigner,
  validateSignedReceipt,
  type SignedReceipt,
  type UsageReceipt,
} from '@kinesis/protocol/receipt';

export const REJECT_REASONS = [
  'malformed',
  'bad-signature',
  'wrong-provider',
  'wrong-kernel',
  'sequence',
  'overlap',
  'future',
  'cumulative-mismatch',
  'amount-mismatch',
  'price-mismatch',
  'over-cap',
  'cap-too-high',
  'method-mismatch',
  'out-of-range',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export interface ReceiptContext {
  /** The kernel the reply came from, as the gateway routed it (not as the receipt claims). */
  readonly kernelId: string;
  readonly sessionId?: string | null;
  /** The price the provider advertised for this kernel (token base units per kWh). */
  readonly expectedPricePerKwh: bigint;
  /** Highest power cap the provider's advertised hardware allows (mW); omitted: unchecked. */
  readonly maxPowerCapMw?: bigint | number;
  /** False when the provider advertised no GPU: an `nvml-*` method is then a lie. Default true. */
  readonly gpuMethodsAllowed?: boolean;
  /** Receipt arrival (Unix ms); default now. */
  readonly receivedAtMs?: number;
}

/** What the ledger keeps of a kernel's last accepted receipt. */
export interface PreviousReceipt {
  readonly seq: bigint;
  readonly toMs: bigint;
  readonly cumulativeEnergyMj: bigint;
  readonly cumulativeAmount: bigint;
  readonly pricePerKwh: bigint;
  readonly signature: string;
}

export type Verdict =
  | { readonly ok: true; readonly receipt: SignedReceipt; readonly duplicate: boolean }
  | { readonly ok: false; readonly reason: RejectReason; readonly detail: string; readonly receipt: SignedReceipt | null };

/** A provider's clock may run a little ahead of the gateway's. */
export const MAX_CLOCK_SKEW_MS = 60_000n;
/** Energies and times are kept as SQLite integers and JSON numbers: at most 2^53 − 1. */
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export function verifyReceiptAgainst(
  providerAddress: string,
  raw: unknown,
  ctx: ReceiptContext,
  prev: PreviousReceipt | null,
  chainId: bigint,
): Verdict {
  let receipt: SignedReceipt;
  try {
    receipt = validateSignedReceipt(raw);
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e);
    // The validator checks the amount too; name that case as the amount, not as garbage.
    return { ok: false, reason: /cumulativeAmount must be/.test(detail) ? 'amount-mismatch' : 'malformed', detail, receipt: null };
  }
  const m = receipt.message;
  const reject = (reason: RejectReason, detail: string): Verdict => ({ ok: false, reason, detail, receipt });
  let registered: string;
  try {
    registered = getAddress(providerAddress);
  } catch {
    return reject('wrong-provider', 'the provider has no valid registered address');
  }
  let signer: string;
  try {
    signer = recoverReceiptSigner(receipt, chainId);
  } catch (e) {
    return reject('bad-signature', e instanceof Error ? e.message : String(e));
  }
  if (signer !== registered) return reject('bad-signature', `signed by ${signer}, provider is ${registered}`);
  if (m.provider !== registered) return reject('wrong-provider', `receipt names ${m.provider}`);
  if (m.kernelId !== ctx.kernelId) return reject('wrong-kernel', `receipt is for kernel ${m.kernelId}`);

  for (const k of ['toMs', 'energyMj', 'idleEnergyMj', 'carriedMj', 'uncertaintyMj', 'cumulativeEnergyMj', 'powerCapMw'] as const) {
    if (BigInt(m[k]) > MAX_SAFE) return reject('out-of-range', `${k} is beyond 2^53`);
  }

  const seq = BigInt(m.seq);
  if (prev && seq === prev.seq && receipt.signature.toLowerCase() === prev.signature.toLowerCase()) {
    return { ok: true, receipt, duplicate: true }; // a replay after a reconnect: already recorded
  }
  const expectedSeq = prev ? prev.seq + 1n : 1n;
  if (seq !== expectedSeq) return reject('sequence', `seq ${seq}, expected ${expectedSeq}`);
  // Spans may leave gaps (unbilled time, e.g. a kernel re-attached after a restart) but never overlap.
  if (prev && BigInt(m.fromMs) < prev.toMs) return reject('overlap', `fromMs ${m.fromMs} is before the previous toMs ${prev.toMs}`);
  const now = BigInt(Math.floor(ctx.receivedAtMs ?? Date.now()));
  if (BigInt(m.toMs) > now + MAX_CLOCK_SKEW_MS) return reject('future', `toMs ${m.toMs} is ahead of the gateway's clock (${now})`);

  const price = BigInt(m.pricePerKwh);
  if (price !== ctx.expectedPricePerKwh) return reject('price-mismatch', `price ${price}, advertised ${ctx.expectedPricePerKwh}`);
  if (prev && price !== prev.pricePerKwh) return reject('price-mismatch', 'price changed within a kernel');

  const lines = receiptTotalMj(m);
  const expectedCum = (prev?.cumulativeEnergyMj ?? 0n) + lines;
  if (BigInt(m.cumulativeEnergyMj) !== expectedCum) {
    return reject('cumulative-mismatch', `cumulativeEnergyMj ${m.cumulativeEnergyMj}, previous + lines = ${expectedCum}`);
  }
  if (BigInt(m.cumulativeAmount) !== amountForEnergy(expectedCum, price)) return reject('amount-mismatch', 'cumulativeAmount is not the exact conversion');

  if (ctx.maxPowerCapMw !== undefined && BigInt(m.powerCapMw) > BigInt(ctx.maxPowerCapMw)) {
    return reject('cap-too-high', `powerCapMw ${m.powerCapMw} over the advertised ${ctx.maxPowerCapMw}`);
  }
  if (lines > receiptCapMj(m)) return reject('over-cap', `${lines} mJ over ${BigInt(m.toMs) - BigInt(m.fromMs)} ms exceeds ${m.powerCapMw} mW`);
  if (ctx.gpuMethodsAllowed === false && isGpuMethod(m)) return reject('method-mismatch', `method ${m.method} from a provider without a GPU`);
  return { ok: true, receipt, duplicate: false };
}

function isGpuMethod(m: UsageReceipt): boolean {
  return m.method.startsWith('nvml-') || m.device.startsWith('nvidia:');
}
