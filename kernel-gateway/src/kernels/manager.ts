// Kernel lifecycle across providers: placement, start/interrupt/restart/shutdown requests,
// what happens when a provider's tunnel drops (grace, then `dead`) and comes back (re-attach,
// also after a gateway restart: kernels listed in hello are adopted), relaying frames.
import { randomUUID } from 'node:crypto';
import { peekV1, ProtocolError, type Hello, type KernelReceiptEvent, type KernelStatusEvent, type V1Peek } from '@kinesis/protocol';
import { buildCatalog, type CatalogEntry } from '../kernelspecs/catalog.ts';
import { gatewaySpecName } from '../kernelspecs/naming.ts';
import { GatewayError, LinkClosedError } from '../errors.ts';
import { conflict, notFound } from '../http/errors.ts';
import { errorText, type Logger } from '../logger.ts';
import type { ProviderLink } from '../providers/link.ts';
import type { ProviderEvents, ProviderRegistry } from '../providers/registry.ts';
import type { PlacementConstraints } from '../scheduler.ts';
import type { KernelRecord, TombstoneRecord } from '../state-file.ts';
import { ClientKeepalive } from './client-keepalive.ts';
import { Kernel, type KernelOptions, type KernelPart } from './kernel.ts';
import { place } from './placement.ts';
import { ReceiptQueue } from './receipt-queue.ts';
import { peekPart } from './streamed-message.ts';
import { Tombstones } from './tombstones.ts';

const isDead = (k: Kernel): boolean => k.state === 'dead';

export interface KernelManagerOptions extends Omit<KernelOptions, 'logger'> {
  readonly startTimeoutMs: number;
  readonly restartTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** How long a disconnected provider's kernels wait for it before they are `dead`. */
  readonly graceMs: number;
  readonly maxFrameBytes: number;
  readonly clientPingIntervalMs: number;
  /** How long output is kept for a disconnected session that does not come back. */
  readonly detachedTtlMs: number;
  readonly logger: Logger;
  /**
   * Shell `execute_reply` frames, for the ledger (the only place an execute_reply's metadata
   * is read). Called after the reply has been relayed, off its path: see receipt-queue.ts.
   */
  readonly onExecuteReply?: (kernel: Kernel, payload: Buffer) => void;
  /** A kernel's closing receipt (tunnel `kernel_receipt`), from the provider that ran it. */
  readonly onClosingReceipt?: (link: ProviderLink, kernelId: string, receipt: unknown, kernel: Kernel | undefined) => void;
}

export interface StartOptions {
  readonly name?: string | undefined;
  readonly env?: Readonly<Record<string, string>>;
  readonly constraints?: PlacementConstraints;
}

/**
 * Close code for client channels when the gateway stops: 1012 (Service Restart), not 1001,
 * because @jupyterlab/services treats 1000 and 1001 as final and stops reconnecting, while the
 * kernels and sessions come back with the gateway (state-file.ts).
 */
export const CLOSE_RESTARTING = 1012;

export class KernelManager implements ProviderEvents {
  readonly kernels = new Map<string, Kernel>();
  /** Kernels shut down here, and the provider each ran on (its closing receipt may still come). */
  readonly #tombstones = new Tombstones();
  readonly #removedListeners = new Set<(id: string) => void>();
  readonly #changedListeners = new Set<() => void>();
  readonly #keepalive: ClientKeepalive;
  readonly #kopts: KernelOptions;
  readonly #receipts: ReceiptQueue;
  #disposed = false;

