// Usage receipts ride in a shell execute_reply's `metadata.kinesis.receipt` (docs/metering.md).
// This is the one place the gateway decodes an execute_reply's metadata: it verifies the
// receipt against what the provider advertised and records it in the ledger. The reply itself
// has already been relayed when this runs.
import { decodeV1 } from '@kinesis/protocol';
import { isRecord } from '@kinesis/protocol/validate';
import type { Kernel } from './kernels/kernel.ts';
import type { Ledger } from './ledger/index.ts';
import { errorText, type Logger } from './logger.ts';

export function receiptRecorder(ledger: Ledger, logger: Logger): (kernel: Kernel, payload: Buffer) => void {
  return (kernel, payload) => {
    let msg;
    try {
      msg = decodeV1(payload);
    } catch (err) {
      logger.warn('undecodable execute_reply; no receipt recorded', { kernel: kernel.id, error: errorText(err) });
      return;
    }
    const k = msg.metadata['kinesis'];
    const receipt = isRecord(k) ? k['receipt'] : undefined;
    if (receipt === undefined) return;
    const link = kernel.link;
    if (!link) return;
    try {
      const r = ledger.verifyAndRecord(kernel.providerId, receipt, {
        kernelId: kernel.id,
        sessionId: msg.parent_header.session || null,
        expectedPricePerKwh: link.pricePerKwh,
        gpuMethodsAllowed: link.hardwareClass.gpu !== null,
      });
      if (!r.ok) logger.warn('usage receipt rejected', { kernel: kernel.id, provider: kernel.providerId, reason: r.reason, detail: r.detail });
    } catch (err) {
      logger.error('could not record a usage receipt', { kernel: kernel.id, error: errorText(err) });
    }
  };
}
