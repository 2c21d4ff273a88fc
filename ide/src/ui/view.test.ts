// The view model's commands on a real Yjs-backed NotebookModel (no DOM). The kernel
// is a stand-in that records which cells were sent, which is all these commands use.
import { describe, expect, it } from 'vitest';
import type { Notebook } from '@kinesis/protocol/notebook/index';
import type { KernelController } from '../kernel/session.ts';
import { NotebookModel } from '../model/notebook.ts';
import { NotebookView, handleCommandKey } from './view.ts';

const nb: Notebook = {
  nbformat: 4,
  nbformat_minor: 5,
  metadata: {},
  cells: ['a', 'b', 'c', 'd'].map((x) => ({ id: x, cell_type: 'code' as const, source: `${x} = 1`, metadata: {}, outputs: [], execution_count: null })),
};

function setup(): { model: NotebookModel; view: NotebookView; ran: string[] } {
  const model = new NotebookModel(nb);
  const ran: string[] = [];
  const kernel = { execute: async (id: string) => (ran.push(id), 'ok'), interrupt: async () => {}, restart: async () => {} } as unknown as KernelController;
  return { model, view: new NotebookView(model, kernel), ran };
}

const key = (k: string, mods: Partial<KeyboardEvent> = {}): KeyboardEvent => ({ key: k, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, ...mods }) as KeyboardEvent;
const ids = (m: NotebookModel): string[] => [...m.order()];
const sources = (m: NotebookModel): string[] => m.toNotebook().cells.map((c) => (typeof c.source === 'string' ? c.source : c.source.join('')));

describe('NotebookView', () => {
  it('inserts, deletes with D D, and undoes with Z', () => {
    const { model, view } = setup();
    const pending = { key: '', at: 0 };
    view.select('b');
    handleCommandKey(view, key('b'), pending);
    expect(model.order()).toHaveLength(5);
    expect(model.order()[2]).toBe(view.active());
    handleCommandKey(view, key('d'), pending);
    expect(model.order()).toHaveLength(5); // one D does nothing
    handleCommandKey(view, key('d'), pending);
    expect(ids(model)).toEqual(['a', 'b', 'c', 'd']);
    handleCommandKey(view, key('z'), pending);
    expect(model.order()).toHaveLength(5);
    handleCommandKey(view, key('Z'), pending);
    expect(ids(model)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('multi-selects with Shift+Down and copies, cuts and pastes', () => {
    const { model, view } = setup();
    const pending = { key: '', at: 0 };
    view.select('a');
    handleCommandKey(view, key('ArrowDown', { shiftKey: true }), pending);
    expect(view.selected()).toEqual(['a', 'b']);
    handleCommandKey(view, key('c'), pending);
    view.select('d');
    handleCommandKey(view, key('v'), pending);
    expect(sources(model)).toEqual(['a = 1', 'b = 1', 'c = 1', 'd = 1', 'a = 1', 'b = 1']);
    expect(new Set(ids(model)).size).toBe(6); // pasted cells get new ids
    view.select('a');
    handleCommandKey(view, key('j', { shiftKey: true }), pending);
    handleCommandKey(view, key('x'), pending);
    expect(sources(model).slice(0, 2)).toEqual(['c = 1', 'd = 1']);
    handleCommandKey(view, key('V', { shiftKey: true }), pending);
    expect(sources(model).slice(0, 3)).toEqual(['a = 1', 'b = 1', 'c = 1']);
  });

  it('changes cell types and moves the selection', () => {
    const { model, view } = setup();
    const pending = { key: '', at: 0 };
    view.select('b');
    handleCommandKey(view, key('m'), pending);
    expect(model.cellJson('b')?.cell_type).toBe('markdown');
    expect(model.cellJson('b')).not.toHaveProperty('outputs');
    handleCommandKey(view, key('r'), pending);
    expect(model.cellJson('b')?.cell_type).toBe('raw');
    handleCommandKey(view, key('y'), pending);
    expect(model.cellJson('b')).toMatchObject({ cell_type: 'code', outputs: [], execution_count: null });
    handleCommandKey(view, key('ArrowDown', { ctrlKey: true, shiftKey: true }), pending);
    expect(ids(model)).toEqual(['a', 'c', 'b', 'd']);
    view.moveTo(['d'], 0);
    expect(ids(model)).toEqual(['d', 'a', 'c', 'b']);
    view.undo();
    expect(ids(model)).toEqual(['a', 'c', 'b', 'd']);
  });

  it('runs the selection, all, above and below', () => {
    const { view, ran } = setup();
    view.select('b');
    view.run('stay');
    view.runAbove();
    view.runBelow();
    view.runAll();
    expect(ran).toEqual(['b', 'a', 'b', 'c', 'd', 'a', 'b', 'c', 'd']);
  });

  it('Shift+Enter on the last cell adds a new cell and edits it', () => {
    const { model, view } = setup();
    view.select('d');
    view.run('advance');
    expect(model.order()).toHaveLength(5);
    expect(view.active()).toBe(model.order()[4]);
    expect(view.mode()).toBe('edit');
  });
});
