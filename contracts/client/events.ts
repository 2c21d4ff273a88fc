// Escrow events as typed values, queried by block range or followed by polling eth_getLogs.
// Polling (not eth_subscribe / filters) works against every RPC endpoint, survives endpoint
// restarts, and never skips a block: each poll resumes at the block after the last one read.
import { Interface, type Log, type Provider } from 'ethers';
import { KinesisEscrowAbi } from './artifacts/abi.ts';
import { InvalidArgumentError } from './errors.ts';
import { toContractsError } from './revert.ts';
import { parseAddress } from './types.ts';

const iface = new Interface(KinesisEscrowAbi as never);

interface EventBase {
  readonly blockNumber: number;
  readonly transactionHash: string;
  readonly logIndex: number;
}

export type EscrowEvent =
  | (EventBase & { readonly type: 'Deposited'; readonly payer: string; readonly from: string; readonly amount: bigint })
  | (EventBase & { readonly type: 'Withdrawn'; readonly payer: string; readonly amount: bigint })
  | (EventBase & {
      readonly type: 'SessionOpened';
      readonly sessionId: string;
      readonly payer: string;
      readonly provider: string;
      readonly signer: string;
      readonly cap: bigint;
      readonly expiresAt: bigint;
    })
  | (EventBase & { readonly type: 'SessionToppedUp'; readonly sessionId: string; readonly amount: bigint; readonly newCap: bigint; readonly newExpiresAt: bigint })
  | (EventBase & {
      readonly type: 'Claimed';
      readonly sessionId: string;
      readonly provider: string;
      readonly amount: bigint;
      readonly cumulativeAmount: bigint;
      readonly cumulativeEnergyMj: bigint;
    })
  | (EventBase & { readonly type: 'SessionClosed'; readonly sessionId: string; readonly closedBy: string; readonly claimed: bigint; readonly refunded: bigint });

export type EscrowEventType = EscrowEvent['type'];

/** Decodes one log of the escrow; null for logs that are not escrow events. */
export function decodeEscrowLog(log: Log): EscrowEvent | null {
  let parsed;
  try {
    parsed = iface.parseLog({ topics: [...log.topics], data: log.data });
  } catch {
    return null;
  }
  if (!parsed) return null;
  const base: EventBase = { blockNumber: log.blockNumber, transactionHash: log.transactionHash, logIndex: log.index };
  const a = parsed.args;
  const id = (x: unknown): string => String(x).toLowerCase();
  switch (parsed.name) {
    case 'Deposited':
      return { ...base, type: 'Deposited', payer: a[0], from: a[1], amount: a[2] };
    case 'Withdrawn':
      return { ...base, type: 'Withdrawn', payer: a[0], amount: a[1] };
    case 'SessionOpened':
      return { ...base, type: 'SessionOpened', sessionId: id(a[0]), payer: a[1], provider: a[2], signer: a[3], cap: a[4], expiresAt: a[5] };
    case 'SessionToppedUp':
      return { ...base, type: 'SessionToppedUp', sessionId: id(a[0]), amount: a[1], newCap: a[2], newExpiresAt: a[3] };
    case 'Claimed':
      return { ...base, type: 'Claimed', sessionId: id(a[0]), provider: a[1], amount: a[2], cumulativeAmount: a[3], cumulativeEnergyMj: a[4] };
    case 'SessionClosed':
      return { ...base, type: 'SessionClosed', sessionId: id(a[0]), closedBy: a[1], claimed: a[2], refunded: a[3] };
    default:
      return null;
  }
}

/** Many RPC providers cap eth_getLogs ranges; stay under the common 2,000-10,000 limits. */
const MAX_RANGE = 2_000;

export async function queryEscrowEvents(
  provider: Provider,
  escrow: string,
  range: { fromBlock: number; toBlock?: number },
): Promise<EscrowEvent[]> {
  const address = parseAddress('escrow', escrow);
  if (!Number.isSafeInteger(range.fromBlock) || range.fromBlock < 0) throw new InvalidArgumentError('fromBlock', 'expected a block number');
  let toBlock: number;
  try {
    toBlock = range.toBlock ?? (await provider.getBlockNumber());
  } catch (err) {
    throw toContractsError(err, 'eth_blockNumber');
  }
  const out: EscrowEvent[] = [];
  for (let from = range.fromBlock; from <= toBlock; from += MAX_RANGE) {
    const to = Math.min(toBlock, from + MAX_RANGE - 1);
    let logs: Log[];
    try {
      logs = await provider.getLogs({ address, fromBlock: from, toBlock: to });
    } catch (err) {
      throw toContractsError(err, 'eth_getLogs');
    }
    for (const log of logs) {
      const e = decodeEscrowLog(log);
      if (e) out.push(e);
    }
  }
  return out;
}

export interface FollowOptions {
  readonly provider: Provider;
  readonly escrow: string;
  /** First block to report; default: the current block (only new events). */
  readonly fromBlock?: number;
  readonly pollIntervalMs?: number;
  /** Only these event types; default all. */
  readonly types?: readonly EscrowEventType[];
  readonly onEvent: (e: EscrowEvent) => void;
  /** Poll failures (the follower keeps polling); default: ignored. */
  readonly onError?: (err: Error) => void;
}

export interface EventFollower {
  /** Resolves once the first poll has completed (events up to the head delivered). */
  readonly ready: Promise<void>;
  dispose(): void;
}

/** Delivers each escrow event once, in chain order, until disposed. dispose() is idempotent. */
export function followEscrowEvents(opts: FollowOptions): EventFollower {
  const escrow = parseAddress('escrow', opts.escrow);
  const interval = opts.pollIntervalMs ?? 1_000;
  if (!Number.isFinite(interval) || interval < 10) throw new InvalidArgumentError('pollIntervalMs', 'at least 10 ms');
  const types = opts.types ? new Set(opts.types) : undefined;
  let next: number | undefined = opts.fromBlock;
  let disposed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let markReady!: () => void;
  const ready = new Promise<void>((r) => (markReady = r));

  const poll = async (): Promise<void> => {
    try {
      const head = await opts.provider.getBlockNumber();
      if (next === undefined) next = head + 1;
      if (head >= next) {
        const events = await queryEscrowEvents(opts.provider, escrow, { fromBlock: next, toBlock: head });
        for (const e of events) {
          if (disposed) return;
          if (types && !types.has(e.type)) continue;
          // A throwing handler must not make the follower re-read (and re-deliver) the range.
          try {
            opts.onEvent(e);
          } catch (err) {
            opts.onError?.(err instanceof Error ? err : new Error(String(err)));
          }
        }
        next = head + 1;
      }
      markReady();
    } catch (err) {
      if (!disposed) opts.onError?.(err instanceof Error ? err : new Error(String(err)));
    } finally {
      if (!disposed) timer = setTimeout(() => void poll(), interval);
    }
  };
  void poll();
  return {
    ready,
    dispose() {
      disposed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      markReady();
    },
  };
}
