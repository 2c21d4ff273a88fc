// The provider host: one tunnel to the gateway, the kernels it runs for it, flow control
// between them, and metering. startProvider() in index.ts builds one of these.
import os from 'node:os';
import type { Duplex } from 'node:stream';
import type { Channel } from '@kinesis/protocol/jupyter/messages';
import {
  encodeControl,
  DEFAULT_MAX_TUNNEL_FRAME,
  validateControl,
  type HardwareInfo,
  type Hello,
  type KernelRequest,
  type KernelReceiptEvent,
  type KernelStatusEvent,
  type Reply,
  type RunningKernelAd,
} from '@kinesis/protocol/tunnel';
import type { SignedReceipt } from '@kinesis/protocol/receipt';
import type { RunAs } from './connection.ts';
import { holdFlush, releaseFlush } from '@kinesis/protocol/node/cork';
import { errorText, KernelError } from './errors.ts';
import type { ProviderIdentity } from './identity.ts';
import { Kernel, type KernelHooks } from './kernel.ts';
import type { IopubReader } from './zmq-channels.ts';
import type { IopubAuth } from './kernel.ts';
import { DEFAULT_MAX_FRAME_BYTES } from './zmtp-sub.ts';
import { DEFAULT_PART_BYTES, dropNoticeFrame, dropReason, kernelFrameFromParts, kernelIdBytes, PartedMessage } from './kernel-frame.ts';
import { toAd, type LocalKernelSpec } from './kernelspecs.ts';
import { outboxSocket, TunnelLink, type LinkOptions } from './link.ts';
import type { Logger } from './logger.ts';
import { ExecutionTracker, metadataWithReceipt, type ExecutionMeter } from './metering.ts';
import { Outbox, type OutboxOptions } from './outbox.ts';
import { DEFAULT_OUTPUT_BATCH_MS, ExecutionBatcher } from './batch.ts';
import { gpuEnv } from './kernel-env.ts';
import { ArrivingContent, clientMessage, DeferredSignature, executionState, wireLength, type HeaderPeek, type WireParts } from './wire.ts';

/** An execute_reply's `metadata.started` (ipykernel stamps the cell's start there), unchecked. */
function startedOf(metadata: Buffer): string | undefined {
  return /"started"\s*:\s*"([^"]{1,64})"/.exec(metadata.toString('utf8', 0, Math.min(metadata.length, 4096)))?.[1];
}

/** Output a full queue may shed: it is what a person reads, and losing it is marked. */
const DROPPABLE = new Set(['stream', 'display_data', 'update_display_data']);
const MAX_ADVERTISED_SPECS = 64;
/** Closing receipts kept while the gateway is unreachable. */
const MAX_UNSENT_RECEIPTS = 256;

export interface ProviderOptions {
  readonly gatewayUrl: string;
  readonly dataDir: string;
  readonly name?: string;
  readonly pricePerKwh: bigint;
  readonly identity: ProviderIdentity;
  readonly hardware: HardwareInfo;
  readonly kernelspecs: readonly LocalKernelSpec[];
  readonly logger: Logger;
  readonly meter?: ExecutionMeter;
  readonly maxKernels?: number;
  readonly passEnv?: readonly string[];
  /** Kernels run as this Unix user (the provider keeps its key to itself). */
  readonly kernelUser?: RunAs;
  readonly link?: Partial<Omit<LinkOptions, 'gatewayUrl' | 'logger'>>;
  readonly outbox?: Omit<OutboxOptions, 'dropNotice' | 'onDrop'>;
  readonly kernelStartTimeoutMs?: number;
  readonly kernelShutdownTimeoutMs?: number;
  /** The first this-many ms of a cell's messages leave in one write (batch.ts); 0: off. */
  readonly outputBatchMs?: number;
  /**
   * Output larger than this crosses the tunnel in parts of this size, when the gateway
   * offers `kernel-parts` (docs/protocols.md); 0: never.
   */
  readonly partBytes?: number;
  /** Who reads kernels' iopub (default 'js'). */
  readonly iopubReader?: IopubReader;
  /** How the js reader authenticates kernel output (default 'peer'; kernel.ts). */
  readonly iopubAuth?: IopubAuth;
  /**
   * With the js reader: output with a part over this many bytes is skipped unread, with a
   * notice (default, and at most: the tunnel's limit for one message, 64 MiB).
   */
  readonly maxIopubFrameBytes?: number;
}

