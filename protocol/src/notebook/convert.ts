// nbformat 4.5 ⇄ Yjs notebook document. Lossless for everything nbformat stores:
// notebook and cell metadata, attachments, outputs (kept verbatim, including
// multiline-array mime data) and cell ids. Sources are normalised to one string in
// the document and written back as Jupyter writes them (a list of lines), which is
// the same text. `transient` output keys are in-memory only (nbformat: "not saved").
import * as Y from 'yjs';
import type { Cell, JsonObject, Notebook, Output } from './nbformat.ts';
import { joinSource, splitLines, upgradeNotebook } from './nbformat.ts';
import { splitNotebookLines } from './lines.ts';
import { cellOrder, cellsMap, makeYCell, notebookMap, orderArray } from './ydoc.ts';
import type { YCell } from './ydoc.ts';

/** Fills an empty Y.Doc with a notebook (one transaction, with `origin`). */
export function loadNotebook(doc: Y.Doc, input: Notebook, origin: unknown = null): void {
  const nb = upgradeNotebook(input);
  doc.transact(() => {
    const meta = notebookMap(doc);
    meta.set('nbformat', 4);
    meta.set('nbformat_minor', nb.nbformat_minor);
    meta.set('metadata', nb.metadata);
    const cells = cellsMap(doc);
    const order = orderArray(doc);
    if (order.length) order.delete(0, order.length);
    for (const id of [...cells.keys()]) cells.delete(id);
    const ids: string[] = [];
    for (const c of nb.cells) {
      cells.set(c.id, makeYCell({
        id: c.id,
        cell_type: c.cell_type,
        source: joinSource(c.source),
        metadata: c.metadata,
        ...(c.cell_type === 'code'
          ? { outputs: c.outputs, execution_count: c.execution_count }
          : c.attachments !== undefined ? { attachments: c.attachments } : {}),
      }));
      ids.push(c.id);
    }
    order.push(ids);
  }, origin);
}

/** Builds a new Y.Doc holding `nb`. */
export function notebookToYDoc(nb: Notebook): Y.Doc {
  const doc = new Y.Doc();
  loadNotebook(doc, nb);
  return doc;
}

/** Removes in-memory-only keys from an output before it is written to disk. */
export function outputForDisk(o: Output): Output {
  if ((o.output_type === 'display_data' || o.output_type === 'execute_result') && 'transient' in o) {
    const { transient: _t, ...rest } = o;
    return rest as Output;
  }
  return o;
}

export function yCellToCell(c: YCell): Cell {
  const id = c.get('id') as string;
  const type = c.get('cell_type') as Cell['cell_type'];
  const source = splitLines((c.get('source') as Y.Text).toString());
  const metadata = (c.get('metadata') as JsonObject | undefined) ?? {};
  if (type === 'code') {
    const outs = (c.get('outputs') as Y.Array<Output> | undefined)?.toArray() ?? [];
    const ec = c.get('execution_count');
    return {
      id,
      cell_type: 'code',
      source,
      metadata,
      outputs: outs.map(outputForDisk),
      execution_count: typeof ec === 'number' ? ec : null,
    };
  }
  const attachments = c.get('attachments') as JsonObject | undefined;
  return attachments === undefined
    ? { id, cell_type: type, source, metadata }
    : { id, cell_type: type, source, metadata, attachments };
}

/** Serialises the document to an nbformat 4.5 notebook. */
export function yDocToNotebook(doc: Y.Doc): Notebook {
  const meta = notebookMap(doc);
  const cells = cellsMap(doc);
  const minor = meta.get('nbformat_minor');
  return {
    nbformat: 4,
    nbformat_minor: typeof minor === 'number' && minor >= 5 ? minor : 5,
    metadata: (meta.get('metadata') as JsonObject | undefined) ?? {},
    cells: cellOrder(doc).map((id) => yCellToCell(cells.get(id) as YCell)),
  };
}

/**
 * Serialises a notebook as Jupyter does (nbformat.writes: sorted keys, indent 1,
 * trailing newline), so files written by Kinesis diff cleanly against Jupyter's.
 */
export function stringifyNotebook(nb: Notebook): string {
  return JSON.stringify(sortKeys(splitNotebookLines(nb)), null, 1) + '\n';
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}
