// Energy receipts, as the provider signs them and the gateway forwards them in
// execute_reply metadata at `metadata.kinesis.receipt = { message, signature }`.
// They come from a machine the user does not control: every field is checked and
// anything malformed is dropped (shown as "no receipt"), never trusted or thrown.
// Amounts are in the payment token's base units (6 decimals), as decimal strings
// or safe integers; energy in millijoules.

export interface Receipt {
  readonly energyMj: number;
  readonly idleEnergyMj: number;
  /** How the energy was obtained, e.g. "nvml-counter", "rapl", "estimate". */
  readonly method: string;
  /** "measured" or "estimated" (or a provider's finer label). */
  readonly quality: string;
  readonly device: string;
  /** Token base units per kWh. */
  readonly pricePerKwh: bigint;
  readonly cumulativeEnergyMj: number;
  /** Token base units. */
  readonly cumulativeAmount: bigint;
  readonly signature: string;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : typeof v === 'string' && /^\d+(\.\d+)?$/.test(v) ? Number(v) : undefined);
const big = (v: unknown): bigint | undefined => {
  if (typeof v === 'bigint') return v >= 0n ? v : undefined;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^\d{1,78}$/.test(v)) return BigInt(v);
  return undefined;
};
const str = (v: unknown, max = 200): string | undefined => (typeof v === 'string' && v.length <= max ? v : undefined);

/** Extracts a receipt from execute_reply (or saved cell) metadata; undefined if absent or malformed. */
export function parseReceipt(metadata: unknown): Receipt | undefined {
  const r = (metadata as { kinesis?: { receipt?: unknown } } | undefined)?.kinesis?.receipt as { message?: Record<string, unknown>; signature?: unknown } | undefined;
  const m = r?.message;
  if (!m || typeof m !== 'object') return undefined;
  const energyMj = num(m.energyMj);
  const cumulativeEnergyMj = num(m.cumulativeEnergyMj);
  const pricePerKwh = big(m.pricePerKwh);
  const cumulativeAmount = big(m.cumulativeAmount);
  const method = str(m.method);
  const quality = str(m.quality);
  if (energyMj === undefined || cumulativeEnergyMj === undefined || pricePerKwh === undefined || cumulativeAmount === undefined || !method || !quality) return undefined;
  return {
    energyMj,
    idleEnergyMj: num(m.idleEnergyMj) ?? 0,
    method,
    quality,
    device: str(m.device) ?? 'unknown device',
    pricePerKwh,
    cumulativeEnergyMj,
    cumulativeAmount,
    signature: str(r?.signature, 1000) ?? '',
  };
}

/** The receipt's JSON as stored in cell metadata (bigints as decimal strings). */
export function receiptMetadata(metadata: unknown): { receipt: unknown } | undefined {
  const r = (metadata as { kinesis?: { receipt?: unknown } } | undefined)?.kinesis?.receipt;
  if (!parseReceipt(metadata)) return undefined;
  return { receipt: JSON.parse(JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))) as unknown };
}

/**
 * The gateway's verdict on a receipt: it verifies each one (signature from the provider's
 * registered address, sequence, cumulative figures, price, power cap) right after relaying
 * the reply, and says so in a `kinesis_usage` iopub message; the IDE keeps it beside the
 * receipt in the cell's metadata at `kinesis.verdict`.
 */
export interface Verdict {
  readonly accepted: boolean;
  readonly reason?: string;
}

export function parseVerdict(v: unknown): Verdict | undefined {
  const o = v as { accepted?: unknown; reason?: unknown } | undefined;
  if (!o || typeof o !== 'object' || typeof o.accepted !== 'boolean') return undefined;
  const reason = str(o.reason, 64);
  return reason === undefined ? { accepted: o.accepted } : { accepted: o.accepted, reason };
}

/** The verdict stored in a cell's metadata, if any. */
export const cellVerdict = (metadata: unknown): Verdict | undefined => parseVerdict((metadata as { kinesis?: { verdict?: unknown } } | undefined)?.kinesis?.verdict);

export const isMeasured = (r: Receipt): boolean => !/estimat/i.test(r.quality) && !/estimat/i.test(r.method);

/** Energy for people: mJ below 1 J, then J, then Wh. */
export function formatEnergy(mj: number): string {
  if (mj < 1000) return `${mj.toFixed(0)} mJ`;
  const j = mj / 1000;
  if (j < 3600) return `${j < 10 ? j.toFixed(2) : j.toFixed(1)} J`;
  return `${(j / 3600).toFixed(3)} Wh`;
}

/** Token base units (6 decimals) as a decimal string, trailing zeros trimmed but at least 2 places. */
export function formatAmount(units: bigint, decimals = 6): string {
  const neg = units < 0n;
  const abs = neg ? -units : units;
  const scale = 10n ** BigInt(decimals);
  const whole = abs / scale;
  let frac = (abs % scale).toString().padStart(decimals, '0').replace(/0+$/, '');
  if (frac.length < 2) frac = frac.padEnd(2, '0');
  return `${neg ? '-' : ''}${whole}.${frac}`;
}

/**
 * Cost of `energyMj` at `pricePerKwh`, in (fractional) base units (1 kWh = 3.6e9 mJ).
 * For showing one cell only: a single cell often costs less than one base unit, and
 * what is paid is computed from the receipts' cumulative amounts, never from these.
 */
export function costOf(energyMj: number, pricePerKwh: bigint): number {
  return (energyMj * Number(pricePerKwh)) / 3.6e9;
}

/** A fractional amount of base units as tokens, with two significant digits when tiny. */
export function formatCost(units: number, decimals = 6): string {
  const tokens = units / 10 ** decimals;
  if (tokens === 0) return '0';
  if (tokens >= 0.01) return tokens.toFixed(4);
  const digits = Math.min(20, Math.max(0, 1 - Math.floor(Math.log10(tokens))));
  return tokens.toFixed(digits);
}