interface KernelEntry {
  readonly kernel: Kernel;
  readonly idBytes: Buffer;
  readonly tracker: ExecutionTracker | undefined;
  /** The GPU (NVML / nvidia-smi index) this kernel was given; undefined on a CPU provider. */
  readonly gpu: number | undefined;
  /** Attached to the meter now (attach and detach must pair up). */
  metered: boolean;
  /** Settles when the first start is over (a retried start_kernel waits on it). */
  started: Promise<void>;
  /** Died while the tunnel was down: `dead` is sent after the next handshake. */
  deadUnsent: boolean;
}

export class Provider {
  readonly address: string;
  readonly link: TunnelLink;
  readonly outbox: Outbox;
  private readonly kernels = new Map<string, KernelEntry>();
  private specs: Map<string, LocalKernelSpec>;
  private closing: Promise<void> | undefined;
  private badFrames = 0;
  /** The TCP socket under the tunnel (for holding a flush), while connected. */
  private tunnelTcp: Duplex | undefined;
  /** The gateway of the current tunnel takes messages in parts. */
  private partsAccepted = false;
  /** The gateway takes `kernel_part_abort`: large output may start out before its signature is checked. */
  private partAbortAccepted = false;
  private readonly batcher: ExecutionBatcher;
  /** Closing receipts that found the tunnel down. */
  private unsentReceipts: KernelReceiptEvent[] = [];

  constructor(private readonly o: ProviderOptions) {
    this.address = o.identity.address;
    this.specs = new Map(o.kernelspecs.slice(0, MAX_ADVERTISED_SPECS).map((s) => [s.name, s]));
    this.batcher = new ExecutionBatcher(
      { hold: (ms) => holdFlush(this.tunnelTcp, ms), release: () => releaseFlush(this.tunnelTcp) },
      o.outputBatchMs ?? DEFAULT_OUTPUT_BATCH_MS,
    );
    this.outbox = new Outbox({
      ...o.outbox,
      dropNotice: (id, count, bytes, parent, tooLarge) => this.dropNotice(id, count, bytes, parent, tooLarge === 0 ? undefined : dropReason(count, tooLarge, this.tunnelMessageLimit())),
      maxFrameBytes: this.tunnelMessageLimit(),
      onDrop: (id, reason) => o.logger.warn('kernel output is being dropped', { kernelId: id, reason }),
    });
    this.link = new TunnelLink(
      { gatewayUrl: o.gatewayUrl, logger: o.logger, ...o.link },
      {
        address: this.address,
        signAuth: (text) => o.identity.signText(text),
        hello: () => this.helloBody(),
        onWelcome: (ws, w, tcp) => {
          this.tunnelTcp = tcp;
          this.partsAccepted = w.features?.includes('kernel-parts') ?? false;
          this.partAbortAccepted = w.features?.includes('kernel-part-abort') ?? false;
          this.batcher.reset();
          this.outbox.attach(outboxSocket(ws, tcp), w.initialCredit, { parts: this.partsAccepted, partAbort: this.partAbortAccepted, ...(w.maxPartialBytes !== undefined ? { maxPartialBytes: w.maxPartialBytes } : {}) });
          for (const e of this.kernels.values()) {
            if (e.deadUnsent && e.kernel.state === 'dead') this.sendStatus(e.kernel.id, 'dead', 'kernel died while the gateway was unreachable');
            e.deadUnsent = false;
          }
          const receipts = this.unsentReceipts;
          this.unsentReceipts = [];
          for (const ev of receipts) this.sendClosingReceipt(ev.kernelId, ev.receipt as SignedReceipt);
        },
        onDisconnect: () => {
          releaseFlush(this.tunnelTcp);
          this.tunnelTcp = undefined;
          this.outbox.detach();
        },
        onRequest: (req) => void this.handleRequest(req),
        onKernelFrame: (id, payload) => this.fromGateway(id, payload),
        onCredit: (id, bytes) => this.outbox.grant(id, bytes),
      },
    );
    // Fail early, on our side, if what we would advertise is not a valid hello.
    validateControl({ type: 'hello', version: 1, address: this.address, signature: '0x', ...this.helloBody() });
  }

