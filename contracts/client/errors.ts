// One base error for the contracts package (after viem's BaseError): a short message for
// people, optional details, and the underlying cause. RPC URLs in messages are stripped of
// credentials (user:pass@ and query strings often carry API keys).

export interface ContractsErrorOptions {
  readonly details?: string;
  readonly cause?: unknown;
}

export class ContractsError extends Error {
  override name = 'ContractsError';
  readonly shortMessage: string;
  readonly details: string | undefined;

  constructor(shortMessage: string, options: ContractsErrorOptions = {}) {
    const msg = options.details ? `${shortMessage}\n\nDetails: ${options.details}` : shortMessage;
    super(msg, options.cause === undefined ? undefined : { cause: options.cause });
    this.shortMessage = shortMessage;
    this.details = options.details;
  }
}

/** A caller passed something malformed (an address, an amount, a file). */
export class InvalidArgumentError extends ContractsError {
  override name = 'InvalidArgumentError';
  readonly argument: string;
  constructor(argument: string, problem: string, options: ContractsErrorOptions = {}) {
    super(`invalid ${argument}: ${problem}`, options);
    this.argument = argument;
  }
}

/** The escrow reverted with one of its custom errors (see IKinesisEscrow.sol). */
export class EscrowRevertError extends ContractsError {
  override name = 'EscrowRevertError';
  /** Custom error name, e.g. "CapExceeded". */
  readonly errorName: string;
  /** Decoded arguments by name, e.g. { sessionId, cap, cumulativeAmount }. */
  readonly args: Readonly<Record<string, unknown>>;
  constructor(errorName: string, args: Record<string, unknown>, options: ContractsErrorOptions = {}) {
    super(`escrow rejected the call: ${errorName}(${formatArgs(args)})`, options);
    this.errorName = errorName;
    this.args = args;
  }
}

/** A voucher failed off-chain verification; `reason` says which check. */
export type VoucherProblem =
  | 'bad-signature'
  | 'malleable-signature'
  | 'unauthorized-signer'
  | 'wrong-session'
  | 'not-increasing'
  | 'over-cap'
  | 'energy-decreased'
  | 'session-closed'
  | 'out-of-range';

export class VoucherError extends ContractsError {
  override name = 'VoucherError';
  readonly reason: VoucherProblem;
  constructor(reason: VoucherProblem, message: string, options: ContractsErrorOptions = {}) {
    super(`voucher rejected (${reason}): ${message}`, options);
    this.reason = reason;
  }
}

export class SessionNotFoundError extends ContractsError {
  override name = 'SessionNotFoundError';
  readonly sessionId: string;
  constructor(sessionId: string) {
    super(`no session ${sessionId} in this escrow`);
    this.sessionId = sessionId;
  }
}

/** The chain or RPC endpoint failed (unreachable, wrong chain, out of gas, nonce...). */
export class ChainError extends ContractsError {
  override name = 'ChainError';
}

/** Starting or stopping a local anvil chain failed. */
export class LocalChainError extends ContractsError {
  override name = 'LocalChainError';
}

function formatArgs(args: Record<string, unknown>): string {
  return Object.entries(args)
    .map(([k, v]) => `${k}=${typeof v === 'bigint' ? v.toString() : String(v)}`)
    .join(', ');
}

/** Removes credentials and query strings from a URL before it goes into a message or log. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = '***';
      u.password = '';
    }
    if (u.search) u.search = '?***';
    // Path segments that look like API keys (long opaque tokens, e.g. Infura/Alchemy).
    u.pathname = u.pathname.replace(/\/[A-Za-z0-9_-]{24,}/g, '/***');
    return u.toString();
  } catch {
    return '<unparseable url>';
  }
}
