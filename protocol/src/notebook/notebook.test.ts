import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import {
  NotebookFormatError, cellOrder, cellSource, deleteCell, getCell, insertCell, loadNotebook, moveCell,
  notebookToYDoc, parseNotebook, rejoinNotebookLines, splitNotebookLines, setCellType, splitLines, stringifyNotebook, validateNotebook, yDocToNotebook,
} from './index.ts';
import type { Notebook } from './index.ts';
import { prng as rng } from '../testing/prng.ts';

const sample: Notebook = {
  nbformat: 4,
  nbformat_minor: 5,
  metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' }, custom: { nested: [1, 'two', null] } },
  cells: [
    { id: 'md-1', cell_type: 'markdown', source: ['# Title\n', 'see ![x](attachment:x.png)'], metadata: { tags: ['a'] }, attachments: { 'x.png': { 'image/png': 'iVBORw0KGgo=' } } },
    {
      id: 'code-1', cell_type: 'code', source: ['print(1)\n', 'x = 2'], metadata: { collapsed: false }, execution_count: 3,
      outputs: [
        { output_type: 'stream', name: 'stdout', text: ['1\n'] },
        { output_type: 'execute_result', execution_count: 3, data: { 'text/plain': ['2'], 'application/json': { a: [1, 2] } }, metadata: { isolated: true } },
        { output_type: 'display_data', data: { 'image/png': 'AAAA' }, metadata: { 'image/png': { width: 10 } } },
        { output_type: 'error', ename: 'ValueError', evalue: 'bad', traceback: ['\u001b[31mValueError\u001b[0m'] },
      ],
    },
    { id: 'raw-1', cell_type: 'raw', source: [], metadata: { format: 'text/latex' } },
  ],
};


describe('nbformat', () => {
  it('round-trips through the Yjs document losslessly', () => {
    const doc = notebookToYDoc(sample);
    const back = yDocToNotebook(doc);
    expect(back).toEqual(sample);
    // and through the file format
    expect(parseNotebook(stringifyNotebook(back))).toEqual(sample);
  });

  it('normalises string sources to Jupyter line lists without changing text', () => {
    expect(splitLines('a\nb')).toEqual(['a\n', 'b']);
    expect(splitLines('a\n')).toEqual(['a\n']);
    expect(splitLines('')).toEqual([]);
    const nb: Notebook = { ...sample, cells: [{ id: 'c', cell_type: 'code', source: 'x\ny\n', metadata: {}, outputs: [], execution_count: null }] };
    expect(yDocToNotebook(notebookToYDoc(nb)).cells[0]?.source).toEqual(['x\n', 'y\n']);
  });

  it('splits text into lines on disk and rejoins them for the API, as Jupyter does', () => {
    const joined = rejoinNotebookLines(sample);
    const c = joined.cells[1];
    expect(c?.source).toBe('print(1)\nx = 2');
    expect(c?.cell_type === 'code' && c.outputs[0]).toEqual({ output_type: 'stream', name: 'stdout', text: '1\n' });
    expect(c?.cell_type === 'code' && c.outputs[2]).toEqual(sample.cells[1]?.cell_type === 'code' && sample.cells[1].outputs[2]); // base64 PNG untouched
    expect(splitNotebookLines(joined)).toEqual(sample);
    expect(JSON.parse(stringifyNotebook(joined))).toEqual(JSON.parse(stringifyNotebook(sample)));
  });

  it('drops transient output keys when writing', () => {
    const nb: Notebook = { ...sample, cells: [{ id: 'c', cell_type: 'code', source: '', metadata: {}, execution_count: 1, outputs: [{ output_type: 'display_data', data: { 'text/plain': 'x' }, metadata: {}, transient: { display_id: 'd1' } }] }] };
    const out = yDocToNotebook(notebookToYDoc(nb)).cells[0];
    expect(out?.cell_type === 'code' && out.outputs[0]).toEqual({ output_type: 'display_data', data: { 'text/plain': 'x' }, metadata: {} });
  });

  it('upgrades 4.4 notebooks by adding cell ids', () => {
    const old = { nbformat: 4, nbformat_minor: 4, metadata: {}, cells: [{ cell_type: 'markdown', source: 'hi', metadata: {} }] };
    const nb = parseNotebook(JSON.stringify(old));
    expect(nb.nbformat_minor).toBe(5);
    expect(nb.cells[0]?.id).toMatch(/^[0-9a-f]{16}$/);
  });

  it.each([
    ['not json', '{', ''],
    ['wrong major', JSON.stringify({ nbformat: 3, nbformat_minor: 0, metadata: {}, cells: [] }), 'nbformat'],
    ['bad cell type', JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ id: 'a', cell_type: 'x', source: '', metadata: {} }] }), 'cells[0].cell_type'],
    ['missing id in 4.5', JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ cell_type: 'raw', source: '', metadata: {} }] }), 'cells[0].id'],
    ['bad id', JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ id: 'a b', cell_type: 'raw', source: '', metadata: {} }] }), 'cells[0].id'],
    ['duplicate id', JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ id: 'a', cell_type: 'raw', source: '', metadata: {} }, { id: 'a', cell_type: 'raw', source: '', metadata: {} }] }), 'cells[1].id'],
    ['bad stream', JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ id: 'a', cell_type: 'code', source: '', metadata: {}, execution_count: null, outputs: [{ output_type: 'stream', name: 'stdin', text: '' }] }] }), 'cells[0].outputs[0].name'],
    ['bad mime', JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ id: 'a', cell_type: 'code', source: '', metadata: {}, execution_count: null, outputs: [{ output_type: 'display_data', data: { 'text/html': 5 }, metadata: {} }] }] }), 'cells[0].outputs[0].data["text/html"]'],
  ])('rejects %s with a path', (_name, text, path) => {
    try {
      parseNotebook(text);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(NotebookFormatError);
      expect((e as NotebookFormatError).path).toBe(path);
    }
  });

  it('rejects oversize input before parsing', () => {
    expect(() => parseNotebook('x'.repeat(101), 100)).toThrow(/over 100/);
  });

  it('validateNotebook accepts the sample', () => {
    expect(() => validateNotebook(JSON.parse(JSON.stringify(sample)))).not.toThrow();
  });
});

