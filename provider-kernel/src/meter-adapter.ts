// Connects the provider to the meter in src/meter (owned by the metering engineer; see
// docs/metering.md). The provider needs the receipt for an execute_reply synchronously, so
// that the reply is never held back: the meter's `executionEndSync` is used, the
// synchronous core of its `onExecutionEnd` (it signs what is measured so far and carries
// the rest into the next receipt).
import type { SignedReceipt } from '@kinesis/protocol/receipt';
import type { DeviceInfo } from '@kinesis/protocol/tunnel';
import { createMeter, type Meter, type MeterOptions } from './meter/meter.ts';
import type { Logger } from './logger.ts';
import type { ExecutionMeter } from './metering.ts';

export interface ProviderMeterOptions {
  readonly signer: MeterOptions['signer'];
  readonly pricePerKwh: bigint;
  /** The chain the receipts' EIP-712 domain names (31337: the local anvil of `npm start`). */
  readonly chainId: bigint | number;
  readonly sampleIntervalMs?: number;
  readonly nvmlLibrary?: string | null;
  readonly logger: Logger;
  /** Closing receipts (kernel shut down, died or restarted) go here. */
  readonly onClosingReceipt?: (kernelId: string, receipt: SignedReceipt) => void;
}

export interface ProviderMeter extends ExecutionMeter {
  /** GPUs as the meter sees them (NVML), in the tunnel's DeviceInfo form. */
  gpus(): DeviceInfo[];
  /** The power cap CPU readings are held to (W), advertised so the gateway can bound receipts. */
  cpuCapW(): number;
  dispose(): Promise<void>;
}

// Optional methods, used when the meter has them (executionEndSync exists on the meter's
// implementation; retrackKernel is requested of src/meter, see the report).
type SyncMeter = Meter & {
  executionEndSync?: (kernelId: string, msgId: string, tMs?: number) => SignedReceipt;
  retrackKernel?: (kernelId: string, opts: { pid: number; deviceIndex?: number }) => void;
};

export async function createProviderMeter(o: ProviderMeterOptions): Promise<ProviderMeter> {
  const meter = (await createMeter({
    signer: o.signer,
    pricePerKwh: o.pricePerKwh,
    chainId: o.chainId,
    ...(o.sampleIntervalMs !== undefined ? { sampleIntervalMs: o.sampleIntervalMs } : {}),
    ...(o.nvmlLibrary !== undefined ? { nvmlLibrary: o.nvmlLibrary } : {}),
  })) as SyncMeter;
  const hw = meter.describeHardware();
  if (hw.nvml.error) o.logger.info('NVML not in use; metering the CPU', { reason: hw.nvml.error });
  if (typeof meter.executionEndSync !== 'function') {
    o.logger.warn('meter has no synchronous end: replies will carry no receipts (energy still counts in cumulative figures)');
  }
  // Detaches are async (the meter waits for one more sample); an attach for the same kernel
  // (after a restart) must wait for its detach.
  const pending = new Map<string, Promise<unknown>>();
  return {
    gpus: () =>
      hw.gpus.map((g) => ({
        kind: 'gpu' as const,
        vendor: g.vendor === 'amd' ? 'AMD' : 'NVIDIA',
        name: g.name.slice(0, 128),
        index: g.index,
        memoryMiB: Math.floor(g.memoryTotalBytes / 1048576),
        ...(g.powerLimitMw ? { powerLimitW: g.powerLimitMw / 1000 } : {}),
      })),
    cpuCapW: () => hw.cpu.capMw / 1000,
    attachKernel(kernelId, opts) {
      const prev = pending.get(kernelId) ?? Promise.resolve();
      const next = prev.then(() => meter.attachKernel(kernelId, opts));
      pending.set(kernelId, next.catch(() => undefined));
      next.catch((e: unknown) => o.logger.error('meter attach failed', { kernelId, error: String(e) }));
    },
    retrackKernel(kernelId, opts) {
      if (typeof meter.retrackKernel === 'function') meter.retrackKernel(kernelId, opts);
      else o.logger.warn('meter cannot follow a restarted kernel to its new process; its CPU share reads as zero until the kernel stops', { kernelId });
    },
    onExecutionStart(kernelId, msgId, atMs) {
      meter.onExecutionStart(kernelId, msgId, atMs);
    },
    onExecutionEnd(kernelId, msgId, atMs) {
      return meter.executionEndSync?.(kernelId, msgId, atMs);
    },
    detachKernel(kernelId) {
      const prev = pending.get(kernelId) ?? Promise.resolve();
      const next = prev.then(() => meter.detachKernel(kernelId));
      pending.set(kernelId, next.catch(() => undefined));
      next.then(
        (r) => o.onClosingReceipt?.(kernelId, r),
        (e: unknown) => o.logger.warn('meter detach failed', { kernelId, error: String(e) }),
      );
    },
    dispose: () => meter.dispose(),
  };
}
