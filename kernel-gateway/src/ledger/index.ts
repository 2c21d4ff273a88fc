// The usage ledger: receipt verification, SQLite store, GET /api/usage.
export { openLedger, Ledger, LedgerError } from './ledger.ts';
export type { LedgerOptions, RecordResult, RejectedRecord, UsageFilter, UsageRecord, UsageTotals } from './ledger.ts';
export { verifyReceiptAgainst, REJECT_REASONS, MAX_CLOCK_SKEW_MS } from './verify.ts';
export type { ReceiptContext, RejectReason, PreviousReceipt, Verdict } from './verify.ts';
export { usageRoutes } from './routes.ts';
