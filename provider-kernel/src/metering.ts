// Ties executions to the meter without ever holding a reply back.
//
// An execution starts at iopub `status: busy` whose parent is an execute_request and ends
// at the matching `status: idle` (Jupyter messaging: "Kernel status"). The reply to it,
// execute_reply on shell, travels on another socket, so its order against idle is not
// fixed; ipykernel sends the reply *before* publishing idle, so usually the reply comes
// first. Rules:
//   - reply first: the execution ends now (the kernel has finished the user's code when it
//     replies); the receipt goes into the reply; the later idle only closes the entry.
//     Energy drawn between reply and idle is carried into the next receipt (the receipt's
//     `carriedMj` line; cumulative figures stay exact).
//   - idle first: the execution ends at idle; its receipt waits for the reply, which then
//     carries it at once.
//   - reply without a busy seen (a dropped or late iopub message): start and end now, a
//     zero-length window; the energy is again carried by the next receipt.
// Times are the kernel's own: the `date` in the header of the busy, the reply and the idle
// (the kernel runs on this machine, on this clock). They are when the kernel started and
// finished the cell, however late the message reached us: ipykernel publishes on a thread
// of its own, which a busy cell on a loaded machine can hold back for most of the cell (seen
// in CI: busy arrived 14 ms before the reply of a 200 ms cell). A date is trusted only inside
// what we saw: not before the end of the kernel's previous execution, not after now, and an
// end not before its start; a missing or unreadable date is now.
// The receipt goes into the reply's metadata at `metadata.kinesis.receipt`
// ({ message, signature }); standard clients keep reply metadata untouched, and the gateway
// and IDE read it from there. We do NOT emit a custom iopub message type for it: nbclient
// and other validating clients log or reject msg types they do not know.
import type { SignedReceipt } from '@kinesis/protocol/receipt';
import type { Logger } from './logger.ts';

/** What the provider needs from src/meter (docs/metering.md). */
export interface ExecutionMeter {
  /** `deviceIndex`: the GPU the kernel was given (NVML index); omitted: a CPU kernel. */
  attachKernel(kernelId: string, opts: { pid: number; deviceIndex?: number }): void;
  onExecutionStart(kernelId: string, msgId: string, atMs: number): void;
  /** Synchronous: the reply is waiting on it. */
  onExecutionEnd(kernelId: string, msgId: string, atMs: number): SignedReceipt | undefined;
  /** Closes the kernel's books (its closing receipt is the meter's business); never throws. */
  detachKernel(kernelId: string): void;
  /**
   * A restart replaced the kernel's process: measure the new pid, keep the books (seq and
   * cumulative figures continue; the gateway's ledger requires an unbroken seq per kernel id).
   */
  retrackKernel(kernelId: string, opts: { pid: number; deviceIndex?: number }): void;
}

interface Execution {
  ended: boolean;
  replied: boolean;
  idle: boolean;
  receipt: SignedReceipt | undefined;
  startMs: number;
}

const MAX_TRACKED = 1024;

export class ExecutionTracker {
  private readonly executions = new Map<string, Execution>();
  /** When the kernel's last execution ended: no later one starts before it. */
  private lastEndMs = -Infinity;

  constructor(
    private readonly kernelId: string,
    private readonly meter: ExecutionMeter,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** iopub status message whose parent is an execute_request; `date`: its header's. */
  onStatus(parentMsgId: string, state: 'busy' | 'idle', date?: string): void {
    if (state === 'busy') {
      if (this.executions.has(parentMsgId)) return;
      this.begin(parentMsgId, this.kernelTime(date, this.lastEndMs));
      return;
    }
    const ex = this.executions.get(parentMsgId);
    if (!ex) return;
    ex.idle = true;
    if (!ex.ended) this.end(parentMsgId, ex, date);
    if (ex.replied) this.executions.delete(parentMsgId);
  }

  /**
   * execute_reply (`date`: its header's; `started`: its metadata's, when the kernel stamps
   * one, as ipykernel does): returns the receipt to put into its metadata, if the meter gave
   * one. The reply can come before the busy (they travel on different sockets, and the
   * provider may take in both at once); the execution then starts at the kernel's `started`.
   */
  onReply(parentMsgId: string, date?: string, started?: string): SignedReceipt | undefined {
    const ex = this.executions.get(parentMsgId) ?? this.begin(parentMsgId, this.kernelTime(started ?? date, this.lastEndMs));
    ex.replied = true;
    if (!ex.ended) this.end(parentMsgId, ex, date);
    const r = ex.receipt;
    ex.receipt = undefined;
    if (ex.idle) this.executions.delete(parentMsgId);
    return r;
  }

  /** A kernel's header date in ms, kept within [notBefore, now]; now when missing or unreadable. */
  private kernelTime(date: string | undefined, notBefore: number): number {
    const now = this.now();
    const t = date === undefined ? NaN : Date.parse(date);
    return Number.isFinite(t) ? Math.min(now, Math.max(notBefore, t)) : now;
  }

  private begin(msgId: string, atMs: number): Execution {
    const ex = this.track(msgId, atMs);
    this.safe(() => this.meter.onExecutionStart(this.kernelId, msgId, atMs));
    return ex;
  }

  private track(msgId: string, startMs: number): Execution {
    if (this.executions.size >= MAX_TRACKED) {
      // Executions whose reply never came (a kernel that died mid-cell): forget the oldest.
      const oldest = this.executions.keys().next().value;
      if (oldest !== undefined) this.executions.delete(oldest);
    }
    const ex: Execution = { ended: false, replied: false, idle: false, receipt: undefined, startMs };
    this.executions.set(msgId, ex);
    return ex;
  }

  private end(msgId: string, ex: Execution, date: string | undefined): void {
    ex.ended = true;
    const t = this.kernelTime(date, ex.startMs);
    this.lastEndMs = Math.max(this.lastEndMs, t);
    ex.receipt = this.safe(() => this.meter.onExecutionEnd(this.kernelId, msgId, t));
  }

  private safe<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (e) {
      // Metering must never break a user's session; the next receipt's cumulative figures
      // still cover the energy.
      this.logger.error('meter failed', { kernelId: this.kernelId, error: e instanceof Error ? e.message : String(e) });
      return undefined;
    }
  }
}

/** Returns metadata bytes with `kinesis.receipt` set; the original bytes if they are not an object. */
export function metadataWithReceipt(metadata: Buffer, receipt: SignedReceipt): Buffer {
  let m: unknown;
  try {
    m = JSON.parse(metadata.toString('utf8'));
  } catch {
    return metadata;
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return metadata;
  const rec = m as Record<string, unknown>;
  const prev = rec['kinesis'];
  rec['kinesis'] = { ...(typeof prev === 'object' && prev !== null && !Array.isArray(prev) ? prev : {}), receipt };
  return Buffer.from(JSON.stringify(rec), 'utf8');
}
