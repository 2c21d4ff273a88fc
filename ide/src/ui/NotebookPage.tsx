// /notebooks/<path>: loads the notebook through the contents API into a Yjs
// document, starts its kernel, and wires toolbar, keyboard, autosave and status.
import { Show, createEffect, createResource, createSignal, on, onCleanup } from 'solid-js';
import type { JSX } from 'solid-js';
import { NotebookFormatError, stringifyNotebook, upgradeNotebook, validateNotebook } from '@kinesis/protocol/notebook/index';
import type { Notebook } from '@kinesis/protocol/notebook/index';
import { navigate } from '../api/route.ts';
import type { Services } from '../api/services.ts';
import { errorMessage } from '../api/services.ts';
import { EditorPool } from '../editor/pool.ts';
import { registerKernelProviders, setProviderKernel } from '../editor/providers.ts';
import { KernelController } from '../kernel/session.ts';
import { formatAmount, formatEnergy } from '../kernel/receipts.ts';
import { NotebookModel } from '../model/notebook.ts';
import { CellList } from './CellList.tsx';
import { downloadText } from './download.ts';
import { FindBar } from './FindBar.tsx';
import { describeHardware, hardwareOf } from './hardware.ts';
import { KernelPicker, loadSpecs } from './KernelPicker.tsx';
import { NotebookView, handleCommandKey } from './view.ts';

const AUTOSAVE_MS = 1500;

interface Loaded {
  readonly nb: Notebook;
  readonly warning: string | undefined;
  readonly lastModified: string;
}

async function loadNotebook(services: Services, path: string): Promise<Loaded> {
  const m = await services.contents.get(path, { type: 'notebook', content: true });
  try {
    validateNotebook(m.content);
  } catch (e) {
    if (e instanceof NotebookFormatError) throw new Error(`${path} is not a valid notebook: ${e.message}`);
    throw e;
  }
  return { nb: upgradeNotebook(m.content as Notebook), warning: (m as { message?: string }).message, lastModified: m.last_modified };
}

export function NotebookPage(props: { services: Services; path: string }): JSX.Element {
  const [loaded] = createResource(() => props.path, (p) => loadNotebook(props.services, p));
  return (
    <Show when={!loaded.error} fallback={<div class="page-error"><p class="error" role="alert">Could not open {props.path}: {errorMessage(loaded.error)}</p><a href="/tree" onClick={(e) => { e.preventDefault(); navigate({ kind: 'tree', path: '' }); }}>Back to files</a></div>}>
      <Show when={loaded()} fallback={<p class="loading">Opening {props.path}…</p>}>
        {(l) => <OpenNotebook services={props.services} path={props.path} nb={l().nb} warning={l().warning} lastModified={l().lastModified} />}
      </Show>
    </Show>
  );
}

