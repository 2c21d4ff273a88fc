// Small structural checks for values that crossed a trust boundary. Each throws a
// ProtocolError (1007) naming the field, so a peer learns what it got wrong.
import { malformed } from './errors.ts';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function record(v: unknown, field: string): Record<string, unknown> {
  if (!isRecord(v)) throw malformed(`${field} must be an object`);
  return v;
}

export function str(v: unknown, field: string, opts: { max?: number; min?: number; re?: RegExp } = {}): string {
  if (typeof v !== 'string') throw malformed(`${field} must be a string`);
  if (v.length > (opts.max ?? 4096)) throw malformed(`${field} is too long`);
  if (v.length < (opts.min ?? 0)) throw malformed(`${field} is too short`);
  if (opts.re && !opts.re.test(v)) throw malformed(`${field} has an invalid format`);
  return v;
}

export function optStr(v: unknown, field: string, opts: { max?: number; re?: RegExp } = {}): string | undefined {
  return v === undefined ? undefined : str(v, field, opts);
}

export function int(v: unknown, field: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw malformed(`${field} must be an integer in [${min}, ${max}]`);
  }
  return v;
}

export function num(v: unknown, field: string, min = -Infinity, max = Infinity): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw malformed(`${field} must be a number in [${min}, ${max}]`);
  return v;
}

export function bool(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') throw malformed(`${field} must be a boolean`);
  return v;
}

export function arr(v: unknown, field: string, max = 1024): unknown[] {
  if (!Array.isArray(v)) throw malformed(`${field} must be an array`);
  if (v.length > max) throw malformed(`${field} has more than ${max} entries`);
  return v;
}

export function oneOf<T extends string>(v: unknown, field: string, values: readonly T[]): T {
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
    throw malformed(`${field} must be one of ${values.join(', ')}`);
  }
  return v as T;
}

export function stringMap(v: unknown, field: string, maxEntries = 256): Record<string, string> {
  const r = record(v, field);
  const keys = Object.keys(r);
  if (keys.length > maxEntries) throw malformed(`${field} has too many entries`);
  const out: Record<string, string> = {};
  for (const k of keys) out[k] = str(r[k], `${field}.${k}`, { max: 65536 });
  return out;
}

/** Decimal string of a non-negative integer (how amounts and prices travel in JSON). */
export function uintString(v: unknown, field: string): string {
  return str(v, field, { max: 78, min: 1, re: /^(0|[1-9][0-9]*)$/ });
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/;
export const HEX_RE = /^0x[0-9a-fA-F]*$/;
