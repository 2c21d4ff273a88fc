// GET /api/usage: the ledger's accepted records and their totals.
//   ?kernel_id=…&session_id=…&provider=0x…&since=…&until=…&limit=…&offset=…&include_rejected=1
// `since` / `until` take Unix milliseconds or an ISO 8601 date; records are chosen by the
// end of their span (toMs), since ≤ toMs < until. Answers
//   { records: UsageRecord[], totals: UsageTotals, rejected?: RejectedRecord[] }
// Mounted under /api, so the gateway's token check applies.
import { ADDRESS_RE } from '@kinesis/protocol/validate';
import { badRequest } from '../http/errors.ts';
import { sendJson, type Route } from '../http/router.ts';
import type { Ledger, UsageFilter } from './ledger.ts';

const ID_RE = /^[\x21-\x7e]{1,256}$/;
const KNOWN = new Set(['kernel_id', 'session_id', 'provider', 'since', 'until', 'limit', 'offset', 'include_rejected', 'token']);

export function usageRoutes(ledger: Ledger): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/usage',
      handler: ({ res, url }) => {
        const q = url.searchParams;
        for (const k of q.keys()) if (!KNOWN.has(k)) throw badRequest(`unknown query parameter ${JSON.stringify(k.slice(0, 64))}`);
        const filter: { -readonly [K in keyof UsageFilter]: UsageFilter[K] } = {};
        const kernelId = id(q, 'kernel_id');
        const sessionId = id(q, 'session_id');
        const provider = q.get('provider');
        if (kernelId !== undefined) filter.kernelId = kernelId;
        if (sessionId !== undefined) filter.sessionId = sessionId;
        if (provider !== null) {
          if (!ADDRESS_RE.test(provider)) throw badRequest('provider must be a 0x-prefixed 20-byte address');
          filter.provider = provider;
        }
        const since = time(q, 'since');
        const until = time(q, 'until');
        if (since !== undefined) filter.sinceMs = since;
        if (until !== undefined) filter.untilMs = until;
        filter.limit = int(q, 'limit', 1, 10_000) ?? 1000;
        filter.offset = int(q, 'offset', 0, Number.MAX_SAFE_INTEGER) ?? 0;
        const body: Record<string, unknown> = { ...ledger.query(filter) };
        const inc = q.get('include_rejected');
        if (inc !== null && inc !== '0' && inc !== 'false') body.rejected = ledger.rejected(filter);
        sendJson(res, 200, body);
      },
    },
  ];
}

function id(q: URLSearchParams, name: string): string | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  if (!ID_RE.test(v)) throw badRequest(`${name} must be 1-256 printable characters`);
  return v;
}

function int(q: URLSearchParams, name: string, min: number, max: number): number | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  const n = Number(v);
  if (!/^\d{1,16}$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) throw badRequest(`${name} must be an integer in [${min}, ${max}]`);
  return n;
}

function time(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  if (/^\d{1,16}$/.test(v)) return Number(v);
  if (v.length <= 40) {
    const t = Date.parse(v);
    if (Number.isFinite(t)) return t;
  }
  throw badRequest(`${name} must be Unix milliseconds or an ISO 8601 date`);
}