  constructor(
    readonly providers: ProviderRegistry,
    readonly opts: KernelManagerOptions,
  ) {
    this.#kopts = {
      bufferBytes: opts.bufferBytes,
      pendingMaxBytes: opts.pendingMaxBytes,
      maxDetachedSessions: opts.maxDetachedSessions,
      clientHighWaterBytes: opts.clientHighWaterBytes,
      clientMaxBufferedBytes: opts.clientMaxBufferedBytes,
      logger: opts.logger,
      onDead: () => this.#changed(),
    };
    this.#keepalive = new ClientKeepalive(this.kernels, opts);
    this.#receipts = new ReceiptQueue((kernel, payload) => this.opts.onExecuteReply?.(kernel, payload), opts.logger);
  }

  catalog(): Map<string, CatalogEntry<ProviderLink>> {
    return buildCatalog(this.providers.list());
  }

  loadOf(providerId: string): number {
    const id = providerId.toLowerCase();
    let n = 0;
    for (const k of this.kernels.values()) if (k.state !== 'dead' && k.providerId.toLowerCase() === id) n++;
    return n;
  }

  get(id: string): Kernel | undefined {
    return this.kernels.get(id.toLowerCase());
  }

  /** The kernel or an HttpError 404. */
  require(id: string): Kernel {
    const k = this.get(id);
    if (!k) throw notFound(`kernel ${id.slice(0, 64)} not found`);
    return k;
  }

  onRemoved(listener: (id: string) => void): void {
    this.#removedListeners.add(listener);
  }

  /** Called whenever a kernel is added or removed (the gateway's state file follows). */
  onChanged(listener: () => void): void {
    this.#changedListeners.add(listener);
  }

  #changed(): void {
    for (const l of this.#changedListeners) l();
  }

  /** Takes the kernel out of the gateway: its clients are closed with `code`, its sessions go. */
  #drop(k: Kernel, code: number, reason: string): void {
    this.kernels.delete(k.id);
    k.dispose(code, reason);
    for (const l of this.#removedListeners) l(k.id);
    this.#changed();
  }

  /** The kernels to remember across a gateway restart (state-file.ts). */
  records(): KernelRecord[] {
    return [...this.kernels.values()].map((k) => ({ id: k.id, name: k.name, baseSpec: k.baseSpec, providerId: k.providerId, ...(k.state === 'dead' ? { dead: true } : {}) }));
  }

  /** The most recent kernels deleted here, to remember across a restart. */
  tombstoneRecords(): TombstoneRecord[] {
    return this.#tombstones.records();
  }

  /**
   * Kernels the gateway placed before it restarted (state-file.ts). A live one is `starting`,
   * with its provider away, until the provider reconnects and lists it (onAttach re-attaches
   * it, or declares it dead if not listed); messages clients send meanwhile wait for it. A
   * provider not back within `graceMs` does not condemn it: the record is dropped, as if the
   * gateway had never known it, and a provider that comes back later still gets it adopted. A
   * kernel dead before the restart stays dead (and is stopped on its provider if it lists it);
   * one deleted before it (a tombstone) is stopped on its provider too.
   */
  restore(records: readonly KernelRecord[], tombstones: readonly TombstoneRecord[], graceMs: number): void {
    this.#tombstones.restore(tombstones);
    for (const r of records) {
      if (this.kernels.has(r.id) || this.#tombstones.has(r.id)) continue;
      const k = new Kernel(r.id, r.name, r.baseSpec, r.providerId, this.#kopts, r.dead ? 'dead' : 'starting');
      if (!r.dead) {
        k.graceTimer = setTimeout(() => {
          k.graceTimer = undefined;
          if (this.kernels.get(k.id) !== k || k.link) return;
          this.opts.logger.warn('a restored kernel\'s provider did not reconnect; forgetting the kernel until it does', { kernel: k.id, provider: k.providerId, graceMs });
          this.#drop(k, 1001, 'its provider did not reconnect after the gateway restarted');
        }, graceMs);
      }
      this.kernels.set(k.id, k);
    }
    if (records.length > 0) this.opts.logger.info('kernels restored from the state file; waiting for their providers', { kernels: records.length });
  }

  /** Places and starts a kernel; returns at once with the kernel `starting`. Throws PlacementError. */
  start(o: StartOptions): Kernel {
    if (this.#disposed) throw new GatewayError('the gateway is shutting down');
    const { link, baseSpec } = place(this.catalog(), o.name, o.constraints ?? {}, (id) => this.loadOf(id));
    const k = new Kernel(randomUUID(), gatewaySpecName(baseSpec, link.hardwareClass), baseSpec, link.id, this.#kopts, 'starting');
    k.bind(link);
    this.kernels.set(k.id, k);
    this.#changed();
    this.opts.logger.info('starting kernel', { kernel: k.id, spec: k.name, provider: link.id });
    link.request({ type: 'start_kernel', kernelId: k.id, specName: baseSpec, env: o.env ?? {} }, this.opts.startTimeoutMs).then(
      () => {
        if (k.state === 'dead' || this.kernels.get(k.id) !== k) return;
        if (k.state === 'starting') k.state = 'idle';
        k.setReady(link);
      },
      (err: unknown) => {
        // A dropped tunnel is not a failed start: the provider says in its next hello whether it runs the kernel.
        if (err instanceof LinkClosedError) return;
        k.die(`the kernel failed to start: ${errorText(err)}`);
      },
    );
    return k;
  }

  async interrupt(id: string): Promise<void> {
    const k = this.require(id);
    const link = this.#liveLink(k);
    await link.request({ type: 'interrupt_kernel', kernelId: k.id });
  }

  /** Restarts the kernel; resolves when the new process answered (or rejects). */
  async restart(id: string): Promise<void> {
    const k = this.require(id);
    const link = this.#liveLink(k);
    k.restartPending = true;
    k.state = 'restarting';
    k.hold();
    k.emitStatus('restarting');
    try {
      await link.request({ type: 'restart_kernel', kernelId: k.id }, this.opts.restartTimeoutMs);
      k.restartPending = false;
      // The await above may have seen the kernel die or go away.
      if (isDead(k) || this.kernels.get(k.id) !== k) return;
      k.state = 'idle';
      k.setReady(link);
    } catch (err) {
      k.restartPending = false;
      if (!(err instanceof LinkClosedError)) k.die(`the kernel failed to restart: ${errorText(err)}`);
      throw err;
    }
  }

  /** Removes the kernel at once and asks its provider to stop it. Returns false for an unknown id. */
  async shutdown(id: string, reason: string): Promise<boolean> {
    const k = this.get(id);
    if (!k) return false;
    const wasDead = k.state === 'dead';
    this.#tombstones.add(k.id, k.providerId);
    this.#drop(k, 1000, 'kernel shut down');
    this.opts.logger.info('kernel shut down', { kernel: k.id, reason });
    const link = k.link ?? this.providers.get(k.providerId);
    link?.forgetCredit(k.id);
    if (link && !link.closed && !wasDead) {
      await link.request({ type: 'shutdown_kernel', kernelId: k.id }).catch((err: unknown) => {
        this.opts.logger.warn('provider did not confirm a kernel shutdown', { kernel: k.id, error: errorText(err) });
      });
    }
    return true;
  }

  // ---- provider events ----------------------------------------------------------------

  onAttach(link: ProviderLink, hello: Hello): void {
    const listed = new Map(hello.kernels.map((ad) => [ad.kernelId, ad]));
    const me = link.id.toLowerCase();
    for (const k of this.kernels.values()) {
      if (k.providerId.toLowerCase() !== me) continue;
      const ad = listed.get(k.id);
      if (!ad) {
        k.die('the provider reconnected without this kernel');
        continue;
      }
      listed.delete(k.id);
      if (k.state === 'dead') {
        this.#stopOn(link, k.id, 'declared dead while its provider was away');
        continue;
      }
      if (k.graceTimer) clearTimeout(k.graceTimer);
      k.graceTimer = undefined;
      k.restartPending = false;
      k.state = ad.status;
      k.setReady(link);
      this.opts.logger.info('kernel re-attached', { kernel: k.id, provider: link.id });
    }
    for (const ad of listed.values()) {
      if (this.#tombstones.has(ad.kernelId)) {
        this.#stopOn(link, ad.kernelId, 'shut down while its provider was away');
        continue;
      }
      if (this.kernels.has(ad.kernelId)) {
        this.opts.logger.warn('a provider lists a kernel that runs elsewhere; ignoring it', { kernel: ad.kernelId, provider: link.id });
        continue;
      }
      // Known to the provider, not to us: the gateway restarted. Recreate the record.
      const k = new Kernel(ad.kernelId, gatewaySpecName(ad.specName, link.hardwareClass), ad.specName, link.id, this.#kopts, ad.status);
      this.kernels.set(k.id, k);
      k.setReady(link);
      this.opts.logger.info('kernel adopted from a reconnecting provider', { kernel: k.id, provider: link.id });
      this.#changed();
    }
  }

  onDetach(link: ProviderLink): void {
    const me = link.id.toLowerCase();
    for (const k of this.kernels.values()) {
      if (k.providerId.toLowerCase() !== me || k.state === 'dead') continue;
      k.detachLink();
      if (k.graceTimer) clearTimeout(k.graceTimer);
      k.graceTimer = setTimeout(() => {
        k.graceTimer = undefined;
        k.die(`its provider did not come back within ${this.opts.graceMs} ms`);
      }, this.opts.graceMs);
    }
  }

  onKernelFrame(link: ProviderLink, kernelId: string, payload: Buffer, frameBytes: number): void {
    const k = this.kernels.get(kernelId);
    if (!k || k.providerId.toLowerCase() !== link.id.toLowerCase()) {
      link.grantCredit(kernelId, frameBytes);
      return;
    }
    let peek;
    try {
      peek = peekV1(payload, { maxBytes: this.opts.maxFrameBytes });
    } catch (err) {
      this.opts.logger.warn('provider sent an undecodable kernel message; dropped', { kernel: kernelId, error: errorText(err) });
      link.grantCredit(kernelId, frameBytes);
      return;
    }
    k.fromKernel(link, payload, peek, frameBytes);
    if (peek.channel === 'shell' && peek.header.msg_type === 'execute_reply' && this.opts.onExecuteReply) this.#receipts.defer(k, payload);
    else if (this.#receipts.waiting && peek.channel === 'iopub' && k.state === 'idle') this.#receipts.afterIdle();
  }

  onKernelPart(link: ProviderLink, kernelId: string, part: KernelPart, frameBytes: number): boolean {
    const k = this.kernels.get(kernelId);
    if (!k || k.providerId.toLowerCase() !== link.id.toLowerCase()) {
      link.grantCredit(kernelId, frameBytes);
      return false;
    }
    let peek: V1Peek | undefined;
    if (part.offset === 0) {
      try {
        peek = peekPart(part, this.opts.maxFrameBytes);
      } catch (err) {
        this.opts.logger.warn('provider sent an undecodable kernel message in parts; dropped', { kernel: kernelId, error: errorText(err) });
        link.grantCredit(kernelId, frameBytes);
        return false;
      }
      // Only output crosses in parts: replies carry receipts and statuses drive the kernel's
      // state, and both are read whole (docs/protocols.md).
      if (peek.channel !== 'iopub' || peek.header.msg_type === 'status') throw new ProtocolError(1007, 'only iopub output may be sent in parts');
    }
    return k.partFromKernel(link, part, peek, frameBytes);
  }

  onKernelPartAbort(link: ProviderLink, kernelId: string): void {
    this.kernels.get(kernelId)?.abortParts(link);
  }

  /** Records every receipt still waiting (before a REST request reads the ledger, and at shutdown). */
  flushReceipts(): void {
    this.#receipts.flush();
  }

  /**
   * A closing receipt: accepted for the ledger only from the provider the kernel ran on
   * (live or shut down here), after any execute_reply receipts still waiting, so the
   * ledger sees them in sequence.
   */
  onKernelReceipt(link: ProviderLink, ev: KernelReceiptEvent): void {
    const k = this.kernels.get(ev.kernelId);
    const owner = k ? k.providerId.toLowerCase() : this.#tombstones.providerOf(ev.kernelId);
    if (owner !== link.id.toLowerCase()) {
      this.opts.logger.warn('closing receipt for a kernel this provider does not run; ignored', { kernel: ev.kernelId, provider: link.id });
      return;
    }
    this.flushReceipts();
    this.opts.onClosingReceipt?.(link, ev.kernelId, ev.receipt, k);
  }

  onKernelStatus(link: ProviderLink, ev: KernelStatusEvent): void {
    const k = this.kernels.get(ev.kernelId);
    if (!k || k.providerId.toLowerCase() !== link.id.toLowerCase()) return;
    switch (ev.status) {
      case 'dead':
        // A message in parts it was sending will not be finished for it (the rest, if any
        // is still on the wire, is dropped); it must not hold the tunnel's budget for parts.
        link.abandonParts(ev.kernelId);
        k.die(ev.reason ?? 'the kernel process exited');
        return;
      case 'restarting':
        if (k.state === 'restarting' || k.state === 'dead') return;
        k.state = 'restarting';
        k.emitStatus('restarting');
        return;
      case 'starting':
        if (k.state !== 'dead') k.state = 'starting';
        return;
    }
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#keepalive.dispose();
    this.flushReceipts();
    // Kernels keep running on their providers: a restarted gateway adopts them from hello.
    for (const k of this.kernels.values()) k.dispose(CLOSE_RESTARTING, 'gateway restarting');
  }

  #liveLink(k: Kernel): ProviderLink {
    if (k.state === 'dead') throw conflict(`kernel ${k.id} is dead`);
    const link = k.link;
    if (!link || link.closed) throw conflict(`kernel ${k.id} is not reachable: its provider is disconnected`);
    return link;
  }

  #stopOn(link: ProviderLink, kernelId: string, why: string): void {
    this.opts.logger.info('asking a provider to stop a kernel', { kernel: kernelId, provider: link.id, why });
    link.request({ type: 'shutdown_kernel', kernelId }).catch((err: unknown) => {
      this.opts.logger.warn('provider did not confirm a kernel shutdown', { kernel: kernelId, error: errorText(err) });
    });
  }
}
