// Execution batching: the start of a cell's conversation with the gateway leaves in one
// write instead of one per message.
//
// Why: a trivial cell makes ipykernel publish five messages in three bursts (busy and
// execute_input; execute_result ~1 ms later; execute_reply and idle ~1-2 ms after that,
// measured on this project's 2-core machines). Sent as they come, each burst wakes the
// gateway and then the client while the kernel is still computing on the same two cores;
// held until the cell ends they cross every hop in one write, so the client's round trip
// gets shorter, not longer (docs/protocols.md has the figures).
//
// The hold starts at the kernel's `status: busy` for an execute_request and lasts at most
// `batchMs` (the flag `--output-batch-ms`; 6 ms fits a short cell's whole conversation).
// It is OFF by default (0). With it on, a stock Jupyter Server 1.23 in `--gateway-url` mode
// lost the first request of a fresh connection more often in our tests (2 of 4 runs, against
// 0 of 9 with it off; it happens without batching too, under load, which is why
// e2e/jupyter-server-gateway.test.ts handshakes first as Jupyter clients do), and on this
// project's 2-core machines the round trip measured no faster with it. Being a drop-in for
// Jupyter clients comes first; a provider can turn it on. It ends at once when:
//   - the execution is over: its execute_reply and its `status: idle` have both been sent,
//     in either order (Jupyter messaging 5.3: the reply is on shell, the idle on iopub, so
//     their order is not fixed);
//   - the kernel asks for input (stdin `input_request`): a person is waiting to type;
//   - the bytes held pass a bound (checked by the caller, which sees the socket).
// A longer cell's output is not held past those first `batchMs`: it streams as it comes
// (each event-loop pass still coalesces, see cork.ts), so batching never adds more than
// `batchMs` to any message, and only to a cell's first ones. `0` turns it off. Only
// executions are batched: kernel_info, complete, inspect and comm traffic outside a cell
// leave as before.

export interface FlushControl {
  /** Keep the tunnel's writes corked for at most `maxMs` (no-op while already held). */
  hold(maxMs: number): void;
  /** Let everything held leave now. */
  release(): void;
}

interface Running {
  readonly parent: string;
  replied: boolean;
  idle: boolean;
}

/** Off by default: see the header. */
export const DEFAULT_OUTPUT_BATCH_MS = 0;

/** Executions tracked at once; past this the oldest is forgotten (its kernel died mid-cell). */
const MAX_RUNNING = 1024;

export class ExecutionBatcher {
  readonly #running = new Map<string, Running>();

  constructor(
    private readonly ctl: FlushControl,
    readonly batchMs: number,
  ) {
    if (!Number.isFinite(batchMs) || batchMs < 0) throw new RangeError('batchMs must be a finite number ≥ 0');
  }

  /**
   * Called for each kernel message just after it was handed to the tunnel (the hold that
   * `busy` starts is the socket's: it ends by itself after `batchMs`). `status` is the
   * execution_state of an iopub status message, `parentType`/`parentId` its parent's.
   */
  onMessage(kernelId: string, channel: string, msgType: string, parentType: string | undefined, parentId: string | undefined, status: string | undefined): void {
    if (channel === 'stdin') {
      this.ctl.release();
      return;
    }
    const run = this.#running.get(kernelId);
    if (parentType === 'execute_request' && parentId !== undefined) {
      if (channel === 'iopub' && msgType === 'status' && status === 'busy') {
        if (this.batchMs === 0) return;
        if (this.#running.size >= MAX_RUNNING && !run) this.#running.delete(this.#running.keys().next().value!);
        this.#running.set(kernelId, { parent: parentId, replied: false, idle: false });
        this.ctl.hold(this.batchMs);
        return;
      }
      if (run && run.parent === parentId) {
        if (channel === 'shell' && msgType === 'execute_reply') run.replied = true;
        else if (channel === 'iopub' && msgType === 'status' && status === 'idle') run.idle = true;
        if (run.replied && run.idle) {
          this.#running.delete(kernelId);
          this.ctl.release();
        }
      }
    }
  }

  /** The kernel is gone (shut down, dead, restarted): nothing of it is held any longer. */
  forget(kernelId: string): void {
    if (this.#running.delete(kernelId)) this.ctl.release();
  }

  /** The tunnel dropped: what was held went with it. */
  reset(): void {
    this.#running.clear();
  }

  get running(): number {
    return this.#running.size;
  }
}
