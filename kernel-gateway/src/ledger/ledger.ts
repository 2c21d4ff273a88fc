// The gateway's usage ledger: every receipt a provider sends is verified (verify.ts) and
// recorded in SQLite (WAL) in the data dir, accepted or not. Energy in millijoules; money
// per record as the difference of cumulative amounts, so that records add up exactly to
// what the kernel's cumulative amount says (docs/metering.md, "Rounding").
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { checksumAddress } from '@kinesis/protocol/crypto/secp256k1';
import { KinesisError } from '@kinesis/protocol/errors';
import type { SignedReceipt } from '@kinesis/protocol/receipt';
import { verifyReceiptAgainst, type PreviousReceipt, type ReceiptContext, type RejectReason } from './verify.ts';

export interface LedgerOptions {
  readonly dataDir: string;
  /** The chain id in the receipts' EIP-712 domain. */
  readonly chainId: bigint | number;
  /** Default `ledger.sqlite`. */
  readonly filename?: string;
}

export interface UsageRecord {
  readonly kernelId: string;
  readonly sessionId: string | null;
  readonly provider: string;
  readonly seq: number;
  readonly msgId: string;
  readonly fromMs: number;
  readonly toMs: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly energyMj: number;
  readonly idleEnergyMj: number;
  readonly carriedMj: number;
  readonly uncertaintyMj: number;
  /** Energy of lost receipts before this one (its seq skipped them), from the cumulative figures. */
  readonly gapMj: number;
  readonly method: string;
  readonly quality: string;
  readonly split: string;
  readonly device: string;
  readonly powerCapMw: number;
  readonly pricePerKwh: string;
  readonly cumulativeEnergyMj: number;
  readonly cumulativeAmount: string;
  /** This record's share of money: cumulativeAmount minus the previous record's. */
  readonly amount: string;
  readonly receivedMs: number;
  readonly signature: string;
}

export interface RejectedRecord {
  readonly kernelId: string;
  readonly sessionId: string | null;
  readonly provider: string;
  readonly seq: string | null;
  readonly reason: RejectReason;
  readonly detail: string;
  readonly receivedMs: number;
}

export type RecordResult =
  | { readonly ok: true; readonly duplicate: boolean; readonly record: UsageRecord }
  | { readonly ok: false; readonly reason: RejectReason; readonly detail: string };

export interface UsageFilter {
  readonly kernelId?: string;
  readonly sessionId?: string;
  readonly provider?: string;
  /** Records whose span ends at or after this (Unix ms). */
  readonly sinceMs?: number;
  /** Records whose span ends before this (Unix ms). */
  readonly untilMs?: number;
  readonly limit?: number;
  readonly offset?: number;
}

export interface UsageTotals {
  readonly count: number;
  readonly energyMj: number;
  readonly idleEnergyMj: number;
  readonly carriedMj: number;
  /** Energy of receipts that never arrived, carried by later receipts' cumulative figures. */
  readonly gapMj: number;
  /** energyMj + idleEnergyMj + carriedMj + gapMj: what the amount pays for. */
  readonly totalEnergyMj: number;
  /** Sum of the records' amounts (token base units, decimal string). */
  readonly amount: string;
}

export class LedgerError extends KinesisError {
  override name = 'LedgerError';
}

