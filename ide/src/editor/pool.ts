// Monaco editors for the cells on screen only. A cell scrolled into view borrows an
// editor from the pool and gives it back when it scrolls out; text models (one per
// cell, bound to its Y.Text) outlive the editors, so undo history and cursor
// survive scrolling. Creating an editor costs milliseconds; 1,000 of them would
// cost most of a minute, which is why the list is virtualized around this pool.
import type * as Y from 'yjs';
import { TextBinding } from './binding.ts';
import { monaco } from './monaco.ts';

export interface CellEditorHandlers {
  /** Shift/Ctrl/Alt+Enter: how to run. */
  run(mode: 'advance' | 'stay' | 'insert'): void;
  /** Escape (when no widget is open): back to command mode. */
  escape(): void;
  /** Up on the first line / Down on the last: continue editing in the neighbouring cell. */
  leave(direction: -1 | 1): void;
  /** The editor gained or lost focus. */
  focus(focused: boolean): void;
  /** Content height changed (px). */
  height(px: number): void;
}

export interface PooledEditor {
  readonly editor: monaco.editor.IStandaloneCodeEditor;
  readonly host: HTMLDivElement;
  cellId: string | undefined;
  handlers: CellEditorHandlers | undefined;
}

interface ModelEntry {
  readonly model: monaco.editor.ITextModel;
  readonly binding: TextBinding;
}

const LINE_HEIGHT = 19;
const PADDING = 6;

/** Height a cell's editor will have for `lines` lines; the list uses it to estimate unmeasured cells. */
export const editorHeightFor = (lines: number): number => Math.max(1, lines) * LINE_HEIGHT + 2 * PADDING;

/**
 * Monaco positions suggest/hover widgets with `position: fixed`; cells use CSS
 * containment (which would make them the containing block and clip the widgets),
 * so widgets live in one body-level node instead.
 */
function overflowHost(): HTMLElement {
  let el = document.getElementById('monaco-overflow');
  if (!el) {
    el = document.createElement('div');
    el.id = 'monaco-overflow';
    el.className = 'monaco-editor';
    document.body.appendChild(el);
  }
  return el;
}

type Waiter = { readonly run: () => void; cancelled: boolean; readonly urgent: boolean };

export class EditorPool {
  readonly #free: PooledEditor[] = [];
  readonly #queue: Waiter[] = [];
  #drain = 0;
  readonly #used = new Set<PooledEditor>();
  readonly #models = new Map<string, ModelEntry>();
  #width = 600;
  #disposed = false;
  created = 0;

  modelFor(cellId: string, text: Y.Text, language: string): monaco.editor.ITextModel {
    let m = this.#models.get(cellId);
    if (m && m.binding.text !== text) {
      this.disposeModel(cellId);
      m = undefined;
    }
    if (!m) {
      const model = monaco.editor.createModel(text.toString(), language, monaco.Uri.parse(`inmemory://cell/${encodeURIComponent(cellId)}`));
      // Bracket-pair colorization is a model option (the editor option of the same name
      // does not reach models created through createModel): off, it saves a bracket
      // tree walk and a decoration per bracket on every rendered line, about 0.5 ms of
      // main-thread time per keystroke here. Bracket matching at the cursor stays.
      model.updateOptions({ tabSize: 4, insertSpaces: true, bracketColorizationOptions: { enabled: false, independentColorPoolPerBracketType: false } });
      m = { model, binding: new TextBinding(text, model) };
      this.#models.set(cellId, m);
    } else if (m.model.getLanguageId() !== language) {
      monaco.editor.setModelLanguage(m.model, language);
    }
    return m.model;
  }

  disposeModel(cellId: string): void {
    const m = this.#models.get(cellId);
    if (!m) return;
    this.#models.delete(cellId);
    m.binding.dispose();
    m.model.dispose();
  }

