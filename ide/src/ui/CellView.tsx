// One cell on screen: prompt and drag handle, a pooled Monaco editor (code, raw, and
// markdown while editing) or rendered markdown, outputs, and the execution footer
// (elapsed time, where it ran, energy and cost from the provider's receipt).
import { Show, createEffect, createMemo, createSignal, on, onCleanup } from 'solid-js';
import type { JSX } from 'solid-js';
import type * as Y from 'yjs';
import type { CellType, JsonObject, Output } from '@kinesis/protocol/notebook/index';
import type { EditorPool, PooledEditor } from '../editor/pool.ts';
import { cellVerdict, costOf, formatCost, formatEnergy, isMeasured, parseReceipt } from '../kernel/receipts.ts';
import { renderMarkdown } from '../render/markdown.ts';
import type { NotebookView } from './view.ts';
import { Outputs } from './Outputs.tsx';

const LANG: Record<CellType, string> = { code: 'python', markdown: 'markdown', raw: 'plaintext' };

function useShallow<T>(type: Y.AbstractType<unknown> | undefined, read: () => T): () => T {
  const [v, setV] = createSignal<T>(read(), { equals: false });
  if (type) {
    const f = (): void => {
      setV(() => read());
    };
    type.observe(f);
    onCleanup(() => type.unobserve(f));
  }
  return v;
}

