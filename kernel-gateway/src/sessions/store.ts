// Jupyter Server's sessions (jupyter_server/services/sessions/sessionmanager.py): a session
// ties a path (a notebook, a console) to a kernel. Rows live in memory and, through
// onChanged, in the gateway's state file (state-file.ts), so that they survive a gateway
// restart along with their kernels.
import { randomUUID } from 'node:crypto';
import type { SessionRecord } from '../state-file.ts';
import type { KernelModel } from '../kernels/kernel.ts';
import type { KernelManager } from '../kernels/manager.ts';
import type { PlacementConstraints } from '../scheduler.ts';

export interface SessionModel {
  readonly id: string;
  readonly path: string;
  readonly name: string;
  readonly type: string;
  readonly kernel: KernelModel;
  /** Jupyter Server adds this for `type: notebook` (older clients read it). */
  readonly notebook?: { readonly path: string; readonly name: string };
}

interface SessionRow {
  readonly id: string;
  path: string;
  name: string;
  type: string;
  kernelId: string;
}

export interface KernelChoice {
  readonly id?: string | undefined;
  readonly name?: string | undefined;
  readonly constraints?: PlacementConstraints;
}

export class SessionStore {
  readonly #rows = new Map<string, SessionRow>();
  readonly #changedListeners = new Set<() => void>();

  constructor(readonly manager: KernelManager) {
    // A kernel that goes away (deleted, culled) takes its sessions with it, as in Jupyter.
    manager.onRemoved((kernelId) => {
      for (const [id, row] of this.#rows) if (row.kernelId === kernelId) this.#delete(id);
    });
  }

  /** Called whenever a row is added, changed or removed (the gateway's state file follows). */
  onChanged(listener: () => void): void {
    this.#changedListeners.add(listener);
  }

  /** The rows to remember across a gateway restart. */
  records(): SessionRecord[] {
    return [...this.#rows.values()].map((r) => ({ id: r.id, path: r.path, name: r.name, type: r.type, kernelId: r.kernelId }));
  }

  /** Rows from before a gateway restart, for kernels the manager restored. */
  restore(records: readonly SessionRecord[]): void {
    for (const r of records) if (this.manager.get(r.kernelId) && !this.#rows.has(r.id)) this.#rows.set(r.id, { ...r });
  }

  #changed(): void {
    for (const l of this.#changedListeners) l();
  }

  #delete(id: string): void {
    if (this.#rows.delete(id)) this.#changed();
  }

  list(): SessionModel[] {
    return [...this.#rows.values()].map((r) => this.#model(r)).filter((m): m is SessionModel => m !== undefined);
  }

  get(id: string): SessionModel | undefined {
    const row = this.#rows.get(id);
    return row ? this.#model(row) : undefined;
  }

  byPath(path: string): SessionModel | undefined {
    for (const r of this.#rows.values()) if (r.path === path) return this.#model(r);
    return undefined;
  }

  /** Throws PlacementError when a new kernel cannot be placed. */
  create(o: { path: string; name: string; type: string; kernel: KernelChoice }): SessionModel {
    const existing = this.byPath(o.path);
    if (existing) return existing;
    const kernelId = this.#kernelFor(o.kernel, o.path);
    const row: SessionRow = { id: randomUUID(), path: o.path, name: o.name, type: o.type, kernelId };
    this.#rows.set(row.id, row);
    this.#changed();
    return this.#model(row)!;
  }

  /** Applies changes; returns the new model and the kernel it replaced (to shut down), if any. */
  update(id: string, changes: { path?: string; name?: string; type?: string; kernel?: KernelChoice }): { model: SessionModel; replacedKernel: string | undefined } | undefined {
    const row = this.#rows.get(id);
    if (!row) return undefined;
    const before = row.kernelId;
    if (changes.kernel) row.kernelId = this.#kernelFor(changes.kernel, changes.path ?? row.path, true);
    if (changes.path !== undefined) row.path = changes.path;
    if (changes.name !== undefined) row.name = changes.name;
    if (changes.type !== undefined) row.type = changes.type;
    this.#changed();
    const model = this.#model(row);
    if (!model) return undefined;
    return { model, replacedKernel: row.kernelId !== before ? before : undefined };
  }

  /** Removes the row; returns its kernel id. */
  delete(id: string): string | undefined {
    const row = this.#rows.get(id);
    if (!row) return undefined;
    this.#delete(id);
    return row.kernelId;
  }

  #kernelFor(choice: KernelChoice, path: string, strictId = false): string {
    if (choice.id) {
      const k = this.manager.get(choice.id);
      if (k) return k.id;
      if (strictId) throw new UnknownKernelError(choice.id);
    }
    const k = this.manager.start({ name: choice.name, env: { JPY_SESSION_NAME: path }, constraints: choice.constraints ?? {} });
    return k.id;
  }

  #model(row: SessionRow): SessionModel | undefined {
    const k = this.manager.get(row.kernelId);
    if (!k) {
      this.#delete(row.id);
      return undefined;
    }
    return {
      id: row.id,
      path: row.path,
      name: row.name,
      type: row.type,
      kernel: k.model(),
      ...(row.type === 'notebook' ? { notebook: { path: row.path, name: row.name } } : {}),
    };
  }
}

export class UnknownKernelError extends Error {
  override name = 'UnknownKernelError';
  constructor(readonly kernelId: string) {
    super(`kernel ${kernelId.slice(0, 64)} not found`);
  }
}
