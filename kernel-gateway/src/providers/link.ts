// One authenticated provider connection (after the handshake in tunnel.ts): requests and
// their replies, kernel frames both ways, credit, liveness. Spec: docs/protocols.md.
//
// Hot path: `sendKernel` prefixes the 17-byte header to a client's v1 bytes; frames from the
// provider are handed to `onKernelFrame` as views, and kernel parts to `onKernelPart` as the
// pieces of the socket reads they arrived in (no copy, no parse here).
import type { Duplex } from 'node:stream';
import { corkForTick } from '@kinesis/protocol/node/cork';
import {
  decodeFrame,
  decodeKernelPartHead,
  KERNEL_PART_HEADER_BYTES,
  DEFAULT_MAX_PARTIAL_BYTES,
  encodeControl,
  encodeCredit,
  encodeKernelFrame,
  FrameKind,
  type Advertise,
  type ControlMessage,
  type HardwareInfo,
  type Hello,
  type KernelRequest,
  type KernelSpecAd,
  type KernelStatusEvent, type KernelReceiptEvent,
  ProtocolError,
} from '@kinesis/protocol';
import { LinkClosedError, ProviderRequestError, RequestTimeoutError } from '../errors.ts';
import { errorText, type Logger } from '../logger.ts';
import { hardwareClass, type HardwareClass } from '../kernelspecs/naming.ts';
import type { KernelPart } from '../kernels/kernel.ts';
import { joinFragments, joinPieces, type Pieces, type TunnelSocket } from './tunnel-socket.ts';

// Frames above this size go out as two WebSocket fragments (header, then the client's bytes)
// so a large message is never copied just to prefix 17 bytes (RFC 6455 §5.4 fragmentation;
// the provider's ws reassembles one message).
const FRAGMENT_ABOVE = 64 * 1024;

/**
 * Bytes waiting to be written to a provider above which its tunnel counts as congested: the
 * clients sending to its kernels stop being read until it drains (kernels/channels.ts), so a
 * provider that reads slowly, or not at all, cannot make the gateway hold what clients send.
 */
export const TUNNEL_HIGH_WATER = 8 * 1024 * 1024;

export interface LinkHandlers {
  onKernelFrame(link: ProviderLink, kernelId: string, payload: Buffer, frameBytes: number): void;
  /**
   * A KERNEL PART frame, already checked to continue where the kernel's last part ended.
   * Returns true when the gateway holds the message it belongs to; false when it dropped the
   * part (unknown or dead kernel, another tunnel, undecodable): the handler then credited it,
   * and the link gives up on the rest of that message (abandonParts).
   */
  onKernelPart(link: ProviderLink, kernelId: string, part: KernelPart, frameBytes: number): boolean;
  /** The provider took back the kernel's message in parts under way (`kernel_part_abort`): it will not be finished. */
  onKernelPartAbort(link: ProviderLink, kernelId: string): void;
  onKernelStatus(link: ProviderLink, ev: KernelStatusEvent): void;
  onKernelReceipt(link: ProviderLink, ev: KernelReceiptEvent): void;
  onAdvertise(link: ProviderLink): void;
  onClose(link: ProviderLink, code: number, reason: string): void;
}

export interface LinkOptions {
  readonly maxFrameBytes: number;
  /** Most bytes (by their totals) of messages in parts unfinished at once; 1009 above it. */
  readonly maxPartialBytes?: number;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
  /** The TCP socket under the tunnel, corked per event-loop turn. */
  readonly socket?: Duplex;
  /**
   * CREDIT frames are sent once this many bytes are owed to a kernel (docs/protocols.md,
   * "Flow control"). Must stay well under the initial credit (the registry caps it at half),
   * so the provider never waits for the remainder we hold back.
   */
  readonly creditBatchBytes?: number;
}

type Pending = { resolve(): void; reject(e: Error): void; timer: NodeJS.Timeout };

