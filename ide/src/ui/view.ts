// The notebook's view model: Jupyter's command/edit modes, the active cell and
// multi-selection, which markdown cells are being edited, the cell clipboard, and
// every command a key or button can trigger. Kept apart from the document model
// (model/notebook.ts) and the kernel (kernel/session.ts), as in VS Code notebooks.
import { batch, createSignal } from 'solid-js';
import type { Accessor } from 'solid-js';
import type { Cell, CellType } from '@kinesis/protocol/notebook/index';
import type { KernelController } from '../kernel/session.ts';
import type { NotebookModel } from '../model/notebook.ts';

export type Mode = 'command' | 'edit';

// Copied cells survive navigating between notebooks in this tab, as in Jupyter.
let clipboard: Cell[] = [];

export class NotebookView {
  readonly mode: Accessor<Mode>;
  readonly active: Accessor<string | undefined>;
  readonly anchor: Accessor<string | undefined>;
  readonly editingMarkdown: Accessor<ReadonlySet<string>>;
  /** Incremented to ask the active cell's editor to take focus. */
  readonly focusTick: Accessor<number>;
  readonly setMode: (m: Mode) => void;
  readonly #setActive: (id: string | undefined) => void;
  readonly #setAnchor: (id: string | undefined) => void;
  readonly #setEditingMd: (s: ReadonlySet<string>) => void;
  readonly #setFocusTick: (f: (n: number) => number) => void;
  /** Where the cursor goes when the next editor takes focus (arrow keys across cells). */
  cursorAt: 'start' | 'end' | undefined;
  /** Set by the cell list: scrolls a cell into view. */
  reveal: (id: string) => void = () => {};
  /** Set by the page: focuses the notebook container (command mode keys). */
  focusContainer: () => void = () => {};

  constructor(readonly model: NotebookModel, readonly kernel: KernelController) {
    const [mode, setMode] = createSignal<Mode>('command');
    const [active, setActive] = createSignal<string | undefined>(model.order()[0]);
    const [anchor, setAnchor] = createSignal<string | undefined>(model.order()[0]);
    const [editingMd, setEditingMd] = createSignal<ReadonlySet<string>>(new Set());
    const [focusTick, setFocusTick] = createSignal(0);
    this.mode = mode;
    this.active = active;
    this.anchor = anchor;
    this.editingMarkdown = editingMd;
    this.focusTick = focusTick;
    this.setMode = setMode;
    this.#setActive = setActive;
    this.#setAnchor = setAnchor;
    this.#setEditingMd = setEditingMd;
    this.#setFocusTick = setFocusTick;
  }

  /** Selected cell ids in display order (the range between anchor and active). */
  selected(): string[] {
    const order = this.model.order();
    const a = order.indexOf(this.anchor() ?? '');
    const b = order.indexOf(this.active() ?? '');
    if (b < 0) return [];
    if (a < 0) return [order[b] as string];
    return order.slice(Math.min(a, b), Math.max(a, b) + 1);
  }

  isSelected(id: string): boolean {
    return this.selected().includes(id);
  }

  select(id: string, extend = false): void {
    batch(() => {
      this.#setActive(id);
      if (!extend) this.#setAnchor(id);
    });
    this.reveal(id);
  }

