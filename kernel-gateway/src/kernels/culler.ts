// Idle culling with Jupyter Server's knobs (MappingKernelManager: cull_idle_timeout,
// cull_interval, cull_connected, cull_busy; jupyter_server/services/kernels/kernelmanager.py
// `cull_kernel_if_idle`): every `cull_interval` seconds, a kernel idle for longer than
// `cull_idle_timeout` is shut down, unless it is busy (and cull_busy is off) or has
// connections (and cull_connected is off). Starting/restarting kernels are never culled.
import type { Logger } from '../logger.ts';
import type { KernelManager } from './manager.ts';

export interface CullOptions {
  /** Seconds of inactivity before a kernel is culled; 0 (default) turns culling off. */
  readonly cull_idle_timeout?: number;
  /** Seconds between checks; default 300. */
  readonly cull_interval?: number;
  /** Cull kernels that have clients connected; default false. */
  readonly cull_connected?: boolean;
  /** Cull kernels that are busy; default false. */
  readonly cull_busy?: boolean;
}

export class Culler {
  readonly #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly manager: KernelManager,
    readonly opts: CullOptions,
    readonly logger: Logger,
  ) {
    const timeout = opts.cull_idle_timeout ?? 0;
    if (timeout > 0) {
      const interval = opts.cull_interval ?? 300;
      this.#timer = setInterval(() => void this.cullOnce(), Math.max(10, interval * 1000));
      this.#timer.unref();
    }
  }

  /** One culling pass; returns the ids it shut down. */
  async cullOnce(now = Date.now()): Promise<string[]> {
    const timeoutMs = (this.opts.cull_idle_timeout ?? 0) * 1000;
    if (timeoutMs <= 0) return [];
    const victims = [...this.manager.kernels.values()].filter((k) => {
      if (k.state === 'starting' || k.state === 'restarting') return false;
      if (k.state === 'busy' && !this.opts.cull_busy) return false;
      if (k.clients.size > 0 && !this.opts.cull_connected) return false;
      return now - k.lastActivity > timeoutMs;
    });
    for (const k of victims) {
      this.logger.info('culling idle kernel', { kernel: k.id, idleMs: now - k.lastActivity, state: k.state, connections: k.clients.size });
      await this.manager.shutdown(k.id, 'culled after being idle');
    }
    return victims.map((k) => k.id);
  }

  dispose(): void {
    if (this.#timer) clearInterval(this.#timer);
  }
}
