// The virtualized cell list: only cells within the viewport (plus an overscan
// margin) exist in the DOM, so only they hold Monaco editors. Heights of cells not
// yet seen are estimated from their line counts and replaced by measurements
// (ResizeObserver) once they render; spacers above and below stand in for the rest.
import { For, createMemo, createSignal, onCleanup, onMount } from 'solid-js';
import type { JSX } from 'solid-js';
import type * as Y from 'yjs';
import type { Output } from '@kinesis/protocol/notebook/index';
import type { EditorPool } from '../editor/pool.ts';
import { editorHeightFor } from '../editor/pool.ts';
import { CellView } from './CellView.tsx';
import type { NotebookView } from './view.ts';

const OVERSCAN_PX = 300;
const CELL_CHROME = 18; // margins and borders around the editor

function estimate(view: NotebookView, id: string): number {
  const c = view.model.cell(id);
  if (!c) return 40;
  const src = String(c.get('source') as Y.Text);
  let lines = 1;
  for (let i = 0; i < src.length; i++) if (src.charCodeAt(i) === 10) lines++;
  const type = c.get('cell_type');
  if (type === 'markdown') return Math.min(600, 24 + lines * 22);
  let h = editorHeightFor(lines) + CELL_CHROME;
  const outs = (c.get('outputs') as Y.Array<Output> | undefined)?.length ?? 0;
  if (outs) h += 24 + 40 * Math.min(outs, 5);
  return h;
}

export function CellList(props: { view: NotebookView; pool: EditorPool }): JSX.Element {
  const v = props.view;
  let scroller!: HTMLDivElement;
  const [scrollTop, setScrollTop] = createSignal(0);
  const [viewport, setViewport] = createSignal(800);
  const [measureTick, setMeasureTick] = createSignal(0);
  const [, setDragging] = createSignal<string[] | undefined>();
  const heights = new Map<string, number>();

  // Prefix sums of heights; recomputed when the order changes or a measurement lands.
  const layout = createMemo(() => {
    measureTick();
    const order = v.model.order();
    const tops = new Float64Array(order.length + 1);
    for (let i = 0; i < order.length; i++) {
      const id = order[i] as string;
      let h = heights.get(id);
      if (h === undefined) {
        h = estimate(v, id);
        heights.set(id, h);
      }
      tops[i + 1] = (tops[i] as number) + h;
    }
    return { order, tops };
  });

  const range = createMemo(() => {
    const { order, tops } = layout();
    const top = Math.max(0, scrollTop() - OVERSCAN_PX);
    const bottom = scrollTop() + viewport() + OVERSCAN_PX;
    // binary search for the first cell whose bottom is below `top`
    let lo = 0;
    let hi = order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((tops[mid + 1] as number) <= top) lo = mid + 1;
      else hi = mid;
    }
    let end = lo;
    while (end < order.length && (tops[end] as number) < bottom) end++;
    return { start: lo, end };
  });

  const visible = createMemo(() => {
    const { start, end } = range();
    return layout().order.slice(start, end);
  });

  let pendingMeasure = 0;
  const ro = new ResizeObserver((entries) => {
    let changed = false;
    for (const e of entries) {
      const el = e.target as HTMLElement;
      const id = el.dataset.id;
      if (!id || !el.isConnected) continue;
      const h = el.offsetHeight;
      if (h > 0 && Math.abs((heights.get(id) ?? 0) - h) > 0.5) {
        heights.set(id, h);
        changed = true;
      }
    }
    if (changed && !pendingMeasure) {
      pendingMeasure = requestAnimationFrame(() => {
        pendingMeasure = 0;
        setMeasureTick((n) => n + 1);
      });
    }
  });
  const widthRo = new ResizeObserver(() => {
    setViewport(scroller.clientHeight);
    const probe = scroller.querySelector('.editor-slot') as HTMLElement | null;
    props.pool.setWidth(probe?.clientWidth ?? Math.max(200, scroller.clientWidth - 120));
  });
  onMount(() => {
    widthRo.observe(scroller);
    setViewport(scroller.clientHeight);
    props.pool.setWidth(Math.max(200, Math.min(scroller.clientWidth, 1100) - 110));
  });
  onCleanup(() => {
    ro.disconnect();
    widthRo.disconnect();
    if (pendingMeasure) cancelAnimationFrame(pendingMeasure);
  });

  v.reveal = (id: string) => {
    const i = layout().order.indexOf(id);
    if (i < 0 || !scroller) return;
    const { tops } = layout();
    const top = tops[i] as number;
    const bottom = tops[i + 1] as number;
    if (top < scroller.scrollTop) scroller.scrollTop = top - 8;
    else if (bottom > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = Math.min(top - 8, bottom - scroller.clientHeight + 8);
    setScrollTop(scroller.scrollTop);
  };

  let frame = 0;
  return (
    <div
      class="cell-scroller"
      ref={scroller}
      onScroll={() => {
        if (frame) return;
        frame = requestAnimationFrame(() => {
          frame = 0;
          setScrollTop(scroller.scrollTop);
        });
      }}
    >
      <div class="cell-list" style={{ 'padding-top': `${layout().tops[range().start] ?? 0}px`, 'padding-bottom': `${(layout().tops[layout().order.length] ?? 0) - (layout().tops[range().end] ?? 0)}px` }}>
        <For each={visible()}>
          {(id) => (
            <div
              class="cell-wrap"
              data-id={id}
              ref={(el) => {
                ro.observe(el);
                onCleanup(() => ro.unobserve(el));
              }}
            >
              <CellView id={id} view={v} pool={props.pool} dragging={setDragging} />
            </div>
          )}
        </For>
      </div>
    </div>
  );
}
