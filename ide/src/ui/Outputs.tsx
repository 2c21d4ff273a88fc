// One cell's outputs. Every output is built as DOM by the renderers in render/
// (text nodes for streams and tracebacks, sanitised fragments for HTML and
// markdown, inert <img> for images and SVG). Long outputs scroll inside a capped
// box; huge streams show their head and tail until the user asks for all of it.
import { For, Show, createEffect, createSignal, onCleanup } from 'solid-js';
import type { Accessor, JSX } from 'solid-js';
import type { Output } from '@kinesis/protocol/notebook/index';
import { renderAnsi } from '../render/ansi.ts';
import { pickMime, renderBundle } from '../render/mime.ts';
import type { StdinPrompt } from '../kernel/session.ts';

/** Streams over this many characters are truncated until "show all" is pressed. */
export const TRUNCATE_CHARS = 100_000;
const TAIL_CHARS = 20_000;

const asText = (v: unknown): string => (Array.isArray(v) ? v.join('') : typeof v === 'string' ? v : '');

function StreamOut(props: { text: string; name: string }): JSX.Element {
  const [all, setAll] = createSignal(false);
  let pre!: HTMLPreElement;
  const truncated = (): boolean => !all() && props.text.length > TRUNCATE_CHARS;
  createEffect(() => {
    const t = props.text;
    if (truncated()) {
      const head = t.slice(0, TRUNCATE_CHARS - TAIL_CHARS);
      const tail = t.slice(t.length - TAIL_CHARS);
      renderAnsi(pre, `${head}\n… ${(t.length - head.length - tail.length).toLocaleString()} characters hidden …\n${tail}`);
    } else renderAnsi(pre, t);
  });
  return (
    <div class={`out out-stream ${props.name === 'stderr' ? 'out-stderr' : ''}`}>
      <pre ref={pre} />
      <Show when={truncated()}>
        <button class="show-all" onClick={() => setAll(true)}>show all ({props.text.length.toLocaleString()} characters)</button>
      </Show>
    </div>
  );
}

function ErrorOut(props: { o: Extract<Output, { output_type: 'error' }> }): JSX.Element {
  let pre!: HTMLPreElement;
  createEffect(() => {
    const tb = props.o.traceback.length ? props.o.traceback.join('\n') : `${props.o.ename}: ${props.o.evalue}`;
    renderAnsi(pre, tb);
  });
  return (
    <div class="out out-error">
      <pre ref={pre} />
    </div>
  );
}

/** Rich outputs larger than this (characters of the chosen representation) wait for a click. */
export const LARGE_RICH_CHARS = 2_000_000;
/** At most this many outputs of one cell are rendered; the rest wait for a click. */
export const MAX_RENDERED_OUTPUTS = 500;

function RichOut(props: { o: Extract<Output, { output_type: 'display_data' | 'execute_result' }> }): JSX.Element {
  let host!: HTMLDivElement;
  const [forced, setForced] = createSignal(false);
  const size = (): number => {
    const mime = pickMime(props.o.data);
    if (!mime || mime.startsWith('image/png') || mime.startsWith('image/jpeg') || mime.startsWith('image/gif')) return 0;
    const v = props.o.data[mime];
    return mime === 'application/json' ? JSON.stringify(v).length : asText(v).length;
  };
  createEffect(() => {
    if (!forced() && size() > LARGE_RICH_CHARS) {
      // Sanitising and laying out tens of megabytes of HTML would freeze the page.
      const btn = document.createElement('button');
      btn.className = 'show-all';
      btn.textContent = `large output (${(size() / 1e6).toFixed(1)} M characters of ${pickMime(props.o.data) ?? ''}): show`;
      btn.onclick = () => setForced(true);
      host.replaceChildren(btn);
      return;
    }
    try {
      const { el, mime } = renderBundle(props.o.data, props.o.metadata);
      host.dataset.mime = mime;
      host.replaceChildren(el);
    } catch (err) {
      const pre = document.createElement('pre');
      pre.textContent = `could not render output: ${err instanceof Error ? err.message : String(err)}`;
      host.replaceChildren(pre);
    }
  });
  return <div class="out out-rich" ref={host} />;
}

function StdinBox(props: { p: StdinPrompt }): JSX.Element {
  let input!: HTMLInputElement;
  queueMicrotask(() => input?.focus());
  return (
    <div class="out out-stdin">
      <label>
        <span class="stdin-prompt">{props.p.prompt}</span>
        <input
          ref={input}
          type={props.p.password ? 'password' : 'text'}
          aria-label="input requested by the kernel"
          onKeyDown={(e) => {
            e.stopPropagation();
            if (e.key === 'Enter') props.p.reply(input.value);
          }}
        />
      </label>
    </div>
  );
}

export function Outputs(props: { outputs: Accessor<readonly Output[]>; stdin: Accessor<StdinPrompt | undefined>; onHeight?: () => void }): JSX.Element {
  const [expanded, setExpanded] = createSignal(false);
  const [allOutputs, setAllOutputs] = createSignal(false);
  // A cell that emitted thousands of outputs shows its last ones until asked for all.
  const shown = (): readonly Output[] => {
    const o = props.outputs();
    return allOutputs() || o.length <= MAX_RENDERED_OUTPUTS ? o : o.slice(o.length - MAX_RENDERED_OUTPUTS);
  };
  const hidden = (): number => props.outputs().length - shown().length;
  const [overflow, setOverflow] = createSignal(false);
  let box!: HTMLDivElement;
  const ro = new ResizeObserver(() => setOverflow(box.scrollHeight > box.clientHeight + 2));
  onCleanup(() => ro.disconnect());
  return (
    <Show when={props.outputs().length > 0 || props.stdin()}>
      <div class="outputs-wrap">
        <div
          ref={(el) => {
            box = el;
            ro.observe(el);
          }}
          class="outputs"
          classList={{ collapsed: !expanded() }}
        >
          <Show when={hidden() > 0}>
            <button class="show-all show-all-outputs" onClick={() => setAllOutputs(true)}>{hidden().toLocaleString()} earlier outputs hidden: show all</button>
          </Show>
          <For each={shown()}>
            {(o) => {
              switch (o.output_type) {
                case 'stream':
                  return <StreamOut text={asText(o.text)} name={o.name} />;
                case 'error':
                  return <ErrorOut o={o} />;
                case 'display_data':
                case 'execute_result':
                  return <RichOut o={o} />;
                default:
                  return null;
              }
            }}
          </For>
          <Show when={props.stdin()}>{(p) => <StdinBox p={p()} />}</Show>
        </div>
        <Show when={overflow() || expanded()}>
          <button class="toggle-outputs" onClick={() => setExpanded(!expanded())}>{expanded() ? 'collapse output' : 'expand output'}</button>
        </Show>
      </div>
    </Show>
  );
}
