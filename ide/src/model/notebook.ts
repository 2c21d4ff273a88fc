// The open notebook: a Y.Doc (schema in @kinesis/protocol/notebook) plus the Solid
// signals the view reads. The document is the truth; signals are derived from Yjs
// events so a remote collaborator's edit renders exactly like a local one.
// Cell operations run in transactions tagged CELL_OP, which is all the cell-level
// undo manager tracks: text edits have Monaco's own undo, outputs are not undoable.
import { createSignal } from 'solid-js';
import type { Accessor } from 'solid-js';
import * as Y from 'yjs';
import {
  cellOrder, cellOutputs, cellsMap, deleteCell, getCell, insertCell, loadNotebook, moveCell, newCellId,
  notebookMap, orderArray, setCellType, yCellToCell, yDocToNotebook,
} from '@kinesis/protocol/notebook/index';
import type { Cell, CellType, JsonObject, Notebook, Output, YCell } from '@kinesis/protocol/notebook/index';

export const CELL_OP = Symbol('cell-op');
export const LOAD = Symbol('load');
export const OUTPUTS = Symbol('outputs');

export class NotebookModel {
  readonly doc = new Y.Doc();
  readonly undo: Y.UndoManager;
  readonly order: Accessor<readonly string[]>;
  /** Bumped on any change that should be saved. */
  readonly version: Accessor<number>;
  readonly #setOrder: (v: readonly string[]) => void;
  readonly #setVersion: (f: (v: number) => number) => void;
  #disposed = false;

  constructor(nb: Notebook) {
    // An empty notebook opens with one empty code cell, as in Jupyter; it is saved
    // only if the user changes something.
    const initial: Notebook = nb.cells.length ? nb : { ...nb, cells: [{ id: newCellId(), cell_type: 'code', source: '', metadata: {}, outputs: [], execution_count: null }] };
    loadNotebook(this.doc, initial, LOAD);
    const [order, setOrder] = createSignal<readonly string[]>(cellOrder(this.doc), { equals: false });
    const [version, setVersion] = createSignal(0);
    this.order = order;
    this.version = version;
    this.#setOrder = setOrder;
    this.#setVersion = setVersion;
    this.undo = new Y.UndoManager([orderArray(this.doc), cellsMap(this.doc)], { trackedOrigins: new Set([CELL_OP]), captureTimeout: 0 });
    orderArray(this.doc).observe(this.#refreshOrder);
    cellsMap(this.doc).observe(this.#refreshOrder);
    // afterTransaction, not 'update': an 'update' listener makes Yjs encode every
    // transaction (every keystroke), which only a network provider needs.
    this.doc.on('afterTransaction', this.#onTransaction);
  }

  readonly #refreshOrder = (): void => this.#setOrder(cellOrder(this.doc));
  readonly #onTransaction = (tr: Y.Transaction): void => {
    if (tr.origin !== LOAD && (tr.changed.size > 0 || tr.deleteSet.clients.size > 0)) this.#setVersion((v) => v + 1);
  };

  cell(id: string): YCell | undefined {
    return getCell(this.doc, id);
  }

  indexOf(id: string): number {
    return this.order().indexOf(id);
  }

  get metadata(): JsonObject {
    return (notebookMap(this.doc).get('metadata') as JsonObject | undefined) ?? {};
  }

  setMetadata(m: JsonObject): void {
    notebookMap(this.doc).set('metadata', m);
  }

  toNotebook(): Notebook {
    return yDocToNotebook(this.doc);
  }

  cellJson(id: string): Cell | undefined {
    const c = this.cell(id);
    return c ? yCellToCell(c) : undefined;
  }

  insert(index: number, type: CellType, source = ''): string {
    let id = '';
    this.doc.transact(() => {
      id = insertCell(this.doc, index, { cell_type: type, source });
    }, CELL_OP);
    return id;
  }

  /** Inserts copies of cells (new ids, as Jupyter's paste does) at `index`; returns the new ids. */
  insertCopies(index: number, cells: readonly Cell[]): string[] {
    const ids: string[] = [];
    this.doc.transact(() => {
      cells.forEach((c, k) => {
        const source = Array.isArray(c.source) ? c.source.join('') : (c.source as string);
        ids.push(insertCell(this.doc, index + k, {
          id: newCellId(),
          cell_type: c.cell_type,
          source,
          metadata: c.metadata,
          ...(c.cell_type === 'code' ? { outputs: c.outputs, execution_count: c.execution_count } : c.attachments ? { attachments: c.attachments } : {}),
        }));
      });
    }, CELL_OP);
    return ids;
  }

  delete(ids: readonly string[]): void {
    this.doc.transact(() => {
      for (const id of ids) deleteCell(this.doc, id);
    }, CELL_OP);
  }

  /** Moves `ids` (kept in their current relative order) so the first lands at display index `to`. */
  move(ids: readonly string[], to: number): void {
    const order = this.order();
    const moving = order.filter((id) => ids.includes(id));
    const before = order.slice(0, Math.max(0, to)).filter((id) => !ids.includes(id)).length;
    this.doc.transact(() => {
      moving.forEach((id, k) => moveCell(this.doc, id, before + k));
    }, CELL_OP);
  }

  setType(ids: readonly string[], type: CellType): void {
    this.doc.transact(() => {
      for (const id of ids) {
        const c = this.cell(id);
        if (c) setCellType(c, type);
      }
    }, CELL_OP);
  }

  /** Replaces a cell's outputs with `next`, touching only the changed tail of the Y.Array. */
  writeOutputs(id: string, next: readonly Output[]): void {
    const arr = this.cell(id) ? cellOutputs(this.cell(id) as YCell) : undefined;
    if (!arr) return;
    this.doc.transact(() => {
      const cur = arr.toArray();
      let i = 0;
      while (i < cur.length && i < next.length && cur[i] === next[i]) i++;
      if (i < cur.length) arr.delete(i, cur.length - i);
      if (i < next.length) arr.insert(i, next.slice(i) as Output[]);
    }, OUTPUTS);
  }

  setExecutionCount(id: string, n: number | null): void {
    const c = this.cell(id);
    if (c && c.get('cell_type') === 'code') this.doc.transact(() => c.set('execution_count', n), OUTPUTS);
  }

  setCellMetadata(id: string, key: string, value: JsonObject | undefined): void {
    const c = this.cell(id);
    if (!c) return;
    this.doc.transact(() => {
      const m: Record<string, unknown> = { ...((c.get('metadata') as JsonObject | undefined) ?? {}) };
      if (value === undefined) delete m[key];
      else m[key] = value;
      c.set('metadata', m);
    }, OUTPUTS);
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    orderArray(this.doc).unobserve(this.#refreshOrder);
    cellsMap(this.doc).unobserve(this.#refreshOrder);
    this.doc.off('afterTransaction', this.#onTransaction);
    this.undo.destroy();
    this.doc.destroy();
  }
}

/** A Solid signal that follows one Y type (observeDeep), disposed by `onCleanup` of the caller. */
export function observeY<T>(type: Y.AbstractType<unknown>, read: () => T, cleanup: (f: () => void) => void): Accessor<T> {
  const [v, setV] = createSignal<T>(read(), { equals: false });
  const f = (): void => {
    setV(() => read());
  };
  type.observeDeep(f);
  cleanup(() => type.unobserveDeep(f));
  return v;
}