export class ProviderLink {
  readonly id: string;
  readonly connectedSince = new Date();
  name: string;
  hardware: HardwareInfo;
  hardwareClass: HardwareClass;
  pricePerKwh: bigint;
  kernelspecs: readonly KernelSpecAd[];
  /** Last measured WebSocket ping round trip, ms. */
  latencyMs: number | undefined;
  lastPongAt = Date.now();
  #pingSentAt = 0;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  readonly #credit = new Map<string, number>();
  readonly #creditBatch: number;
  /** Per kernel, the message in parts being received: its total and the offset of the next part. */
  readonly #partial = new Map<string, { total: number; next: number }>();
  /** Sum of the totals in #partial, held against maxPartialBytes. */
  #partialBytes = 0;
  /**
   * Kernels whose message in parts the gateway gave up on (the kernel died or was deleted):
   * the rest of it may still be on the wire, and is dropped without the order check. Bounded:
   * the oldest are forgotten first.
   */
  readonly #abandoned = new Set<string>();
  #closed = false;
  /** Called once the tunnel's writes drain (or it closes): clients paused for its congestion. */
  #drainWaiters: (() => void)[] = [];

  constructor(
    readonly ws: TunnelSocket,
    hello: Hello,
    readonly handlers: LinkHandlers,
    readonly opts: LinkOptions,
  ) {
    this.id = hello.address;
    this.name = hello.name;
    this.hardware = hello.hardware;
    this.hardwareClass = hardwareClass(hello.hardware);
    this.pricePerKwh = BigInt(hello.pricePerKwh);
    this.kernelspecs = hello.kernelspecs;
    this.#creditBatch = Math.max(1, Math.floor(opts.creditBatchBytes ?? 1));
    // A message's WebSocket fragments as they came, each as its pieces: a kernel part that the
    // provider sent as [its header, its bytes] is handed on without joining either (large
    // output is never copied here); everything else is joined.
    ws.on('message', (fragments: Pieces[], isBinary: boolean) => this.#onFragments(fragments, isBinary));
    ws.on('pong', () => {
      this.lastPongAt = Date.now();
      if (this.#pingSentAt) this.latencyMs = this.lastPongAt - this.#pingSentAt;
      this.#pingSentAt = 0;
    });
    ws.on('close', (code: number, reason: Buffer) => this.#onClose(code, reason.toString('utf8')));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** More than TUNNEL_HIGH_WATER bytes wait to be written to the provider. */
  get congested(): boolean {
    return !this.#closed && this.ws.bufferedAmount > TUNNEL_HIGH_WATER;
  }

  /** Calls `fn` once the bytes waiting for the provider have all been written, or the tunnel closed. */
  whenDrained(fn: () => void): void {
    if (!this.congested) return fn();
    this.#drainWaiters.push(fn);
    if (this.#drainWaiters.length === 1) this.ws.socket.once('drain', () => this.#drained());
  }

  #drained(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const fn of waiters) fn();
  }

  /** Sends one control request and resolves on its `ok` reply. */
  request(msg: DistributiveOmit<KernelRequest, 'id'>, timeoutMs = this.opts.requestTimeoutMs): Promise<void> {
    if (this.#closed) return Promise.reject(new LinkClosedError(`provider ${this.id} is not connected`));
    const id = this.#nextId++;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new RequestTimeoutError(`provider ${this.id} did not answer ${msg.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#sendControl({ ...msg, id } as KernelRequest);
    });
  }

  sendKernel(kernelId: string, payload: Uint8Array): void {
    if (this.#closed) return;
    corkForTick(this.opts.socket);
    if (payload.byteLength <= FRAGMENT_ABOVE) {
      this.ws.send(encodeKernelFrame(kernelId, payload), { binary: true });
      return;
    }
    this.ws.send(encodeKernelFrame(kernelId, EMPTY), { binary: true, fin: false });
    this.ws.send(payload, { binary: true, fin: true });
  }

  /**
   * Returns credit for bytes handed on. Owed bytes are batched per kernel and go out once
   * they reach `creditBatchBytes`: a CREDIT frame per kernel message would cost the provider
   * a wake-up and both sides a system call per message, the largest cost of a small round
   * trip. What is held back is less than the batch, so the provider keeps at least
   * initialCredit − batch to spend and never stalls on it.
   */
  grantCredit(kernelId: string, bytes: number): void {
    if (this.#closed || bytes <= 0) return;
    const owed = (this.#credit.get(kernelId) ?? 0) + bytes;
    if (owed < this.#creditBatch) {
      this.#credit.set(kernelId, owed);
      return;
    }
    this.#credit.delete(kernelId);
    corkForTick(this.opts.socket);
    for (let left = owed; left > 0; ) {
      const chunk = Math.min(left, 0xffffffff);
      this.ws.send(encodeCredit(kernelId, chunk), { binary: true });
      left -= chunk;
    }
  }

  /** Forgets what is owed to a kernel that is gone, and gives up on its message in parts. */
  forgetCredit(kernelId: string): void {
    this.#credit.delete(kernelId);
    this.abandonParts(kernelId);
  }

  /**
   * Gives up on a kernel's message in parts, if one is arriving (the kernel died or was
   * deleted, or the gateway dropped its first part): it no longer counts against the
   * tunnel's limits, and the rest of it, still on the wire or yet to come, is credited and
   * dropped here without reaching the handler. The kernel's next message starts at offset 0.
   */
  abandonParts(kernelId: string): void {
    const p = this.#partial.get(kernelId);
    if (!p) return;
    this.#partial.delete(kernelId);
    this.#partialBytes -= p.total;
    this.#abandoned.add(kernelId);
    if (this.#abandoned.size > MAX_ABANDONED) this.#abandoned.delete(this.#abandoned.values().next().value as string);
  }

  /** Called by the registry's liveness timer. Returns false when the link is overdue and was dropped. */
  ping(now: number, timeoutMs: number): boolean {
    if (this.#closed) return false;
    if (now - this.lastPongAt > timeoutMs) {
      this.opts.logger.warn('provider missed its pings; dropping it', { provider: this.id });
      this.ws.terminate();
      return false;
    }
    if (!this.#pingSentAt) this.#pingSentAt = now;
    try {
      this.ws.ping();
    } catch {
      // A socket that is closing throws here; the close event does the cleanup.
    }
    return true;
  }

  close(code: number, reason: string): void {
    if (this.#closed) return;
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
    }
    // A peer that never completes the closing handshake must not hold the socket open.
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }

  #sendControl(msg: ControlMessage): void {
    this.ws.send(encodeControl(msg), { binary: true });
  }

  #onFragments(fragments: Pieces[], isBinary: boolean): void {
    if (fragments.length === 2 && isBinary && !this.#closed) {
      const head = joinPieces(fragments[0]!);
      if (head.length === KERNEL_PART_HEADER_BYTES && head[0] === FrameKind.KernelPart) {
        const pieces = fragments[1]!;
        let length = 0;
        for (const p of pieces) length += p.length;
        try {
          const h = decodeKernelPartHead(head, length, { maxBytes: this.opts.maxFrameBytes });
          this.#onPart(h.kernelId, { total: h.total, offset: h.offset, pieces, length }, head.length + length);
        } catch (err) {
          this.#frameError(err);
        }
        return;
      }
    }
    this.#onMessage(joinFragments(fragments), isBinary);
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    if (this.#closed) return;
    if (!isBinary) {
      this.close(1003, 'text frames are not part of the tunnel protocol');
      return;
    }
    try {
      if (data[0] === FrameKind.Kernel) {
        // Kernel frames are the hot path: decodeFrame only slices them.
        const f = decodeFrame(data, { maxBytes: this.opts.maxFrameBytes });
        if (f.kind !== 'kernel') return;
        if (this.#partial.size > 0 && this.#partial.has(f.kernelId)) throw new ProtocolError(1007, 'a kernel frame came in the middle of that kernel\'s message in parts');
        this.handlers.onKernelFrame(this, f.kernelId, Buffer.from(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength), data.length);
        return;
      }
      if (data[0] === FrameKind.KernelPart) {
        const f = decodeFrame(data, { maxBytes: this.opts.maxFrameBytes });
        if (f.kind === 'kernel-part') this.#onPart(f.kernelId, { total: f.total, offset: f.offset, pieces: [f.bytes], length: f.bytes.length }, data.length);
        return;
      }
      const f = decodeFrame(data, { maxBytes: this.opts.maxFrameBytes });
      if (f.kind === 'credit') throw new ProtocolError(1007, 'CREDIT frames flow from gateway to provider only');
      if (f.kind === 'control') this.#onControl(f.message);
    } catch (err) {
      this.#frameError(err);
    }
  }

  #frameError(err: unknown): void {
    if (err instanceof ProtocolError) {
      this.opts.logger.warn('bad tunnel frame; closing the tunnel', { provider: this.id, error: err.shortMessage });
      this.close(err.closeCode, err.shortMessage.slice(0, 120));
      return;
    }
    this.opts.logger.error('error handling a tunnel frame', { provider: this.id, error: errorText(err) });
  }

  /** Parts of one kernel's message come in order, without gaps, one message at a time (docs/protocols.md). */
  #onPart(kernelId: string, part: KernelPart, frameBytes: number): void {
    const p = this.#partial.get(kernelId);
    if (part.offset === 0) {
      if (p) throw new ProtocolError(1007, 'a kernel message in parts started before the previous one ended');
      this.#abandoned.delete(kernelId);
    } else if (!p && this.#abandoned.has(kernelId)) {
      // The rest of a message given up on (abandonParts): credited, never handed on.
      this.grantCredit(kernelId, frameBytes);
      return;
    } else if (!p || p.total !== part.total || p.next !== part.offset) {
      throw new ProtocolError(1007, 'a kernel part does not continue its message');
    }
    const next = part.offset + part.length;
    // Every part but the last carries at least MIN_PART_BYTES (providers send 64 KiB and up),
    // so a message cannot be split into millions of tiny parts the gateway must keep.
    if (next < part.total && part.length < MIN_PART_BYTES) throw new ProtocolError(1007, `a kernel part other than the last must carry at least ${MIN_PART_BYTES} bytes`);
    if (!p && next < part.total) {
      if (this.#partial.size >= MAX_PARTIAL_MESSAGES) throw new ProtocolError(1009, `more than ${MAX_PARTIAL_MESSAGES} kernel messages in parts at once`);
      const budget = this.opts.maxPartialBytes ?? DEFAULT_MAX_PARTIAL_BYTES;
      if (this.#partialBytes + part.total > budget) throw new ProtocolError(1009, `kernel messages in parts unfinished at once exceed ${budget} bytes`);
    }
    if (next >= part.total) {
      if (p) {
        this.#partial.delete(kernelId);
        this.#partialBytes -= p.total;
      }
    } else if (p) p.next = next;
    else {
      this.#partial.set(kernelId, { total: part.total, next });
      this.#partialBytes += part.total;
    }
    // Only a message the gateway holds counts against the budget: one whose parts it drops
    // (a kernel deleted or dead, which the provider may stop sending at any point) must not.
    if (!this.handlers.onKernelPart(this, kernelId, part, frameBytes)) this.abandonParts(kernelId);
  }

  #onControl(msg: ControlMessage): void {
    switch (msg.type) {
      case 'reply': {
        const p = this.#pending.get(msg.id);
        if (!p) return; // late reply after a timeout
        this.#pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.ok) p.resolve();
        else p.reject(new ProviderRequestError(msg.error.slice(0, 1000)));
        return;
      }
      case 'kernel_status':
        this.handlers.onKernelStatus(this, msg);
        return;
      case 'kernel_receipt':
        this.handlers.onKernelReceipt(this, msg);
        return;
      case 'kernel_part_abort': {
        // Nothing under way (never begun, finished, or already given up on here): nothing to do.
        const p = this.#partial.get(msg.kernelId);
        if (!p) return;
        this.#partial.delete(msg.kernelId);
        this.#partialBytes -= p.total;
        this.handlers.onKernelPartAbort(this, msg.kernelId);
        return;
      }
      case 'advertise':
        this.#applyOffer(msg);
        this.handlers.onAdvertise(this);
        return;
      default:
        throw new ProtocolError(1007, `unexpected control message ${msg.type} after the handshake`);
    }
  }

  #applyOffer(offer: Advertise): void {
    this.name = offer.name;
    this.hardware = offer.hardware;
    this.hardwareClass = hardwareClass(offer.hardware);
    this.pricePerKwh = BigInt(offer.pricePerKwh);
    this.kernelspecs = offer.kernelspecs;
  }

  #onClose(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(new LinkClosedError(`provider ${this.id} disconnected (${code}${reason ? ` ${reason}` : ''})`));
    }
    this.#pending.clear();
    this.#credit.clear();
    this.#partial.clear();
    this.#partialBytes = 0;
    this.#abandoned.clear();
    this.#drained();
    this.handlers.onClose(this, code, reason);
  }
}

const EMPTY = new Uint8Array(0);
/** Smallest part but the last (docs/protocols.md); a provider's smallest --part-bytes is 64 KiB. */
const MIN_PART_BYTES = 16 * 1024;
/** Messages in parts unfinished at once on one tunnel: one per kernel, and a provider announces at most 4096 kernels. */
const MAX_PARTIAL_MESSAGES = 4096;
/** Kernels remembered by abandonParts. */
const MAX_ABANDONED = 1024;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