  start(): void {
    this.link.start();
  }

  /**
   * Replaces the kernelspecs on offer (after an owner installed or removed one) and tells the
   * gateway with an `advertise`. Running kernels keep the spec they started with.
   */
  setKernelspecs(specs: readonly LocalKernelSpec[]): void {
    const next = new Map(specs.slice(0, MAX_ADVERTISED_SPECS).map((s) => [s.name, s]));
    const { name, hardware, pricePerKwh, kernelspecs } = this.helloBody(next);
    validateControl({ type: 'advertise', name, hardware, pricePerKwh, kernelspecs });
    this.specs = next;
    this.outbox.sendControl(encodeControl({ type: 'advertise', name, hardware, pricePerKwh, kernelspecs }));
  }

  /** Kernels this provider runs (ids and states), for tests and status. */
  kernelStates(): Array<{ kernelId: string; state: string; pid: number | undefined }> {
    return [...this.kernels.values()].map((e) => ({ kernelId: e.kernel.id, state: e.kernel.state, pid: e.kernel.pid }));
  }

  /** Stops every kernel (shutdown_request, SIGTERM, SIGKILL), then the tunnel. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.kernels.values()].map((e) => e.kernel.shutdown()));
      for (const e of this.kernels.values()) this.detachMeter(e);
      for (const id of [...this.kernels.keys()]) this.forget(id);
      await this.link.close();
    })();
    return this.closing;
  }

  private helloBody(specs = this.specs): Omit<Hello, 'signature' | 'address' | 'type' | 'version'> {
    const kernels: RunningKernelAd[] = [];
    for (const e of this.kernels.values()) {
      const status = e.kernel.adStatus;
      if (status) kernels.push({ kernelId: e.kernel.id, specName: e.kernel.spec.name, status });
    }
    return {
      name: (this.o.name ?? os.hostname()).slice(0, 128),
      hardware: this.o.hardware,
      pricePerKwh: this.o.pricePerKwh.toString(),
      kernelspecs: [...specs.values()].map(toAd),
      kernels,
    };
  }

  // ---- requests from the gateway ---------------------------------------------------

  private async handleRequest(req: KernelRequest): Promise<void> {
    let reply: Reply;
    try {
      if (this.closing) throw new KernelError('provider is shutting down');
      await this.execute(req);
      reply = { type: 'reply', id: req.id, ok: true };
    } catch (e) {
      this.o.logger.warn('request failed', { type: req.type, kernelId: req.kernelId, error: errorText(e) });
      const detail = e instanceof KernelError && e.details ? `: ${e.details}` : '';
      reply = { type: 'reply', id: req.id, ok: false, error: `${errorText(e)}${detail}`.slice(0, 4000) };
    }
    this.outbox.sendControl(encodeControl(reply));
  }

  private async execute(req: KernelRequest): Promise<void> {
    if (req.type === 'start_kernel') return this.startKernel(req.kernelId, req.specName, req.env);
    const entry = this.kernels.get(req.kernelId);
    if (!entry) throw new KernelError(`unknown kernel ${req.kernelId}`);
    const k = entry.kernel;
    switch (req.type) {
      case 'interrupt_kernel':
        return k.interrupt();
      case 'restart_kernel': {
        // Same kernel id, new process: the books stay open (the ledger wants one unbroken
        // seq per kernel id); the meter follows the new pid.
        await k.restart();
        const pid = k.pid;
        if (entry.metered && pid !== undefined && pid > 0) {
          this.meterCall(() => this.o.meter?.retrackKernel(k.id, { pid, ...(entry.gpu === undefined ? {} : { deviceIndex: entry.gpu }) }));
        } else this.attachMeter(entry); // a kernel that had died was detached
        return;
      }
      case 'shutdown_kernel':
        try {
          await k.shutdown();
        } finally {
          this.detachMeter(entry);
          this.forget(k.id);
        }
    }
  }

  private async startKernel(kernelId: string, specName: string, env: Readonly<Record<string, string>>): Promise<void> {
    const existing = this.kernels.get(kernelId);
    if (existing) {
      // A retried start (the reply was lost with a dropped tunnel): answer for the same kernel,
      // once it is up.
      await existing.started;
      if (existing.kernel.adStatus) return;
      throw new KernelError(`kernel ${kernelId} exists and is ${existing.kernel.state}`);
    }
    const spec = this.specs.get(specName);
    if (!spec) throw new KernelError(`no kernelspec named ${JSON.stringify(specName)} on this provider`);
    const live = [...this.kernels.values()].filter((e) => e.kernel.adStatus).length;
    if (live >= (this.o.maxKernels ?? 16)) throw new KernelError(`provider runs its maximum of ${this.o.maxKernels ?? 16} kernels`);
    const gpu = this.pickGpu();
    const kernel = new Kernel({
      kernelId,
      spec,
      clientEnv: env,
      ...(gpu === undefined ? {} : { extraEnv: gpuEnv(this.o.hardware.devices, gpu) }),
      dataDir: this.o.dataDir,
      logger: this.o.logger,
      hooks: this.hooks,
      ...(this.o.passEnv ? { passEnv: this.o.passEnv } : {}),
      ...(this.o.kernelUser ? { runAs: this.o.kernelUser } : {}),
      ...(this.o.iopubReader ? { iopubReader: this.o.iopubReader } : {}),
      ...(this.o.iopubAuth ? { iopubAuth: this.o.iopubAuth } : {}),
      maxIopubFrameBytes: this.iopubFrameLimit(),
      ...(this.o.kernelStartTimeoutMs ? { startTimeoutMs: this.o.kernelStartTimeoutMs } : {}),
      ...(this.o.kernelShutdownTimeoutMs ? { shutdownTimeoutMs: this.o.kernelShutdownTimeoutMs } : {}),
    });
    const tracker = this.o.meter ? new ExecutionTracker(kernelId, this.o.meter, this.o.logger) : undefined;
    const started = kernel.start();
    const entry: KernelEntry = { kernel, idBytes: kernelIdBytes(kernelId), tracker, gpu, metered: false, started: started.catch(() => undefined), deadUnsent: false };
    this.kernels.set(kernelId, entry);
    this.outbox.addKernel(kernelId);
    this.sendStatus(kernelId, 'starting');
    try {
      await started;
    } catch (e) {
      this.forget(kernelId);
      throw e;
    }
    this.attachMeter(entry);
  }

  /** The GPU with the fewest live kernels; undefined when this provider has none. */
  private pickGpu(): number | undefined {
    const gpus = this.o.hardware.devices.filter((d) => d.kind === 'gpu').map((d) => d.index);
    if (gpus.length === 0) return undefined;
    const load = new Map(gpus.map((g) => [g, 0]));
    for (const e of this.kernels.values()) if (e.gpu !== undefined && e.kernel.adStatus) load.set(e.gpu, (load.get(e.gpu) ?? 0) + 1);
    return gpus.reduce((best, g) => ((load.get(g) ?? 0) < (load.get(best) ?? 0) ? g : best));
  }