describe('Yjs notebook document', () => {
  it('inserts, moves, deletes and changes cell types', () => {
    const doc = new Y.Doc();
    loadNotebook(doc, { nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [] });
    const a = insertCell(doc, 0, { cell_type: 'code', source: 'a' });
    const b = insertCell(doc, 1, { cell_type: 'markdown', source: 'b' });
    const c = insertCell(doc, 1, { cell_type: 'raw', source: 'c' });
    expect(cellOrder(doc)).toEqual([a, c, b]);
    moveCell(doc, a, 2);
    expect(cellOrder(doc)).toEqual([c, b, a]);
    deleteCell(doc, c);
    expect(cellOrder(doc)).toEqual([b, a]);
    const cell = getCell(doc, a)!;
    setCellType(cell, 'markdown');
    expect(yDocToNotebook(doc).cells[1]).toEqual({ id: a, cell_type: 'markdown', source: ['a'], metadata: {} });
    expect(cellSource(cell).toString()).toBe('a');
  });

  // Two or three peers apply random cell operations concurrently, exchange updates
  // in random order, and must converge to the same notebook with no duplicated or
  // lost cells (the reason `order` is kept apart from content).
  it.each([1, 2, 3, 4, 5, 6, 7, 8])('converges under concurrent random edits (seed %i)', (seed) => {
    const rand = rng(seed);
    const peers = [new Y.Doc(), new Y.Doc(), new Y.Doc()];
    const base = notebookToYDoc({ ...sample });
    const init = Y.encodeStateAsUpdate(base);
    for (const p of peers) Y.applyUpdate(p, init);
    const pending: Uint8Array[][] = peers.map(() => []);
    peers.forEach((p, i) => p.on('update', (u: Uint8Array) => peers.forEach((_, j) => j !== i && pending[j]!.push(u))));
    for (let round = 0; round < 30; round++) {
      for (const p of peers) {
        const order = cellOrder(p);
        const op = rand();
        const pick = order[Math.floor(rand() * order.length)];
        if (op < 0.3 || !pick) insertCell(p, Math.floor(rand() * (order.length + 1)), { cell_type: 'code', source: `s${round}` });
        else if (op < 0.6) moveCell(p, pick, Math.floor(rand() * order.length));
        else if (op < 0.75) deleteCell(p, pick);
        else cellSource(getCell(p, pick)!).insert(0, 'x');
      }
      // deliver a random subset, out of order
      peers.forEach((p, j) => {
        const q = pending[j]!;
        while (q.length && rand() < 0.6) Y.applyUpdate(p, q.splice(Math.floor(rand() * q.length), 1)[0]!);
      });
    }
    peers.forEach((p, j) => { for (const u of pending[j]!) Y.applyUpdate(p, u); });
    const results = peers.map((p) => yDocToNotebook(p));
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
    const ids = results[0]!.cells.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBe(cellsCount(peers[0]!));
  });
});

function cellsCount(doc: Y.Doc): number {
  return doc.getMap('cells').size;
}