  #activeIndex(): number {
    return this.model.order().indexOf(this.active() ?? '');
  }

  move(delta: number, extend = false): void {
    const order = this.model.order();
    if (!order.length) return;
    const i = Math.min(order.length - 1, Math.max(0, this.#activeIndex() + delta));
    this.select(order[i] as string, extend);
  }

  enterEdit(id = this.active()): void {
    if (!id) return;
    const cell = this.model.cell(id);
    if (!cell) return;
    batch(() => {
      this.select(id);
      if (cell.get('cell_type') !== 'code') {
        const s = new Set(this.editingMarkdown());
        s.add(id);
        this.#setEditingMd(s);
      }
      this.setMode('edit');
      this.#setFocusTick((n) => n + 1);
    });
  }

  /** From an editor's first/last line into the neighbouring cell's editor. */
  editNeighbour(direction: -1 | 1): void {
    const order = this.model.order();
    const next = order[order.indexOf(this.active() ?? '') + direction];
    if (!next) return;
    this.cursorAt = direction < 0 ? 'end' : 'start';
    this.enterEdit(next);
  }

  commandMode(): void {
    this.setMode('command');
    this.focusContainer();
  }

  /** Renders markdown cells among `ids` (leaves their edit state). */
  #renderMarkdown(ids: readonly string[]): void {
    const s = new Set(this.editingMarkdown());
    let changed = false;
    for (const id of ids) changed = s.delete(id) || changed;
    if (changed) this.#setEditingMd(s);
  }

  /** Runs the selected cells. `advance` selects (or creates) the next cell; `insert` adds a cell below. */
  run(how: 'advance' | 'stay' | 'insert'): void {
    const ids = this.selected();
    if (!ids.length) return;
    this.#renderMarkdown(ids);
    void this.#runSequence(ids);
    const last = ids[ids.length - 1] as string;
    const idx = this.model.indexOf(last);
    if (how === 'advance') {
      const next = this.model.order()[idx + 1];
      if (next) {
        this.select(next);
        this.commandMode();
      } else {
        const id = this.model.insert(idx + 1, 'code');
        this.select(id);
        this.enterEdit(id);
      }
    } else if (how === 'insert') {
      const id = this.model.insert(idx + 1, 'code');
      this.select(id);
      this.enterEdit(id);
    } else {
      this.select(last, false);
      this.commandMode();
    }
  }

  /** Sends cells in order; stops at the first error, as Jupyter does for run-all. */
  async #runSequence(ids: readonly string[]): Promise<void> {
    const code = ids.filter((id) => this.model.cell(id)?.get('cell_type') === 'code');
    // Send all at once (the kernel queues them and, with stop_on_error, aborts the rest after an error).
    await Promise.all(code.map((id) => this.kernel.execute(id).catch(() => 'error')));
  }

  runAll(): void {
    const all = this.model.order();
    this.#renderMarkdown(all);
    void this.#runSequence(all);
  }
  runAbove(): void {
    const order = this.model.order();
    void this.#runSequence(order.slice(0, Math.max(0, this.#activeIndex())));
  }
  runBelow(): void {
    const order = this.model.order();
    void this.#runSequence(order.slice(Math.max(0, this.#activeIndex())));
  }

  insert(where: 'above' | 'below', type: CellType = 'code'): string {
    const i = this.#activeIndex();
    const at = i < 0 ? this.model.order().length : where === 'above' ? i : i + 1;
    const id = this.model.insert(at, type);
    this.select(id);
    return id;
  }

  deleteSelected(): void {
    const ids = this.selected();
    if (!ids.length) return;
    const order = this.model.order();
    const after = order[order.indexOf(ids[ids.length - 1] as string) + 1];
    const before = order[order.indexOf(ids[0] as string) - 1];
    this.model.delete(ids);
    const next = after ?? before;
    if (next) this.select(next);
    else batch(() => {
      this.#setActive(undefined);
      this.#setAnchor(undefined);
    });
  }

  setType(type: CellType): void {
    const ids = this.selected();
    this.model.setType(ids, type);
    if (type === 'code') this.#renderMarkdown(ids);
  }

  copy(): void {
    clipboard = this.selected().map((id) => this.model.cellJson(id)).filter((c): c is Cell => !!c);
  }
  cut(): void {
    this.copy();
    this.deleteSelected();
  }
  paste(where: 'above' | 'below'): void {
    if (!clipboard.length) return;
    const i = this.#activeIndex();
    const at = i < 0 ? this.model.order().length : where === 'above' ? i : i + 1;
    const ids = this.model.insertCopies(at, clipboard);
    const last = ids[ids.length - 1];
    if (last) {
      batch(() => {
        this.#setAnchor(ids[0]);
        this.#setActive(last);
      });
      this.reveal(last);
    }
  }

  /** Moves the selection up or down one place (Ctrl+Shift+Up/Down, drag and drop uses moveTo). */
  shift(delta: -1 | 1): void {
    const ids = this.selected();
    if (!ids.length) return;
    const order = this.model.order();
    const first = order.indexOf(ids[0] as string);
    const to = delta < 0 ? first - 1 : first + ids.length + 1;
    if (to < 0 || to > order.length) return;
    this.model.move(ids, to);
    this.reveal(this.active() ?? '');
  }

  moveTo(ids: readonly string[], to: number): void {
    this.model.move(ids, to);
  }

  undo(): void {
    this.model.undo.undo();
    this.#fixActive();
  }
  redo(): void {
    this.model.undo.redo();
    this.#fixActive();
  }
  #fixActive(): void {
    const order = this.model.order();
    if (!order.includes(this.active() ?? '')) {
      const id = order[0];
      batch(() => {
        this.#setActive(id);
        this.#setAnchor(id);
      });
    }
  }

  selectAll(): void {
    const order = this.model.order();
    batch(() => {
      this.#setAnchor(order[0]);
      this.#setActive(order[order.length - 1]);
    });
  }
}

/** Command-mode keys, as in Jupyter Notebook/Lab. Returns true if the key was handled. */
export function handleCommandKey(v: NotebookView, e: KeyboardEvent, pending: { key: string; at: number }): boolean {
  const mod = e.ctrlKey || e.metaKey;
  const double = (k: string): boolean => {
    const now = performance.now();
    const hit = pending.key === k && now - pending.at < 800;
    pending.key = hit ? '' : k;
    pending.at = now;
    return hit;
  };
  switch (e.key) {
    case 'Enter':
      if (e.shiftKey) v.run('advance');
      else if (mod) v.run('stay');
      else if (e.altKey) v.run('insert');
      else v.enterEdit();
      return true;
    case 'ArrowUp':
    case 'k':
    case 'K':
      if (mod && e.shiftKey) v.shift(-1);
      else v.move(-1, e.shiftKey);
      return true;
    case 'ArrowDown':
    case 'j':
    case 'J':
      if (mod && e.shiftKey) v.shift(1);
      else v.move(1, e.shiftKey);
      return true;
    case 'Home':
      v.select(v.model.order()[0] ?? '', e.shiftKey);
      return true;
    case 'End':
      v.select(v.model.order()[v.model.order().length - 1] ?? '', e.shiftKey);
      return true;
  }
  if (mod) {
    if (e.key === 'a') {
      v.selectAll();
      return true;
    }
    return false;
  }
  if (e.altKey) return false;
  switch (e.key) {
    case 'a': v.insert('above'); return true;
    case 'b': v.insert('below'); return true;
    case 'd': if (double('d')) v.deleteSelected(); return true;
    case 'm': v.setType('markdown'); return true;
    case 'y': v.setType('code'); return true;
    case 'r': v.setType('raw'); return true;
    case 'z': v.undo(); return true;
    case 'Z': v.redo(); return true;
    case 'c': v.copy(); return true;
    case 'x': v.cut(); return true;
    case 'v': v.paste('below'); return true;
    case 'V': v.paste('above'); return true;
    case 'i': if (double('i')) void v.kernel.interrupt(); return true;
    case '0': if (double('0')) void v.kernel.restart(); return true;
    default: return false;
  }
}
