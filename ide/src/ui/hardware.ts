// Kinesis kernelspecs carry the hardware on offer under `spec.metadata.kinesis`
// ({ provider, gpu, memoryMiB, pricePerKwh, latencyMs }); a plain Jupyter server has
// none of it. This reads it defensively: every field optional, wrong types ignored.
import type { KernelSpec } from '@jupyterlab/services';
import { formatAmount } from '../kernel/receipts.ts';

export interface Hardware {
  readonly provider?: string;
  readonly gpu?: string;
  readonly memoryMiB?: number;
  readonly pricePerKwh?: bigint;
  readonly latencyMs?: number;
}

export function hardwareOf(spec: KernelSpec.ISpecModel | undefined): Hardware | undefined {
  const k = (spec?.metadata as { kinesis?: unknown } | undefined)?.kinesis as Record<string, unknown> | undefined;
  if (!k || typeof k !== 'object') return undefined;
  const s = (v: unknown): string | undefined => (typeof v === 'string' && v.length < 200 ? v : undefined);
  const n = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined);
  let price: bigint | undefined;
  if (typeof k.pricePerKwh === 'string' && /^\d{1,40}$/.test(k.pricePerKwh)) price = BigInt(k.pricePerKwh);
  else if (typeof k.pricePerKwh === 'number' && Number.isSafeInteger(k.pricePerKwh) && k.pricePerKwh >= 0) price = BigInt(k.pricePerKwh);
  const hw: Hardware = {
    ...(s(k.provider) ? { provider: s(k.provider) } : {}),
    ...(s(k.gpu) ? { gpu: s(k.gpu) } : {}),
    ...(n(k.memoryMiB) !== undefined ? { memoryMiB: n(k.memoryMiB) } : {}),
    ...(price !== undefined ? { pricePerKwh: price } : {}),
    ...(n(k.latencyMs) !== undefined ? { latencyMs: n(k.latencyMs) } : {}),
  };
  return hw;
}

export function describeHardware(hw: Hardware | undefined): string {
  if (!hw) return '';
  const parts: string[] = [];
  parts.push(hw.gpu ?? 'CPU');
  if (hw.memoryMiB !== undefined) parts.push(`${(hw.memoryMiB / 1024).toFixed(hw.memoryMiB >= 10240 ? 0 : 1)} GiB`);
  if (hw.pricePerKwh !== undefined) parts.push(`${formatAmount(hw.pricePerKwh)}/kWh`);
  if (hw.latencyMs !== undefined) parts.push(`${Math.round(hw.latencyMs)} ms`);
  if (hw.provider) parts.push(`provider ${hw.provider.length > 14 ? `${hw.provider.slice(0, 8)}…${hw.provider.slice(-4)}` : hw.provider}`);
  return parts.join(' · ');
}
