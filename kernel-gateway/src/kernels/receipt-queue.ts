// Shell `execute_reply` frames waiting to be handed to the ledger (KernelManagerOptions
// .onExecuteReply), off the reply's path. Verifying and storing a receipt costs ~0.2-0.5 ms
// of CPU (signature recovery, SQLite). Done at once it would hold back the `idle` that
// follows the reply, and the client waits for both. So it waits for the kernel's `idle` (or
// RECEIPT_DEFER_MS), then RECEIPT_AFTER_IDLE_MS more (see there); the verdict
// (kinesis_usage) follows the idle.
import { errorText, type Logger } from '../logger.ts';
import type { Kernel } from './kernel.ts';

/** A receipt waits at most this long for its kernel's `idle` before it is recorded anyway. */
const RECEIPT_DEFER_MS = 50;
/**
 * After the idle has left, receipts wait this long more: a client that runs cells back to
 * back sends its next execute_request within a fraction of a millisecond of seeing idle,
 * and that request must not queue behind ~0.5 ms of signature recovery and SQLite. A timer
 * (not setImmediate) lets the event loop poll for that request first; the verification
 * then runs while the kernel computes. Nothing waits on it: the verdict is informational
 * and REST reads of the ledger flush pending receipts first.
 */
const RECEIPT_AFTER_IDLE_MS = 2;

export class ReceiptQueue {
  #receipts: Array<{ kernel: Kernel; payload: Buffer }> = [];
  #scheduled = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    /** Records one receipt (the manager's onExecuteReply hook). */
    private readonly record: (kernel: Kernel, payload: Buffer) => void,
    private readonly logger: Logger,
  ) {}

  /** True while a receipt waits. */
  get waiting(): boolean {
    return this.#receipts.length > 0;
  }

  /** Queues an execute_reply of `k`, recorded once `k` is idle (see the header). */
  defer(k: Kernel, payload: Buffer): void {
    this.#receipts.push({ kernel: k, payload });
    if (k.state === 'idle') this.afterIdle();
    else this.#timer ??= setTimeout(() => this.flush(), RECEIPT_DEFER_MS);
  }

  /** A kernel's `idle` has been relayed: what waits is recorded RECEIPT_AFTER_IDLE_MS later. */
  afterIdle(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      this.flush();
    }, RECEIPT_AFTER_IDLE_MS).unref();
  }

  /** Records every receipt still waiting (before a REST request reads the ledger, and at shutdown). */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#receipts;
    this.#receipts = [];
    for (const { kernel, payload } of batch) {
      try {
        this.record(kernel, payload);
      } catch (err) {
        this.logger.warn('execute_reply hook failed', { kernel: kernel.id, error: errorText(err) });
      }
    }
  }
}