/** Bytes of a rejected receipt's JSON kept for inspection. */
const MAX_RAW_KEPT = 8192;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS receipts (
  id INTEGER PRIMARY KEY,
  kernel_id TEXT NOT NULL, session_id TEXT, provider TEXT NOT NULL,
  seq INTEGER NOT NULL, msg_id TEXT NOT NULL,
  from_ms INTEGER NOT NULL, to_ms INTEGER NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
  energy_mj INTEGER NOT NULL, idle_mj INTEGER NOT NULL, carried_mj INTEGER NOT NULL, uncertainty_mj INTEGER NOT NULL,
  gap_mj INTEGER NOT NULL DEFAULT 0,
  method TEXT NOT NULL, quality TEXT NOT NULL, split TEXT NOT NULL, device TEXT NOT NULL,
  power_cap_mw INTEGER NOT NULL, price_per_kwh TEXT NOT NULL,
  cumulative_energy_mj INTEGER NOT NULL, cumulative_amount TEXT NOT NULL, amount TEXT NOT NULL,
  received_ms INTEGER NOT NULL, signature TEXT NOT NULL,
  UNIQUE (kernel_id, seq)
);
CREATE INDEX IF NOT EXISTS receipts_session ON receipts (session_id, to_ms);
CREATE INDEX IF NOT EXISTS receipts_provider ON receipts (provider, to_ms);
CREATE INDEX IF NOT EXISTS receipts_time ON receipts (to_ms);
CREATE TABLE IF NOT EXISTS rejected_receipts (
  id INTEGER PRIMARY KEY,
  kernel_id TEXT NOT NULL, session_id TEXT, provider TEXT NOT NULL, seq TEXT,
  reason TEXT NOT NULL, detail TEXT NOT NULL, raw TEXT NOT NULL, received_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rejected_kernel ON rejected_receipts (kernel_id, received_ms);
`;

interface ReceiptRow {
  kernel_id: string; session_id: string | null; provider: string; seq: number; msg_id: string;
  from_ms: number; to_ms: number; start_ms: number; end_ms: number;
  energy_mj: number; idle_mj: number; carried_mj: number; uncertainty_mj: number; gap_mj: number;
  method: string; quality: string; split: string; device: string; power_cap_mw: number; price_per_kwh: string;
  cumulative_energy_mj: number; cumulative_amount: string; amount: string; received_ms: number; signature: string;
}

export class Ledger {
  readonly #db: Database.Database;
  readonly #chainId: bigint;
  #closed = false;

  constructor(opts: LedgerOptions) {
    this.#chainId = BigInt(opts.chainId);
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    try {
      this.#db = new Database(join(opts.dataDir, opts.filename ?? 'ledger.sqlite'));
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma('synchronous = NORMAL'); // WAL + NORMAL: durable across a process crash
      this.#db.exec(SCHEMA);
      // Ledgers written before gap_mj existed.
      const cols = this.#stmt('PRAGMA table_info(receipts)').all() as Array<{ name: string }>;
      if (!cols.some((c) => c.name === 'gap_mj')) this.#db.exec('ALTER TABLE receipts ADD COLUMN gap_mj INTEGER NOT NULL DEFAULT 0');
    } catch (cause) {
      throw new LedgerError('cannot open the usage ledger', { details: opts.dataDir, cause });
    }
  }

  /**
   * Verifies a receipt that `providerAddress` sent for `ctx.kernelId` and records it.
   * Accepted: stored (a byte-identical replay is acknowledged as a duplicate, not stored
   * twice). Rejected: stored in rejected_receipts with the reason, and returned.
   */
  verifyAndRecord(providerAddress: string, signed: unknown, ctx: ReceiptContext): RecordResult {
    this.#open();
    const now = Math.floor(ctx.receivedAtMs ?? Date.now());
    const run = this.#db.transaction((): RecordResult => {
      const prevRow = this.#stmt('SELECT seq, to_ms, cumulative_energy_mj, cumulative_amount, price_per_kwh, signature, provider FROM receipts WHERE kernel_id = ? ORDER BY seq DESC LIMIT 1')
        .get(ctx.kernelId) as Pick<ReceiptRow, 'seq' | 'to_ms' | 'cumulative_energy_mj' | 'cumulative_amount' | 'price_per_kwh' | 'signature' | 'provider'> | undefined;
      const prev: PreviousReceipt | null = prevRow
        ? {
            seq: BigInt(prevRow.seq),
            toMs: BigInt(prevRow.to_ms),
            cumulativeEnergyMj: BigInt(prevRow.cumulative_energy_mj),
            cumulativeAmount: BigInt(prevRow.cumulative_amount),
            pricePerKwh: BigInt(prevRow.price_per_kwh),
            signature: prevRow.signature,
            provider: prevRow.provider,
          }
        : null;
      const bySeq = this.#stmt('SELECT signature FROM receipts WHERE kernel_id = ? AND seq = ?').pluck();
      const v = verifyReceiptAgainst(providerAddress, signed, { ...ctx, receivedAtMs: now }, prev, this.#chainId, (q) =>
        q <= BigInt(Number.MAX_SAFE_INTEGER) ? (bySeq.get(ctx.kernelId, Number(q)) as string | undefined) : undefined,
      );
      if (!v.ok) {
        this.#recordRejected(providerAddress, signed, ctx, v.reason, v.detail, now, v.receipt);
        return { ok: false, reason: v.reason, detail: v.detail };
      }
      if (v.duplicate) {
        const row = this.#stmt('SELECT * FROM receipts WHERE kernel_id = ? AND seq = ?').get(ctx.kernelId, Number(v.receipt.message.seq)) as ReceiptRow;
        return { ok: true, duplicate: true, record: toRecord(row) };
      }
      const m = v.receipt.message;
      const amount = BigInt(m.cumulativeAmount) - (prev?.cumulativeAmount ?? 0n);
      const row: ReceiptRow = {
        kernel_id: m.kernelId, session_id: ctx.sessionId ?? null, provider: m.provider, seq: Number(m.seq), msg_id: m.msgId,
        from_ms: Number(m.fromMs), to_ms: Number(m.toMs), start_ms: Number(m.startMs), end_ms: Number(m.endMs),
        energy_mj: Number(m.energyMj), idle_mj: Number(m.idleEnergyMj), carried_mj: Number(m.carriedMj), uncertainty_mj: Number(m.uncertaintyMj), gap_mj: Number(v.gapMj ?? 0n),
        method: m.method, quality: m.quality, split: m.split, device: m.device, power_cap_mw: Number(m.powerCapMw), price_per_kwh: m.pricePerKwh,
        cumulative_energy_mj: Number(m.cumulativeEnergyMj), cumulative_amount: m.cumulativeAmount, amount: amount.toString(),
        received_ms: now, signature: v.receipt.signature,
      };
      this.#stmt(
          `INSERT INTO receipts (kernel_id, session_id, provider, seq, msg_id, from_ms, to_ms, start_ms, end_ms, energy_mj, idle_mj, carried_mj,
            uncertainty_mj, gap_mj, method, quality, split, device, power_cap_mw, price_per_kwh, cumulative_energy_mj, cumulative_amount, amount, received_ms, signature)
           VALUES (@kernel_id, @session_id, @provider, @seq, @msg_id, @from_ms, @to_ms, @start_ms, @end_ms, @energy_mj, @idle_mj, @carried_mj,
            @uncertainty_mj, @gap_mj, @method, @quality, @split, @device, @power_cap_mw, @price_per_kwh, @cumulative_energy_mj, @cumulative_amount, @amount, @received_ms, @signature)`,
        )
        .run(row);
      return { ok: true, duplicate: false, record: toRecord(row) };
    });
    return run.immediate();
  }

  /** Accepted records matching the filter (oldest first) and totals over all of them. */
  query(filter: UsageFilter = {}): { records: UsageRecord[]; totals: UsageTotals } {
    this.#open();
    const { where, params } = whereClause(filter);
    const limit = Math.min(Math.max(filter.limit ?? 1000, 0), 10_000);
    const rows = this.#stmt(`SELECT * FROM receipts ${where} ORDER BY to_ms, kernel_id, seq LIMIT ? OFFSET ?`)
      .all(...params, limit, Math.max(filter.offset ?? 0, 0)) as ReceiptRow[];
    return { records: rows.map(toRecord), totals: this.totals(filter) };
  }

  totals(filter: UsageFilter = {}): UsageTotals {
    this.#open();
    const { where, params } = whereClause(filter);
    const agg = this.#stmt(`SELECT COUNT(*) AS n, COALESCE(SUM(energy_mj), 0) AS e, COALESCE(SUM(idle_mj), 0) AS i, COALESCE(SUM(carried_mj), 0) AS c, COALESCE(SUM(gap_mj), 0) AS g FROM receipts ${where}`)
      .get(...params) as { n: number; e: number; i: number; c: number; g: number };
    // Amounts are uint256 decimal strings: summed exactly in BigInt, not by SQLite.
    let amount = 0n;
    for (const r of this.#stmt(`SELECT amount FROM receipts ${where}`).pluck().iterate(...params) as Iterable<string>) amount += BigInt(r);
    return { count: agg.n, energyMj: agg.e, idleEnergyMj: agg.i, carriedMj: agg.c, gapMj: agg.g, totalEnergyMj: agg.e + agg.i + agg.c + agg.g, amount: amount.toString() };
  }

  rejected(filter: Pick<UsageFilter, 'kernelId' | 'provider' | 'sessionId' | 'limit'> = {}): RejectedRecord[] {
    this.#open();
    const { where, params } = whereClause({ ...filter }, 'received_ms');
    const rows = this.#stmt(`SELECT kernel_id, session_id, provider, seq, reason, detail, received_ms FROM rejected_receipts ${where} ORDER BY id LIMIT ?`)
      .all(...params, Math.min(Math.max(filter.limit ?? 1000, 0), 10_000)) as Array<{ kernel_id: string; session_id: string | null; provider: string; seq: string | null; reason: RejectReason; detail: string; received_ms: number }>;
    return rows.map((r) => ({ kernelId: r.kernel_id, sessionId: r.session_id, provider: r.provider, seq: r.seq, reason: r.reason, detail: r.detail, receivedMs: r.received_ms }));
  }

  /** The kernel's last accepted record, or null. */
  last(kernelId: string): UsageRecord | null {
    this.#open();
    const row = this.#stmt('SELECT * FROM receipts WHERE kernel_id = ? ORDER BY seq DESC LIMIT 1').get(kernelId) as ReceiptRow | undefined;
    return row ? toRecord(row) : null;
  }

  /** Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  #recordRejected(provider: string, signed: unknown, ctx: ReceiptContext, reason: RejectReason, detail: string, now: number, receipt: SignedReceipt | null): void {
    let raw: string;
    try {
      raw = JSON.stringify(signed, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? 'undefined';
    } catch {
      raw = '"unserializable"';
    }
    this.#stmt('INSERT INTO rejected_receipts (kernel_id, session_id, provider, seq, reason, detail, raw, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(ctx.kernelId, ctx.sessionId ?? null, normalizeAddress(provider), receipt?.message.seq ?? null, reason, detail.slice(0, 1000), raw.slice(0, MAX_RAW_KEPT), now);
  }

  #open(): void {
    if (this.#closed) throw new LedgerError('the usage ledger is closed');
  }

  // Prepared once per distinct SQL text: preparing is most of a receipt's cost otherwise,
  // and it runs right after every execute_reply. The texts are a small fixed set (the
  // filters' WHERE clauses vary over a handful of shapes); the bound keeps it so.
  readonly #stmts = new Map<string, Database.Statement>();

  #stmt(sql: string): Database.Statement {
    let st = this.#stmts.get(sql);
    if (!st) {
      st = this.#db.prepare(sql);
      if (this.#stmts.size < 256) this.#stmts.set(sql, st);
    }
    return st;
  }
}

export function openLedger(opts: LedgerOptions): Ledger {
  return new Ledger(opts);
}

function normalizeAddress(a: string): string {
  try {
    return checksumAddress(a);
  } catch {
    return a.slice(0, 64);
  }
}

function whereClause(f: UsageFilter, timeColumn = 'to_ms'): { where: string; params: Array<string | number> } {
  const conds: string[] = [];
  const params: Array<string | number> = [];
  if (f.kernelId !== undefined) (conds.push('kernel_id = ?'), params.push(f.kernelId));
  if (f.sessionId !== undefined) (conds.push('session_id = ?'), params.push(f.sessionId));
  if (f.provider !== undefined) (conds.push('provider = ?'), params.push(normalizeAddress(f.provider)));
  if (f.sinceMs !== undefined) (conds.push(`${timeColumn} >= ?`), params.push(f.sinceMs));
  if (f.untilMs !== undefined) (conds.push(`${timeColumn} < ?`), params.push(f.untilMs));
  return { where: conds.length ? `WHERE ${conds.join(' AND ')}` : '', params };
}

function toRecord(r: ReceiptRow): UsageRecord {
  return {
    kernelId: r.kernel_id, sessionId: r.session_id, provider: r.provider, seq: r.seq, msgId: r.msg_id,
    fromMs: r.from_ms, toMs: r.to_ms, startMs: r.start_ms, endMs: r.end_ms,
    energyMj: r.energy_mj, idleEnergyMj: r.idle_mj, carriedMj: r.carried_mj, uncertaintyMj: r.uncertainty_mj, gapMj: r.gap_mj,
    method: r.method, quality: r.quality, split: r.split, device: r.device, powerCapMw: r.power_cap_mw, pricePerKwh: r.price_per_kwh,
    cumulativeEnergyMj: r.cumulative_energy_mj, cumulativeAmount: r.cumulative_amount, amount: r.amount, receivedMs: r.received_ms, signature: r.signature,
  };
}
