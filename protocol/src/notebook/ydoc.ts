// The Yjs schema of an open notebook: one Y.Doc per notebook, shared by every tab
// and, later, every collaborator through a gateway room.
//
//   doc.getMap('notebook')
//     'nbformat'        number (4)
//     'nbformat_minor'  number
//     'metadata'        JSON object (replaced whole: notebook metadata is small and rarely edited)
//   doc.getArray('order')   Y.Array<string>  cell ids in display order
//   doc.getMap('cells')     Y.Map<Y.Map>     cell id → cell
//     cell: 'id' string, 'cell_type' 'code'|'markdown'|'raw', 'source' Y.Text,
//           'metadata' JSON object, 'attachments' JSON object (markdown/raw, optional),
//           'outputs' Y.Array<JSON output> (code), 'execution_count' number|null (code)
//
// Why order apart from content: a cell moved by two people at once must not be
// duplicated. Moving = deleting its id from `order` and inserting it elsewhere; the
// cell's content (and its Y.Text history) never moves. If concurrent moves leave an id
// in `order` twice, readers keep its first occurrence, which every peer computes the
// same way because Y.Array converges. Ids in `order` with no cell are skipped; cells
// missing from `order` (a concurrent delete of the id racing an insert) are appended
// in id order so nothing is ever lost.
import * as Y from 'yjs';
import type { CellType, JsonObject, JsonValue, Output } from './nbformat.ts';
import { newCellId } from './nbformat.ts';

export const ORDER = 'order';
export const CELLS = 'cells';
export const NOTEBOOK = 'notebook';

export type YCell = Y.Map<unknown>;

export function orderArray(doc: Y.Doc): Y.Array<string> {
  return doc.getArray<string>(ORDER);
}
export function cellsMap(doc: Y.Doc): Y.Map<YCell> {
  return doc.getMap<YCell>(CELLS);
}
export function notebookMap(doc: Y.Doc): Y.Map<unknown> {
  return doc.getMap<unknown>(NOTEBOOK);
}

/** Cell ids in display order, deduplicated and reconciled as described above. */
export function cellOrder(doc: Y.Doc): string[] {
  const cells = cellsMap(doc);
  const seen = new Set<string>();
  const out: string[] = [];
  for (const id of orderArray(doc).toArray()) {
    if (seen.has(id) || !cells.has(id)) continue;
    seen.add(id);
    out.push(id);
  }
  if (out.length !== cells.size) {
    const missing = [...cells.keys()].filter((id) => !seen.has(id)).sort();
    out.push(...missing);
  }
  return out;
}

export interface NewCellInit {
  readonly id?: string;
  readonly cell_type: CellType;
  readonly source?: string;
  readonly metadata?: JsonObject;
  readonly attachments?: JsonObject;
  readonly outputs?: readonly Output[];
  readonly execution_count?: number | null;
}

/** Builds a cell's Y.Map (not yet in a document). */
export function makeYCell(init: NewCellInit & { readonly id: string }): YCell {
  const m = new Y.Map<unknown>();
  m.set('id', init.id);
  m.set('cell_type', init.cell_type);
  const text = new Y.Text();
  if (init.source) text.insert(0, init.source);
  m.set('source', text);
  m.set('metadata', init.metadata ?? {});
  if (init.cell_type === 'code') {
    const outs = new Y.Array<Output>();
    if (init.outputs?.length) outs.push([...init.outputs]);
    m.set('outputs', outs);
    m.set('execution_count', init.execution_count ?? null);
  } else if (init.attachments !== undefined) {
    m.set('attachments', init.attachments);
  }
  return m;
}

/** Inserts a cell at display position `index` (clamped). Call inside a transaction for atomic multi-cell edits. */
export function insertCell(doc: Y.Doc, index: number, init: NewCellInit): string {
  // A Y.Map is unreadable until integrated into a document, so the id is chosen here.
  const id = init.id ?? newCellId();
  const cell = makeYCell({ ...init, id });
  doc.transact(() => {
    cellsMap(doc).set(id, cell);
    orderArray(doc).insert(rawIndexFor(doc, index), [id]);
  });
  return id;
}

/** Deletes a cell by id (its content and every occurrence in `order`). */
export function deleteCell(doc: Y.Doc, id: string): void {
  doc.transact(() => {
    removeFromOrder(doc, id);
    cellsMap(doc).delete(id);
  });
}

/** Moves a cell to display position `index` (position counted after removing it). */
export function moveCell(doc: Y.Doc, id: string, index: number): void {
  if (!cellsMap(doc).has(id)) return;
  doc.transact(() => {
    removeFromOrder(doc, id);
    orderArray(doc).insert(rawIndexFor(doc, index), [id]);
  });
}

function removeFromOrder(doc: Y.Doc, id: string): void {
  const order = orderArray(doc);
  const arr = order.toArray();
  for (let i = arr.length - 1; i >= 0; i--) if (arr[i] === id) order.delete(i, 1);
}

/** Maps a display index to an index in the raw `order` array (which may hold stale or duplicate ids). */
function rawIndexFor(doc: Y.Doc, displayIndex: number): number {
  const display = cellOrder(doc);
  if (displayIndex <= 0) return 0;
  if (displayIndex >= display.length) return orderArray(doc).length;
  const anchor = display[displayIndex];
  const raw = orderArray(doc).toArray();
  const at = raw.indexOf(anchor as string);
  return at < 0 ? raw.length : at;
}

export function getCell(doc: Y.Doc, id: string): YCell | undefined {
  return cellsMap(doc).get(id);
}
export function cellSource(cell: YCell): Y.Text {
  return cell.get('source') as Y.Text;
}
export function cellType(cell: YCell): CellType {
  return cell.get('cell_type') as CellType;
}
export function cellOutputs(cell: YCell): Y.Array<Output> | undefined {
  return cell.get('outputs') as Y.Array<Output> | undefined;
}
export function cellMetadata(cell: YCell): JsonObject {
  return (cell.get('metadata') as JsonObject | undefined) ?? {};
}
/** Replaces one top-level metadata key (undefined deletes it). */
export function setCellMetadataKey(cell: YCell, key: string, value: JsonValue | undefined): void {
  const next: Record<string, JsonValue> = { ...cellMetadata(cell) };
  if (value === undefined) delete next[key];
  else next[key] = value;
  cell.set('metadata', next);
}

/**
 * Changes a cell's type in place, as Jupyter's M/Y/R do: source and metadata stay;
 * outputs and execution count exist only on code cells; attachments only elsewhere.
 */
export function setCellType(cell: YCell, type: CellType): void {
  if (cellType(cell) === type) return;
  const apply = (): void => {
    cell.set('cell_type', type);
    if (type === 'code') {
      cell.delete('attachments');
      cell.set('outputs', new Y.Array<Output>());
      cell.set('execution_count', null);
    } else {
      cell.delete('outputs');
      cell.delete('execution_count');
    }
  };
  if (cell.doc) cell.doc.transact(apply);
  else apply();
}