function formatElapsed(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function CellView(props: { id: string; view: NotebookView; pool: EditorPool; dragging: (ids: string[] | undefined) => void }): JSX.Element {
  const v = props.view;
  const cell = v.model.cell(props.id);
  if (!cell) return null;
  const text = cell.get('source') as Y.Text;
  const fields = useShallow(cell as unknown as Y.AbstractType<unknown>, () => ({
    type: cell.get('cell_type') as CellType,
    count: cell.get('execution_count') as number | null | undefined,
    metadata: (cell.get('metadata') as JsonObject | undefined) ?? {},
    attachments: cell.get('attachments') as JsonObject | undefined,
    outputsArr: cell.get('outputs') as Y.Array<Output> | undefined,
  }));
  const type = createMemo(() => fields().type);
  const [outputs, setOutputs] = createSignal<readonly Output[]>([]);
  createEffect(() => {
    const arr = fields().outputsArr;
    if (!arr) {
      setOutputs([]);
      return;
    }
    const f = (): void => {
      setOutputs(arr.toArray());
    };
    f();
    arr.observe(f);
    onCleanup(() => arr.unobserve(f));
  });
  const exec = v.kernel.exec(props.id);
  const stdin = v.kernel.stdin(props.id);
  const active = (): boolean => v.active() === props.id;
  const selected = createMemo(() => v.isSelected(props.id));
  const editingMd = (): boolean => v.editingMarkdown().has(props.id);
  const showEditor = createMemo(() => type() !== 'markdown' || editingMd());

  // Rendered markdown follows the text, but only while it is shown.
  const [mdHtml, setMdHtml] = createSignal('');
  createEffect(() => {
    if (type() !== 'markdown' || editingMd()) return;
    const render = (): void => {
      setMdHtml(renderMarkdown(text.toString(), fields().attachments as Record<string, unknown> | undefined));
    };
    render();
    text.observe(render);
    onCleanup(() => text.unobserve(render));
  });

  let slot!: HTMLDivElement;
  let editor: PooledEditor | undefined;
  const [hasEditor, setHasEditor] = createSignal(false);
  let mountNow: (() => void) | undefined;
  createEffect(on([showEditor, type], ([show, t]) => {
    if (!show) return;
    let e: PooledEditor | undefined;
    const mount = (): void => {
      e = props.pool.acquire(props.id, text, LANG[t], {
        run: (how) => v.run(how),
        escape: () => v.commandMode(),
        leave: (d) => v.editNeighbour(d),
        focus: (f) => {
          if (f) {
            if (v.active() !== props.id) v.select(props.id);
            v.setMode('edit');
          }
        },
        height: () => {},
      });
      editor = e;
      slot.replaceChildren(e.host);
      setHasEditor(true);
      if (active() && v.mode() === 'edit') focusEditor();
    };
    const cancel = props.pool.request(active() && v.mode() === 'edit', () => {
      mountNow = undefined;
      mount();
    });
    if (!e) {
      mountNow = () => {
        cancel();
        mountNow = undefined;
        mount();
      };
    }
    onCleanup(() => {
      mountNow = undefined;
      cancel();
      setHasEditor(false);
      editor = undefined;
      if (e) props.pool.release(e);
    });
  }));
  // Edit mode on a cell whose editor is still queued: mount it now.
  createEffect(() => {
    if (active() && v.mode() === 'edit' && showEditor() && !hasEditor()) mountNow?.();
  });
  const focusEditor = (): void => {
    const ed = editor?.editor;
    if (!ed) return;
    const where = v.cursorAt;
    v.cursorAt = undefined;
    const model = ed.getModel();
    if (where && model) {
      const line = where === 'end' ? model.getLineCount() : 1;
      ed.setPosition({ lineNumber: line, column: where === 'end' ? model.getLineMaxColumn(line) : 1 });
    }
    ed.focus();
  };
  createEffect(on(v.focusTick, () => {
    if (active() && v.mode() === 'edit') queueMicrotask(focusEditor);
  }, { defer: true }));

  const prompt = (): string => {
    const s = exec().state;
    if (s === 'running' || s === 'queued') return s === 'running' ? '[*]' : '[-]';
    const c = fields().count;
    return typeof c === 'number' ? `[${c}]` : '[ ]';
  };
  const receipt = createMemo(() => parseReceipt(fields().metadata));
  const verdict = createMemo(() => cellVerdict(fields().metadata));
  const elapsed = createMemo(() => {
    const e = exec();
    if (e.state === 'idle' && e.startedAt !== undefined && e.endedAt !== undefined) return e.endedAt - e.startedAt;
    const t = fields().metadata.execution as Record<string, string> | undefined;
    const a = t?.['iopub.status.busy'];
    const b = t?.['shell.execute_reply'];
    return a && b ? Date.parse(b) - Date.parse(a) : undefined;
  });

  return (
    <div
      class={`cell cell-${type()}`}
      classList={{ active: active(), selected: selected(), editing: active() && v.mode() === 'edit', running: exec().state !== 'idle' }}
      data-id={props.id}
      data-type={type()}
      onMouseDown={(e) => {
        if ((e.target as HTMLElement).closest('.cell-editor, .outputs, button, input')) return;
        v.select(props.id, e.shiftKey);
        v.setMode('command');
        v.focusContainer();
        // Keep focus on the notebook, except on the handle, where it would cancel dragging.
        if (!(e.target as HTMLElement).closest('.drag-handle')) e.preventDefault();
      }}
      onDragOver={(e) => {
        if (!e.dataTransfer?.types.includes('application/x-kinesis-cells')) return;
        e.preventDefault();
        const r = (e.currentTarget as HTMLElement).getBoundingClientRect();
        (e.currentTarget as HTMLElement).dataset.drop = e.clientY < r.top + r.height / 2 ? 'above' : 'below';
      }}
      onDragLeave={(e) => delete (e.currentTarget as HTMLElement).dataset.drop}
      onDrop={(e) => {
        const el = e.currentTarget as HTMLElement;
        const where = el.dataset.drop;
        delete el.dataset.drop;
        const raw = e.dataTransfer?.getData('application/x-kinesis-cells');
        if (!raw) return;
        e.preventDefault();
        const ids = (JSON.parse(raw) as unknown[]).filter((x): x is string => typeof x === 'string');
        const idx = v.model.indexOf(props.id);
        v.moveTo(ids, where === 'above' ? idx : idx + 1);
        props.dragging(undefined);
      }}
    >
      <div class="cell-gutter">
        <span
          class="drag-handle"
          title="drag to move"
          draggable={true}
          onDragStart={(e) => {
            const ids = v.isSelected(props.id) ? v.selected() : [props.id];
            e.dataTransfer?.setData('application/x-kinesis-cells', JSON.stringify(ids));
            if (e.dataTransfer) e.dataTransfer.effectAllowed = 'move';
            props.dragging(ids);
          }}
          onDragEnd={() => props.dragging(undefined)}
        >⋮⋮</span>
        <Show when={type() === 'code'}>
          <span class="prompt">{prompt()}</span>
        </Show>
      </div>
      <div class="cell-body">
        <Show when={showEditor()} fallback={
          <div class="markdown rendered" innerHTML={mdHtml() || '<p class="empty-md">Empty markdown cell — double-click to edit</p>'} onDblClick={() => v.enterEdit(props.id)} />
        }>
          <div class="editor-slot" ref={slot} onMouseDown={() => !hasEditor() && v.enterEdit(props.id)}>
            <pre class="code-placeholder">{text.toString()}</pre>
          </div>
        </Show>
        <Show when={type() === 'code'}>
          <Outputs outputs={outputs} stdin={stdin} />
          <Show when={elapsed() !== undefined || receipt()}>
            <div class="cell-footer">
              <Show when={elapsed() !== undefined}>
                <span class="elapsed" title="wall time of the last run">{formatElapsed(elapsed() ?? 0)}</span>
              </Show>
              <Show when={receipt()}>
                {(r) => (
                  <span class="receipt" title={`method: ${r().method}; idle energy ${formatEnergy(r().idleEnergyMj)}; signature ${r().signature.slice(0, 18)}…`}>
                    <span class="device">ran on {r().device}</span>
                    <span class={isMeasured(r()) ? 'measured' : 'estimated'}>{formatEnergy(r().energyMj)} {isMeasured(r()) ? 'measured' : 'estimated'}</span>
                    <span class="cost" title="at this provider's price per kWh">≈ {formatCost(costOf(r().energyMj, r().pricePerKwh))}</span>
                    <Show when={verdict()} fallback={<span class="verdict pending" title="the gateway has not confirmed this receipt yet">unverified</span>}>
                      {(v) =>
                        v().accepted ? (
                          <span class="verdict accepted" title="the gateway verified the provider's signature and figures">✓ verified</span>
                        ) : (
                          <span class="verdict rejected" title="the gateway rejected this receipt: it is not billed">✗ rejected{v().reason ? ` (${v().reason})` : ''}</span>
                        )
                      }
                    </Show>
                  </span>
                )}
              </Show>
            </div>
          </Show>
        </Show>
      </div>
    </div>
  );
}
