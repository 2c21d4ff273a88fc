// Find and replace across every cell's source (Ctrl+F in command mode). Matches are
// computed on the Y.Text contents, so cells off screen (with no editor) are
// searched too; replacing edits the Y.Text, which their editors follow.
import { createEffect, createMemo, createSignal, on, onCleanup } from 'solid-js';
import type { JSX } from 'solid-js';
import type * as Y from 'yjs';
import type { NotebookView } from './view.ts';

export interface Match {
  readonly id: string;
  readonly index: number;
  readonly length: number;
}

export function findMatches(view: NotebookView, query: string, caseSensitive: boolean): Match[] {
  if (!query) return [];
  const q = caseSensitive ? query : query.toLowerCase();
  const out: Match[] = [];
  for (const id of view.model.order()) {
    const src = String(view.model.cell(id)?.get('source') ?? '');
    const hay = caseSensitive ? src : src.toLowerCase();
    for (let i = hay.indexOf(q); i >= 0 && out.length < 10_000; i = hay.indexOf(q, i + Math.max(1, q.length))) out.push({ id, index: i, length: query.length });
  }
  return out;
}

export function FindBar(props: { view: NotebookView; onClose: () => void }): JSX.Element {
  const [query, setQuery] = createSignal('');
  const [replacement, setReplacement] = createSignal('');
  const [caseSensitive, setCase] = createSignal(false);
  const [at, setAt] = createSignal(0);
  const [tick, setTick] = createSignal(0);
  // Edits re-run the search at most every 250 ms: it reads every cell's text (about
  // 1 ms for 1,000 cells), which each keystroke in a cell would otherwise pay while
  // the bar is open. A new query runs it at once. Replace searches the current text
  // again first, so a count that is up to 250 ms old never edits the wrong place.
  const [edits, setEdits] = createSignal(0);
  let pending: ReturnType<typeof setTimeout> | undefined;
  createEffect(on(props.view.model.version, () => {
    pending ??= setTimeout(() => {
      pending = undefined;
      setEdits((n) => n + 1);
    }, 250);
  }, { defer: true }));
  onCleanup(() => clearTimeout(pending));
  const matches = createMemo(() => {
    tick();
    edits();
    return findMatches(props.view, query(), caseSensitive());
  });
  const current = (): Match[] => findMatches(props.view, query(), caseSensitive());
  const go = (delta: number): void => {
    const m = matches();
    if (!m.length) return;
    const i = (((at() + delta) % m.length) + m.length) % m.length;
    setAt(i);
    props.view.select((m[i] as Match).id);
  };
  const replaceOne = (): void => {
    const all = current();
    const m = all[Math.min(at(), all.length - 1)];
    if (!m) return;
    const text = props.view.model.cell(m.id)?.get('source') as Y.Text | undefined;
    if (!text) return;
    props.view.model.doc.transact(() => {
      text.delete(m.index, m.length);
      text.insert(m.index, replacement());
    });
    setTick((n) => n + 1);
  };
  const replaceAll = (): void => {
    const all = current();
    // Back to front so earlier offsets stay valid.
    props.view.model.doc.transact(() => {
      for (const m of [...all].reverse()) {
        const text = props.view.model.cell(m.id)?.get('source') as Y.Text | undefined;
        if (!text) continue;
        text.delete(m.index, m.length);
        text.insert(m.index, replacement());
      }
    });
    setTick((n) => n + 1);
  };
  return (
    <div class="find-bar" role="search" onKeyDown={(e) => {
      e.stopPropagation();
      if (e.key === 'Escape') props.onClose();
      if (e.key === 'Enter') go(e.shiftKey ? -1 : 1);
    }}>
      <input class="find-input" placeholder="Find" aria-label="find" value={query()} onInput={(e) => { setQuery(e.currentTarget.value); setAt(0); }} ref={(el) => queueMicrotask(() => el.focus())} />
      <input class="replace-input" placeholder="Replace" aria-label="replace" value={replacement()} onInput={(e) => setReplacement(e.currentTarget.value)} />
      <label><input type="checkbox" checked={caseSensitive()} onChange={(e) => setCase(e.currentTarget.checked)} /> Aa</label>
      <span class="find-count">{matches().length ? `${at() + 1} of ${matches().length}` : query() ? 'no results' : ''}</span>
      <button onClick={() => go(-1)} title="previous">↑</button>
      <button onClick={() => go(1)} title="next">↓</button>
      <button onClick={replaceOne} disabled={!matches().length}>Replace</button>
      <button class="replace-all" onClick={replaceAll} disabled={!matches().length}>Replace all</button>
      <button onClick={() => props.onClose()} title="close">✕</button>
    </div>
  );
}