  private attachMeter(e: KernelEntry): void {
    const pid = e.kernel.pid;
    const meter = this.o.meter;
    if (!meter || e.metered || pid === undefined || pid <= 0) return;
    e.metered = true;
    this.meterCall(() => meter.attachKernel(e.kernel.id, { pid, ...(e.gpu === undefined ? {} : { deviceIndex: e.gpu }) }));
  }

  private detachMeter(e: KernelEntry): void {
    const meter = this.o.meter;
    if (!meter || !e.metered) return;
    e.metered = false;
    this.meterCall(() => meter.detachKernel(e.kernel.id));
  }

  private meterCall(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.o.logger.error('meter call failed', { error: errorText(e) });
    }
  }

  private forget(kernelId: string): void {
    if (!this.kernels.delete(kernelId)) return;
    this.batcher.forget(kernelId);
    this.outbox.removeKernel(kernelId);
  }

  /**
   * Sends a kernel's closing receipt (the energy since its last execution) to the gateway's
   * ledger; kept until the next connection when the tunnel is down (bounded: the oldest go).
   */
  sendClosingReceipt(kernelId: string, receipt: SignedReceipt): void {
    const ev: KernelReceiptEvent = { type: 'kernel_receipt', kernelId, receipt };
    if (this.outbox.sendControl(encodeControl(ev))) return;
    if (this.unsentReceipts.length >= MAX_UNSENT_RECEIPTS) this.unsentReceipts.shift();
    this.unsentReceipts.push(ev);
  }

  private sendStatus(kernelId: string, status: KernelStatusEvent['status'], reason?: string): boolean {
    const ev: KernelStatusEvent = { type: 'kernel_status', kernelId, status, ...(reason ? { reason: reason.slice(0, 4000) } : {}) };
    return this.outbox.sendControl(encodeControl(ev));
  }

  // ---- kernel → gateway -------------------------------------------------------------

  private readonly hooks: KernelHooks = {
    onStatus: (k, status, reason) => {
      const e = this.kernels.get(k.id);
      if (status === 'dead' && e) this.detachMeter(e);
      if (status === 'dead' || status === 'restarting') this.batcher.forget(k.id);
      const sent = this.sendStatus(k.id, status, reason);
      if (status === 'dead' && e && !sent) e.deadUnsent = true;
    },
    onMessage: (k, channel, parts, header, parent, unchecked) => this.toGateway(k, channel, parts, header, parent, unchecked),
    // The user sees a notice where the output went missing, as for output the queue dropped.
    // Its parent header is unchecked (the message was never read whole): at worst the notice
    // shows under another cell of this kernel.
    onOversize: (k, bytes, parent) => {
      if (!this.kernels.has(k.id)) return;
      const limit = this.iopubFrameLimit();
      const why = limit === this.tunnelMessageLimit() ? dropReason(1, 1, limit) : `a part of it was larger than this provider's limit of ${limit} bytes per message part`;
      this.outbox.enqueue(k.id, { frame: this.dropNotice(k.id, 1, bytes, parent, why), droppable: false });
    },
    acceptsArriving: (_k, msgType, wireBytes) => this.partAbortAccepted && this.inParts('iopub', msgType, wireBytes),
  };

  /** The most one kernel message may take on the tunnel (the link's frame limit; a message in parts obeys it by its total). */
  private tunnelMessageLimit(): number {
    return this.o.link?.maxFrameBytes ?? DEFAULT_MAX_TUNNEL_FRAME;
  }

  /**
   * With the js reader, an iopub frame over this is skipped unread: the provider's own limit,
   * or what can cross the tunnel in one message, whichever is less (a frame over the tunnel's
   * limit could only be read, checked and then dropped).
   */
  private iopubFrameLimit(): number {
    return Math.min(this.o.maxIopubFrameBytes ?? DEFAULT_MAX_FRAME_BYTES, this.tunnelMessageLimit());
  }

  /** Does a message go in parts (to the gateway of the current tunnel)? Only output does: the gateway reads replies (receipts) and statuses whole. */
  private inParts(channel: Channel, msgType: string, wireBytes: number): boolean {
    const partBytes = this.o.partBytes ?? DEFAULT_PART_BYTES;
    return this.partsAccepted && partBytes > 0 && channel === 'iopub' && msgType !== 'status' && wireBytes > partBytes;
  }

  private toGateway(k: Kernel, channel: Channel, parts: WireParts, header: HeaderPeek, parent: HeaderPeek | undefined, unchecked?: DeferredSignature | ArrivingContent): void {
    const entry = this.kernels.get(k.id);
    if (!entry) return;
    const partBytes = this.o.partBytes ?? DEFAULT_PART_BYTES;
    const parted = this.inParts(channel, header.msgType, wireLength(parts));
    // Output whose signature is unchecked starts out before the check ends only in parts, to a
    // gateway that can be told to drop it; otherwise it is checked now.
    const early = unchecked !== undefined && parted && this.partAbortAccepted;
    const arriving = unchecked instanceof ArrivingContent ? unchecked : undefined;
    const deferred = unchecked instanceof DeferredSignature ? unchecked : undefined;
    if (arriving && !parted) {
      // acceptsArriving said yes just now, so this cannot happen; if it did, the message could
      // not be framed before it is all in.
      k.dropMessage(channel, 'output arrived in a form the tunnel cannot take');
      return;
    }
    if (deferred && !early && !deferred.now()) {
      k.dropMessage(channel, 'kernel message has a bad HMAC signature');
      return;
    }
    let metadata = parts.metadata;
    const state = channel === 'iopub' && header.msgType === 'status' ? executionState(parts.content) : undefined;
    const t = entry.tracker;
    if (t && parent?.msgType === 'execute_request') {
      if (state === 'busy' || state === 'idle') t.onStatus(parent.msgId, state, header.date);
      else if (channel === 'shell' && header.msgType === 'execute_reply') {
        const receipt = t.onReply(parent.msgId, header.date, startedOf(parts.metadata));
        if (receipt) metadata = metadataWithReceipt(metadata, receipt);
      }
    }
    const frame = parted ? new PartedMessage(entry.idBytes, channel, parts, metadata, partBytes, arriving) : kernelFrameFromParts(entry.idBytes, channel, parts, metadata);
    // Held until the verdict: to a gateway that takes the abort, all parts but the last go out
    // meanwhile (those of arriving content as their bytes come in); to another, none does.
    if (early || arriving) (frame as PartedMessage).hold();
    const queued = this.outbox.enqueue(k.id, { frame, droppable: channel === 'iopub' && DROPPABLE.has(header.msgType), parent: parts.parent });
    this.batcher.onMessage(k.id, channel, header.msgType, parent?.msgType, parent?.msgId, state);
    if (!queued) return;
    const m = frame as PartedMessage;
    if (arriving) {
      arriving.listen(
        () => {
          if (m.partReady) this.outbox.resume();
        },
        (ok, reason) => this.onVerdict(k, channel, m, ok, reason),
      );
    } else if (early && deferred) this.checkWhileSending(k, channel, m, deferred, partBytes);
  }

  /**
   * Checks the signature of output whose first parts are already on their way (one part's
   * worth of bytes per event-loop turn, so the parts keep flowing), then lets its last part go,
   * or takes it back and tells the gateway to drop what it has of it.
   */
  private checkWhileSending(k: Kernel, channel: Channel, m: PartedMessage, sig: DeferredSignature, step: number): void {
    sig.inSteps(
      step,
      (ok) => this.onVerdict(k, channel, m, ok, 'kernel message has a bad HMAC signature (found while it was being sent)'),
      () => !m.partReady, // only the last part is left: it waits for the verdict
    );
  }

  /** A held message's verdict: its last part may go, or it is taken back. */
  private onVerdict(k: Kernel, channel: Channel, m: PartedMessage, ok: boolean, reason: string): void {
    if (ok) m.release();
    else {
      k.dropMessage(channel, reason);
      // The abort goes before anything else of the kernel's (discard sends nothing): the
      // gateway takes no other frame of this kernel in the middle of its message in parts.
      // Parts went out only to a gateway that takes the abort (outbox: partAbort).
      if (this.outbox.discard(k.id, m)) this.outbox.sendControl(encodeControl({ type: 'kernel_part_abort', kernelId: k.id }));
    }
    this.outbox.resume();
  }

  private dropNotice(kernelId: string, count: number, bytes: number, parent: Buffer | undefined, why?: string): Buffer {
    this.o.logger.warn('kernel output dropped', { kernelId, count, bytes, ...(why ? { why } : {}) });
    return dropNoticeFrame(kernelId, count, bytes, parent, why);
  }

  // ---- gateway → kernel -------------------------------------------------------------

  private fromGateway(kernelId: string, payload: Uint8Array): void {
    const entry = this.kernels.get(kernelId);
    if (!entry) return this.rejectFrame(kernelId, 'unknown kernel');
    let m: { channel: Exclude<Channel, 'iopub'>; parts: WireParts };
    try {
      m = clientMessage(payload);
    } catch (e) {
      return this.rejectFrame(kernelId, errorText(e));
    }
    entry.kernel.sendFromClient(m.channel, m.parts);
  }

  /** A message we will not pass to a kernel: dropped, logged (rate-limited), the tunnel stays up. */
  private rejectFrame(kernelId: string, reason: string): void {
    this.badFrames++;
    if (this.badFrames <= 10 || this.badFrames % 1000 === 0) this.o.logger.warn('dropping message from gateway', { kernelId, reason, count: this.badFrames });
  }
}

