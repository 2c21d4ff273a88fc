// Keeps a Monaco text model and a cell's Y.Text equal, both ways (what y-monaco does,
// without its cursor-awareness part, which collaboration will add). Local edits become
// Y.Text deltas tagged with this binding as origin; remote ones become model edits
// that Monaco does not put on the local undo stack as the user's own typing.
import * as Y from 'yjs';
import type { monaco as Monaco } from './monaco.ts';

type Model = Monaco.editor.ITextModel;

export class TextBinding {
  #applyingRemote = false;
  #disposed = false;
  readonly #sub: { dispose(): void };

  constructor(readonly text: Y.Text, readonly model: Model) {
    if (model.getValue() !== text.toString()) model.setValue(text.toString());
    this.#sub = model.onDidChangeContent((e) => {
      if (this.#applyingRemote) return;
      const doc = text.doc;
      const apply = (): void => {
        // Monaco reports changes against the pre-edit text, sorted from last to first
        // offset, so applying them in order keeps earlier offsets valid.
        const changes = [...e.changes].sort((a, b) => b.rangeOffset - a.rangeOffset);
        for (const c of changes) {
          if (c.rangeLength) text.delete(c.rangeOffset, c.rangeLength);
          if (c.text) text.insert(c.rangeOffset, c.text);
        }
      };
      if (doc) doc.transact(apply, this);
      else apply();
    });
    text.observe(this.#onY);
  }

  readonly #onY = (ev: Y.YTextEvent, tr: Y.Transaction): void => {
    if (tr.origin === this) return;
    this.#applyingRemote = true;
    try {
      const edits: Monaco.editor.IIdentifiedSingleEditOperation[] = [];
      let index = 0;
      for (const op of ev.delta) {
        if (op.retain !== undefined) index += op.retain;
        else if (op.insert !== undefined) {
          const pos = this.model.getPositionAt(index);
          edits.push({ range: { startLineNumber: pos.lineNumber, startColumn: pos.column, endLineNumber: pos.lineNumber, endColumn: pos.column }, text: String(op.insert) });
        } else if (op.delete !== undefined) {
          const a = this.model.getPositionAt(index);
          const b = this.model.getPositionAt(index + op.delete);
          edits.push({ range: { startLineNumber: a.lineNumber, startColumn: a.column, endLineNumber: b.lineNumber, endColumn: b.column }, text: '' });
          index += op.delete;
        }
      }
      // Offsets in the delta are against the old text, and Monaco's applyEdits takes
      // all ranges against the old text too.
      this.model.applyEdits(edits);
      if (this.model.getValue() !== this.text.toString()) this.model.setValue(this.text.toString());
    } finally {
      this.#applyingRemote = false;
    }
  };

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#sub.dispose();
    this.text.unobserve(this.#onY);
  }
}
