// What the gateway checks on every usage receipt before it passes it on (docs/metering.md,
// "What the gateway checks"). Pure: the previous accepted receipt of the kernel comes in,
// a verdict goes out; ledger.ts does the storage.
import { checksumAddress } from '@kinesis/protocol/crypto/secp256k1';
import {
  CAP_SLACK_MJ,
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
  /** The address that signed it: a kernel's receipts all come from one provider. */
  readonly provider?: string;
}

export type Verdict =
  | {
      readonly ok: true;
      readonly receipt: SignedReceipt;
      readonly duplicate: boolean;
      /** Energy of receipts that never arrived, carried by this one's cumulative figure (mJ). */
      readonly gapMj?: bigint;
    }
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
  /** The signature of the kernel's accepted receipt with this seq, if any (replay detection). */
  storedSignature: (seq: bigint) => string | undefined = (q) => (prev && q === prev.seq ? prev.signature : undefined),
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
    registered = checksumAddress(providerAddress);
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
  if (prev?.provider !== undefined && prev.provider !== registered) return reject('wrong-provider', `kernel ${m.kernelId} is billed by ${prev.provider}`);
  if (m.kernelId !== ctx.kernelId) return reject('wrong-kernel', `receipt is for kernel ${m.kernelId}`);

  for (const k of ['toMs', 'energyMj', 'idleEnergyMj', 'carriedMj', 'uncertaintyMj', 'cumulativeEnergyMj', 'powerCapMw'] as const) {
    if (BigInt(m[k]) > MAX_SAFE) return reject('out-of-range', `${k} is beyond 2^53`);
  }

  const seq = BigInt(m.seq);
  // A resend after a reconnect. The signature was just verified over this very message, from
  // the provider's key, and equals the stored one: it is the stored receipt, field for field.
  const stored = prev && seq <= prev.seq ? storedSignature(seq) : undefined;
  if (stored !== undefined && stored.toLowerCase() === receipt.signature.toLowerCase()) return { ok: true, receipt, duplicate: true };
  const expectedSeq = prev ? prev.seq + 1n : 1n;
  // Lower: a replay or a stale copy. Higher: receipts were lost on the way (a dropped reply,
  // a rejected receipt); allowed after the first one, see the gap check below.
  if (seq < expectedSeq || (seq > expectedSeq && !prev)) return reject('sequence', `seq ${seq}, expected ${expectedSeq}`);
  // Spans may leave gaps (unbilled time, e.g. a kernel re-attached after a restart) but never overlap.
  if (prev && BigInt(m.fromMs) < prev.toMs) return reject('overlap', `fromMs ${m.fromMs} is before the previous toMs ${prev.toMs}`);
  const now = BigInt(Math.floor(ctx.receivedAtMs ?? Date.now()));
  if (BigInt(m.toMs) > now + MAX_CLOCK_SKEW_MS) return reject('future', `toMs ${m.toMs} is ahead of the gateway's clock (${now})`);

  const price = BigInt(m.pricePerKwh);
  if (price !== ctx.expectedPricePerKwh) return reject('price-mismatch', `price ${price}, advertised ${ctx.expectedPricePerKwh}`);
  if (prev && price !== prev.pricePerKwh) return reject('price-mismatch', 'price changed within a kernel');

  if (ctx.maxPowerCapMw !== undefined && BigInt(m.powerCapMw) > BigInt(ctx.maxPowerCapMw)) {
    return reject('cap-too-high', `powerCapMw ${m.powerCapMw} over the advertised ${ctx.maxPowerCapMw}`);
  }

  const lines = receiptTotalMj(m);
  const cum = BigInt(m.cumulativeEnergyMj);
  const expectedCum = (prev?.cumulativeEnergyMj ?? 0n) + lines;
  let gapMj = 0n;
  if (seq === expectedSeq) {
    if (cum !== expectedCum) return reject('cumulative-mismatch', `cumulativeEnergyMj ${cum}, previous + lines = ${expectedCum}`);
  } else {
    // Missing receipts: their energy is in this cumulative figure and nowhere else. It is
    // accepted only if it fits the power cap over the time no accepted receipt covers, so
    // a provider cannot skip a number to bill energy it could not have measured.
    gapMj = cum - expectedCum;
    const uncovered = BigInt(m.fromMs) - prev!.toMs;
    const room = (BigInt(m.powerCapMw) * uncovered) / 1000n + CAP_SLACK_MJ * (seq - expectedSeq + 1n);
    if (gapMj < 0n) return reject('cumulative-mismatch', `cumulativeEnergyMj ${cum} is below previous + lines = ${expectedCum}`);
    if (gapMj > room) return reject('over-cap', `${gapMj} mJ of missing receipts over ${uncovered} ms exceeds ${m.powerCapMw} mW`);
  }
  if (BigInt(m.cumulativeAmount) !== amountForEnergy(cum, price)) return reject('amount-mismatch', 'cumulativeAmount is not the exact conversion');

  if (lines > receiptCapMj(m)) return reject('over-cap', `${lines} mJ over ${BigInt(m.toMs) - BigInt(m.fromMs)} ms exceeds ${m.powerCapMw} mW`);
  if (ctx.gpuMethodsAllowed === false && isGpuMethod(m)) return reject('method-mismatch', `method ${m.method} from a provider without a GPU`);
  return { ok: true, receipt, duplicate: false, gapMj };
}

function isGpuMethod(m: UsageReceipt): boolean {
  return m.method.startsWith('nvml-') || m.method.startsWith('amdgpu-') || m.device.startsWith('nvidia:') || m.device.startsWith('amd:');
}
