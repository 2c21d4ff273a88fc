// Validators for request bodies. Each throws a 400 HttpError naming the field.
import { filterKernelEnv } from '@kinesis/protocol/tunnel';
import { ADDRESS_RE, isRecord } from '@kinesis/protocol/validate';
import type { PlacementConstraints } from '../scheduler.ts';
import { badRequest } from './errors.ts';

export function objectBody(v: unknown, what: string): Record<string, unknown> {
  if (v === undefined) return {};
  if (!isRecord(v)) throw badRequest(`${what} must be a JSON object`);
  return v;
}

export function optString(o: Record<string, unknown>, field: string, max = 1024): string | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw badRequest(`${field} must be a string`);
  if (v.length > max) throw badRequest(`${field} is longer than ${max} characters`);
  return v;
}

export function kernelEnv(o: Record<string, unknown>): Record<string, string> {
  const env = o['env'];
  if (env === undefined || env === null) return {};
  if (!isRecord(env)) throw badRequest('env must be an object of strings');
  // Only KERNEL_* and the allow-list reach a kernel (protocol/src/tunnel.ts ENV_ALLOW_LIST).
  return filterKernelEnv(env);
}

/** `kinesis: { provider?, maxPricePerKwh?, minGpuMemoryMiB? }` in a POST /api/kernels body (or a session's `kernel`). */
export function placementConstraints(o: Record<string, unknown>): PlacementConstraints {
  const k = o['kinesis'];
  if (k === undefined || k === null) return {};
  if (!isRecord(k)) throw badRequest('kinesis must be an object');
  const out: { provider?: string; maxPricePerKwh?: bigint; minGpuMemoryMiB?: number } = {};
  const provider = k['provider'];
  if (provider !== undefined) {
    if (typeof provider !== 'string' || !ADDRESS_RE.test(provider)) throw badRequest('kinesis.provider must be a provider address (0x + 40 hex digits)');
    out.provider = provider;
  }
  const price = k['maxPricePerKwh'];
  if (price !== undefined) {
    if (typeof price === 'string' && /^[0-9]{1,78}$/.test(price)) out.maxPricePerKwh = BigInt(price);
    else if (typeof price === 'number' && Number.isSafeInteger(price) && price >= 0) out.maxPricePerKwh = BigInt(price);
    else throw badRequest('kinesis.maxPricePerKwh must be a non-negative integer (base units per kWh), as a string or a number');
  }
  const mem = k['minGpuMemoryMiB'];
  if (mem !== undefined) {
    if (typeof mem !== 'number' || !Number.isSafeInteger(mem) || mem < 0) throw badRequest('kinesis.minGpuMemoryMiB must be a non-negative integer');
    out.minGpuMemoryMiB = mem;
  }
  return out;
}
