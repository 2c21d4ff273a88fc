// Kernels shut down here, and the provider each ran on. A provider that was away when its
// kernel was deleted may still run it, and lists it when it reconnects: it is told to stop
// it rather than have it adopted; and a kernel's closing receipt may still come after it
// was deleted, accepted only from that provider. Bounded (oldest out); the most recent are
// kept across a gateway restart (state-file.ts).
import type { TombstoneRecord } from '../state-file.ts';

const MAX_TOMBSTONES = 10_000;
/** Tombstones kept in the state file: the most recent. */
const SAVED_TOMBSTONES = 1_000;

export class Tombstones {
  /** Kernel id → lower-cased provider id, oldest first. */
  readonly #byKernel = new Map<string, string>();

  has(kernelId: string): boolean {
    return this.#byKernel.has(kernelId);
  }

  /** The provider (lower-cased) the deleted kernel ran on. */
  providerOf(kernelId: string): string | undefined {
    return this.#byKernel.get(kernelId);
  }

  add(kernelId: string, providerId: string): void {
    this.#byKernel.set(kernelId, providerId.toLowerCase());
    if (this.#byKernel.size > MAX_TOMBSTONES) {
      const first = this.#byKernel.keys().next().value;
      if (first !== undefined) this.#byKernel.delete(first);
    }
  }

  /** The most recent, to remember across a restart. */
  records(): TombstoneRecord[] {
    return [...this.#byKernel].slice(-SAVED_TOMBSTONES).map(([id, providerId]) => ({ id, providerId }));
  }

  /** Those remembered from before a restart. */
  restore(records: readonly TombstoneRecord[]): void {
    for (const t of records) this.#byKernel.set(t.id, t.providerId.toLowerCase());
  }
}