function OpenNotebook(props: { services: Services; path: string; nb: Notebook; warning: string | undefined; lastModified: string }): JSX.Element {
  const [path, setPath] = createSignal(props.path);
  const model = new NotebookModel(props.nb);
  const kernel = new KernelController(props.services, model, path);
  const pool = new EditorPool();
  const view = new NotebookView(model, kernel);
  registerKernelProviders();
  setProviderKernel(() => kernel.kernel);
  onCleanup(() => {
    setProviderKernel(() => null);
    kernel.dispose();
    pool.dispose();
    model.dispose();
  });
  (window as unknown as { kinesis?: unknown }).kinesis = { model, view, kernel, pool };

  // --- saving -------------------------------------------------------------------
  const [saveState, setSaveState] = createSignal<string>('saved');
  let timer: ReturnType<typeof setTimeout> | undefined;
  let saving: Promise<void> | undefined;
  let again = false;
  // As Jupyter does: a file changed on disk since we loaded or saved it is not
  // overwritten by autosave; an explicit save asks first.
  let lastModified = Date.parse(props.lastModified);
  const changedOnDisk = async (): Promise<boolean> => {
    const m = await props.services.contents.get(path(), { content: false });
    return Date.parse(m.last_modified) > lastModified + 500;
  };
  const save = async (checkpoint = false, explicit = checkpoint): Promise<void> => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (saving) {
      again = true;
      return saving;
    }
    setSaveState('saving');
    const p = (async () => {
      try {
        if ((await changedOnDisk()) && !(explicit && window.confirm(`${path()} changed on disk since it was opened. Overwrite it?`))) {
          setSaveState('not saved: the file changed on disk (save to overwrite, or reload)');
          return;
        }
        const m = await props.services.contents.save(path(), { type: 'notebook', format: 'json', content: model.toNotebook() as never });
        lastModified = Date.parse(m.last_modified);
        if (checkpoint) await props.services.contents.createCheckpoint(path());
        setSaveState('saved');
      } catch (e) {
        setSaveState(`save failed: ${errorMessage(e)}`);
      }
    })();
    saving = p;
    await p;
    saving = undefined;
    if (again) {
      again = false;
      await save();
    }
  };
  createEffect(on(model.version, () => {
    setSaveState((s) => (s === 'saving' ? s : 'unsaved changes'));
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void save(), AUTOSAVE_MS);
  }, { defer: true }));
  const onHide = (): void => {
    if (document.visibilityState === 'hidden' && timer) void save();
  };
  const beforeUnload = (e: BeforeUnloadEvent): void => {
    if (timer || saving) e.preventDefault();
  };
  document.addEventListener('visibilitychange', onHide);
  window.addEventListener('beforeunload', beforeUnload);
  onCleanup(() => {
    document.removeEventListener('visibilitychange', onHide);
    window.removeEventListener('beforeunload', beforeUnload);
    if (timer) void save();
  });

  // --- kernel -------------------------------------------------------------------
  const [specs] = createResource(() => loadSpecs(props.services));
  const [picker, setPicker] = createSignal(false);
  const [kernelError, setKernelError] = createSignal<string>();
  const startKernel = async (name: string): Promise<void> => {
    setKernelError(undefined);
    try {
      await kernel.start(name);
    } catch (e) {
      setKernelError(errorMessage(e));
    }
  };
  createEffect(on(specs, (s) => {
    if (!s || kernel.kernel) return;
    const wanted = (model.metadata.kernelspec as { name?: unknown } | undefined)?.name;
    const name = typeof wanted === 'string' && s.kernelspecs[wanted] ? wanted : s.default;
    if (name) void startKernel(name);
  }));
  const currentSpec = () => specs()?.kernelspecs[kernel.kernelName() ?? ''];

  // --- title / rename --------------------------------------------------------------
  const [renaming, setRenaming] = createSignal(false);
  const rename = async (name: string): Promise<void> => {
    setRenaming(false);
    const clean = name.trim().replace(/\.ipynb$/, '');
    if (!clean || clean.includes('/')) return;
    const dir = path().includes('/') ? path().slice(0, path().lastIndexOf('/') + 1) : '';
    const to = `${dir}${clean}.ipynb`;
    if (to === path()) return;
    try {
      await save();
      await props.services.contents.rename(path(), to);
      setPath(to);
      navigate({ kind: 'notebook', path: to }, true);
      await kernel.setPath(to).catch(() => {});
    } catch (e) {
      setSaveState(`rename failed: ${errorMessage(e)}`);
    }
  };

  // --- keyboard -------------------------------------------------------------------
  const [finding, setFinding] = createSignal(false);
  let container!: HTMLDivElement;
  view.focusContainer = () => container?.focus({ preventScroll: true });
  const pending = { key: '', at: 0 };
  const onKey = (e: KeyboardEvent): void => {
    const mod = e.ctrlKey || e.metaKey;
    if (mod && e.key === 's') {
      e.preventDefault();
      void save(true);
      return;
    }
    const t = e.target as HTMLElement;
    const inEditor = !!t.closest('.cell-editor');
    if (inEditor || t.closest('input, textarea, .find-bar, .dialog')) return;
    if (mod && e.key === 'f') {
      e.preventDefault();
      setFinding(true);
      return;
    }
    if (e.key === 'Escape') {
      view.commandMode();
      return;
    }
    if (view.mode() === 'command' && handleCommandKey(view, e, pending)) e.preventDefault();
  };
  window.addEventListener('keydown', onKey);
  onCleanup(() => window.removeEventListener('keydown', onKey));

  const name = (): string => path().split('/').pop()?.replace(/\.ipynb$/, '') ?? path();
  const receipt = kernel.lastReceipt;

  return (
    <div class="notebook-page">
      <header class="nb-header">
        <a class="home" href="/tree" title="files" onClick={(e) => { e.preventDefault(); navigate({ kind: 'tree', path: path().includes('/') ? path().slice(0, path().lastIndexOf('/')) : '' }); }}>Kinesis</a>
        <Show when={renaming()} fallback={<h1 class="nb-title" title="rename" onClick={() => setRenaming(true)}>{name()}</h1>}>
          <input class="nb-title-input" value={name()} aria-label="notebook name" ref={(el) => queueMicrotask(() => el.select())}
            onKeyDown={(e) => { e.stopPropagation(); if (e.key === 'Enter') void rename(e.currentTarget.value); if (e.key === 'Escape') setRenaming(false); }}
            onBlur={(e) => void rename(e.currentTarget.value)} />
        </Show>
        <span class="save-state" data-state={saveState()}>{saveState()}</span>
      </header>
      <div class="toolbar" role="toolbar">
        <button title="save (Ctrl+S)" onClick={() => void save(true)}>Save</button>
        <button title="insert code cell below (B)" onClick={() => view.insert('below', 'code')}>+ Code</button>
        <button title="insert markdown cell below" onClick={() => view.insert('below', 'markdown')}>+ Markdown</button>
        <button class="run" title="run cell (Shift+Enter)" onClick={() => view.run('advance')}>▶ Run</button>
        <button class="run-all" onClick={() => view.runAll()}>Run all</button>
        <button onClick={() => view.runAbove()}>Run above</button>
        <button onClick={() => view.runBelow()}>Run below</button>
        <button class="interrupt" title="interrupt (I, I)" onClick={() => void kernel.interrupt()}>■ Interrupt</button>
        <button class="restart" title="restart (0, 0)" onClick={() => void kernel.restart()}>↻ Restart</button>
        <button class="restart-run-all" onClick={() => void kernel.restart().then(() => view.runAll())}>Restart &amp; run all</button>
        <button class="shutdown" onClick={() => void kernel.shutdown()}>Shut down</button>
        <button class="find" title="find and replace (Ctrl+F)" onClick={() => setFinding(true)}>Find</button>
        <button class="download" onClick={() => downloadText(path().split('/').pop() ?? 'notebook.ipynb', stringifyNotebook(model.toNotebook()))}>Download</button>
        <span class="spacer" />
        <button class="kernel-button" title={describeHardware(hardwareOf(currentSpec()))} onClick={() => setPicker(true)}>
          {currentSpec()?.display_name ?? kernel.kernelName() ?? 'Select kernel'}
        </button>
        <span class={`kernel-status status-${kernel.status()}`} title={`connection: ${kernel.connection()}`} data-status={kernel.status()}>
          <span class="dot" />{kernel.status()}{kernel.connection() !== 'connected' && kernel.kernel ? ` (${kernel.connection()})` : ''}
        </span>
      </div>
      <Show when={finding()}><FindBar view={view} onClose={() => { setFinding(false); view.focusContainer(); }} /></Show>
      <Show when={props.warning}><p class="warning">{props.warning}</p></Show>
      <Show when={kernelError() ?? kernel.error()}>{(e) => <p class="error" role="alert">Kernel: {e()}</p>}</Show>
      <div class="nb-main" ref={container} tabIndex={0} data-mode={view.mode()} aria-label="notebook">
        <CellList view={view} pool={pool} />
        <Show when={model.order().length === 0}>
          <p class="empty">Empty notebook. Press <kbd>B</kbd> or “+ Code” to add a cell.</p>
        </Show>
      </div>
      <footer class="status-bar">
        <span class="mode">{view.mode() === 'edit' ? 'Edit' : 'Command'} mode</span>
        <span>{model.order().length} cells</span>
        <span class="hardware">{describeHardware(hardwareOf(currentSpec()))}</span>
        <Show when={receipt()}>
          {(r) => <span class="session-total" title="cumulative energy and amount for this session, from the latest signed receipt">session: {formatEnergy(r().cumulativeEnergyMj)} · {formatAmount(r().cumulativeAmount)}</span>}
        </Show>
      </footer>
      <Show when={picker()}>
        <KernelPicker services={props.services} current={kernel.kernelName()} onClose={() => setPicker(false)} onPick={(n) => { setPicker(false); void startKernel(n); }} />
      </Show>
    </div>
  );
}