  setWidth(px: number): void {
    if (Math.abs(px - this.#width) < 1) return;
    this.#width = px;
    for (const e of this.#used) this.#layout(e);
  }

  /**
   * Asks for an editor for a cell that just scrolled into view. Cells show a plain
   * text placeholder until their editor arrives: editors are handed out a few per
   * frame (urgent requests, e.g. the cell being edited, at once), so scrolling fast
   * through a long notebook never stalls on creating editors for cells already gone.
   * Returns a cancel function.
   */
  request(urgent: boolean, run: () => void): () => void {
    const w: Waiter = { run, cancelled: false, urgent };
    if (urgent) {
      run();
      return () => {};
    }
    this.#queue.push(w);
    if (!this.#drain) this.#drain = requestAnimationFrame(() => this.#drainQueue());
    return () => {
      w.cancelled = true;
    };
  }

  #drainQueue(): void {
    // A frame's budget: grant editors for ~8 ms, then yield to paint and input.
    const start = performance.now();
    this.#drain = 0;
    while (this.#queue.length && performance.now() - start < 8) {
      const w = this.#queue.shift() as Waiter;
      if (!w.cancelled) w.run();
    }
    while (this.#queue.length && (this.#queue[0] as Waiter).cancelled) this.#queue.shift();
    if (this.#queue.length) this.#drain = requestAnimationFrame(() => this.#drainQueue());
  }

  acquire(cellId: string, text: Y.Text, language: string, handlers: CellEditorHandlers): PooledEditor {
    const e = this.#free.pop() ?? this.#create();
    this.#used.add(e);
    e.cellId = cellId;
    e.handlers = handlers;
    e.editor.setModel(this.modelFor(cellId, text, language));
    this.#layout(e);
    return e;
  }

  release(e: PooledEditor): void {
    if (!this.#used.delete(e)) return;
    e.handlers = undefined;
    e.cellId = undefined;
    e.editor.setModel(null);
    e.host.remove();
    this.#free.push(e);
  }

  #layout(e: PooledEditor): void {
    const h = e.editor.getModel() ? e.editor.getContentHeight() : editorHeightFor(1);
    e.host.style.height = `${h}px`;
    e.editor.layout({ width: this.#width, height: h });
    e.handlers?.height(h);
  }

  #create(): PooledEditor {
    this.created++;
    const host = document.createElement('div');
    host.className = 'cell-editor';
    const editor = monaco.editor.create(host, {
      model: null,
      minimap: { enabled: false },
      lineNumbers: 'off',
      glyphMargin: false,
      folding: false,
      lineDecorationsWidth: 6,
      lineNumbersMinChars: 0,
      scrollBeyondLastLine: false,
      automaticLayout: false,
      overviewRulerLanes: 0,
      hideCursorInOverviewRuler: true,
      renderLineHighlight: 'none',
      scrollbar: { vertical: 'hidden', horizontal: 'auto', alwaysConsumeMouseWheel: false, handleMouseWheel: true, horizontalScrollbarSize: 8 },
      fontSize: 13,
      lineHeight: LINE_HEIGHT,
      padding: { top: PADDING, bottom: PADDING },
      contextmenu: false,
      fixedOverflowWidgets: true,
      overflowWidgetsDomNode: overflowHost(),
      wordBasedSuggestions: 'off',
      quickSuggestions: false,
      suggestOnTriggerCharacters: true,
      tabCompletion: 'on',
      occurrencesHighlight: 'off',
      // Per-keystroke work that a notebook cell does not need (typing latency budget).
      bracketPairColorization: { enabled: false },
      guides: { indentation: false, bracketPairs: false, highlightActiveIndentation: false },
      selectionHighlight: false,
      links: false,
      colorDecorators: false,
      unicodeHighlight: { ambiguousCharacters: false, invisibleCharacters: false },
      renderValidationDecorations: 'off',
      stickyScroll: { enabled: false },
      ariaLabel: 'cell editor',
    });
    const entry: PooledEditor = { editor, host, cellId: undefined, handlers: undefined };
    editor.onDidContentSizeChange((ev) => {
      if (ev.contentHeightChanged) this.#layout(entry);
    });
    editor.onDidFocusEditorText(() => entry.handlers?.focus(true));
    editor.onDidBlurEditorText(() => entry.handlers?.focus(false));
    // Actions (not addCommand, whose handler is shared by every editor) so each
    // pooled editor routes keys to the cell it currently shows.
    const { KeyMod, KeyCode } = monaco;
    editor.addAction({ id: 'kinesis.runAdvance', label: 'Run cell and select below', keybindings: [KeyMod.Shift | KeyCode.Enter], run: () => entry.handlers?.run('advance') });
    editor.addAction({ id: 'kinesis.runStay', label: 'Run cell', keybindings: [KeyMod.CtrlCmd | KeyCode.Enter], run: () => entry.handlers?.run('stay') });
    editor.addAction({ id: 'kinesis.runInsert', label: 'Run cell and insert below', keybindings: [KeyMod.Alt | KeyCode.Enter], run: () => entry.handlers?.run('insert') });
    editor.addAction({
      id: 'kinesis.commandMode',
      label: 'Command mode',
      keybindings: [KeyCode.Escape],
      precondition: '!suggestWidgetVisible && !findWidgetVisible && !parameterHintsVisible && !editorHasMultipleSelections',
      run: () => entry.handlers?.escape(),
    });
    // Arrow keys cross cell boundaries, as in Jupyter: Up on the first line edits the
    // cell above, Down on the last line the cell below; elsewhere they move the cursor.
    const widgets = '!suggestWidgetVisible && !parameterHintsVisible && !editorHasSelection && !editorHasMultipleSelections';
    editor.addAction({
      id: 'kinesis.cellAbove',
      label: 'Cursor up or edit the cell above',
      keybindings: [KeyCode.UpArrow],
      precondition: widgets,
      run: (ed) => {
        const pos = ed.getPosition();
        if (pos && pos.lineNumber === 1) entry.handlers?.leave(-1);
        else ed.trigger('keyboard', 'cursorUp', null);
      },
    });
    editor.addAction({
      id: 'kinesis.cellBelow',
      label: 'Cursor down or edit the cell below',
      keybindings: [KeyCode.DownArrow],
      precondition: widgets,
      run: (ed) => {
        const pos = ed.getPosition();
        const model = ed.getModel();
        if (pos && model && pos.lineNumber === model.getLineCount()) entry.handlers?.leave(1);
        else ed.trigger('keyboard', 'cursorDown', null);
      },
    });
    return entry;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#drain) cancelAnimationFrame(this.#drain);
    this.#queue.length = 0;
    for (const e of [...this.#used, ...this.#free]) e.editor.dispose();
    this.#used.clear();
    this.#free.length = 0;
    for (const id of [...this.#models.keys()]) this.disposeModel(id);
  }
}
