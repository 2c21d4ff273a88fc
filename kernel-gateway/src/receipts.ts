// Usage receipts ride in a shell execute_reply's `metadata.kinesis.receipt` (docs/metering.md).
// This is the one place the gateway decodes an execute_reply's metadata: it verifies the
// receipt against what the provider advertised and records it in the ledger. The reply itself
// has already been relayed when this runs (a receipt never holds up a reply: KernelManager runs
// this after the kernel's idle has left too); the verdict follows as a `kinesis_usage` iopub
// message whose parent is the execute_request, so
// a client shows a cell's cost as verified, or learns that the gateway rejected it.
import { decodeV1, encodeV1, makeMessage, splitV1, type HardwareInfo, type MessageHeader } from '@kinesis/protocol';
import { RECEIPT_METADATA_KEY, USAGE_MSG_TYPE, type ReceiptVerdict } from '@kinesis/protocol/receipt';
import { isRecord } from '@kinesis/protocol/validate';
import type { Kernel } from './kernels/kernel.ts';
import type { ProviderLink } from './providers/link.ts';
import type { Ledger } from './ledger/index.ts';
import { errorText, type Logger } from './logger.ts';

const RECEIPT_KEY_BYTES = Buffer.from(`"${RECEIPT_METADATA_KEY}"`);

export function receiptRecorder(ledger: Ledger, logger: Logger): (kernel: Kernel, payload: Buffer) => void {
  return (kernel, payload) => {
    let msg;
    try {
      // Most replies carry no receipt (metering off, other kernels): look at the metadata
      // part's bytes before decoding the whole message (its content can be large).
      const metadata = splitV1(payload).parts[2];
      if (!metadata || metadata.indexOf(RECEIPT_KEY_BYTES) < 0) return;
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
    const verdict = record(ledger, logger, link, kernel.id, msg.parent_header.session || null, receipt);
    if (!verdict) return;
    tellClients(kernel, msg.header.session, msg.parent_header, receipt, verdict);
  };
}

/**
 * Records the receipt that closes a kernel's books (tunnel `kernel_receipt`: the energy from
 * its last execution to its shutdown or death). The manager has checked that `link` ran the
 * kernel. Clients still connected (a kernel that died) see the verdict like any other.
 */
export function closingReceiptRecorder(ledger: Ledger, logger: Logger): (link: ProviderLink, kernelId: string, receipt: unknown, kernel: Kernel | undefined) => void {
  return (link, kernelId, receipt, kernel) => {
    const verdict = record(ledger, logger, link, kernelId, null, receipt);
    if (!verdict || !kernel) return;
    tellClients(kernel, 'kinesis-gateway', {}, receipt, verdict);
  };
}

/** The verdict as a `kinesis_usage` iopub message to every client of the kernel (parent: the cell, if any). */
function tellClients(kernel: Kernel, session: string, parent: Partial<MessageHeader>, receipt: unknown, verdict: ReceiptVerdict): void {
  const notice = makeMessage({ channel: 'iopub', msgType: USAGE_MSG_TYPE, session, username: 'kinesis-gateway', parent, content: { receipt, verdict } });
  kernel.deliverFromGateway(encodeV1(notice));
}

/** Verifies against what the provider advertised and records; undefined when the ledger failed. */
function record(ledger: Ledger, logger: Logger, link: ProviderLink, kernelId: string, sessionId: string | null, receipt: unknown): ReceiptVerdict | undefined {
  try {
    const maxPowerCapMw = advertisedCapMw(link.hardware);
    const r = ledger.verifyAndRecord(link.id, receipt, {
      kernelId,
      sessionId,
      expectedPricePerKwh: link.pricePerKwh,
      gpuMethodsAllowed: link.hardwareClass.gpu !== null,
      ...(maxPowerCapMw === undefined ? {} : { maxPowerCapMw }),
    });
    if (!r.ok) logger.warn('usage receipt rejected', { kernel: kernelId, provider: link.id, reason: r.reason, detail: r.detail });
    return r.ok ? { accepted: true } : { accepted: false, reason: r.reason, ...(r.detail ? { detail: r.detail.slice(0, 1000) } : {}) };
  } catch (err) {
    logger.error('could not record a usage receipt', { kernel: kernelId, error: errorText(err) });
    return undefined;
  }
}

/**
 * The highest power limit the provider advertised, in mW: no receipt may claim a cap above
 * it. Undefined when a device advertises none (the ledger then checks energy against the
 * receipt's own cap only).
 */
export function advertisedCapMw(hw: HardwareInfo): bigint | undefined {
  let max = 0n;
  for (const d of hw.devices) {
    if (d.powerLimitW === undefined) return undefined;
    const mw = BigInt(Math.ceil(d.powerLimitW * 1000));
    if (mw > max) max = mw;
  }
  return hw.devices.length > 0 ? max : undefined;
}
