// The file browser at /tree/<dir>: lists the gateway's data dir through the contents
// API; creates notebooks and folders, uploads .ipynb (validated first), renames,
// duplicates, deletes and downloads.
import { For, Show, createResource, createSignal } from 'solid-js';
import type { JSX } from 'solid-js';
import type { Contents } from '@jupyterlab/services';
import { parseNotebook } from '@kinesis/protocol/notebook/index';
import { forgetToken } from '../api/auth.ts';
import { navigate } from '../api/route.ts';
import type { Services } from '../api/services.ts';
import { errorMessage } from '../api/services.ts';
import { downloadText } from './download.ts';

/** Largest .ipynb accepted by upload (the gateway enforces its own limit too). */
export const MAX_UPLOAD_BYTES = 64 * 1024 * 1024;

export function FileBrowser(props: { services: Services; path: string }): JSX.Element {
  const c = props.services.contents;
  const [listing, { refetch }] = createResource(() => props.path, (p) => c.get(p, { content: true, type: 'directory' }));
  const [error, setError] = createSignal<string>();
  const act = async (f: () => Promise<unknown>): Promise<void> => {
    setError(undefined);
    try {
      await f();
      await refetch();
    } catch (e) {
      setError(errorMessage(e));
    }
  };
  const items = (): Contents.IModel[] => {
    const l = listing();
    const arr = (l?.content as Contents.IModel[] | undefined) ?? [];
    return [...arr].sort((a, b) => (a.type === 'directory') === (b.type === 'directory') ? a.name.localeCompare(b.name) : a.type === 'directory' ? -1 : 1);
  };
  const crumbs = (): { name: string; path: string }[] => {
    const segs = props.path.split('/').filter(Boolean);
    return [{ name: 'home', path: '' }, ...segs.map((s, i) => ({ name: s, path: segs.slice(0, i + 1).join('/') }))];
  };
  let upload!: HTMLInputElement;

  const onUpload = async (files: FileList | null): Promise<void> => {
    for (const f of Array.from(files ?? [])) {
      await act(async () => {
        if (!f.name.endsWith('.ipynb')) throw new Error(`${f.name}: only .ipynb notebooks can be uploaded here`);
        if (f.size > MAX_UPLOAD_BYTES) throw new Error(`${f.name} is over ${MAX_UPLOAD_BYTES / 1024 / 1024} MiB`);
        const nb = parseNotebook(await f.text());
        const target = props.path ? `${props.path}/${f.name}` : f.name;
        await c.save(target, { type: 'notebook', format: 'json', content: nb as never });
      });
    }
    upload.value = '';
  };

  return (
    <div class="file-browser">
      <div class="fb-toolbar">
        <nav class="crumbs" aria-label="path">
          <For each={crumbs()}>{(cr) => <a href="#" onClick={(e) => { e.preventDefault(); navigate({ kind: 'tree', path: cr.path }); }}>{cr.name}</a>}</For>
        </nav>
        <button class="new-notebook" onClick={() => act(async () => {
          const m = await c.newUntitled({ path: props.path, type: 'notebook' });
          navigate({ kind: 'notebook', path: m.path });
        })}>New notebook</button>
        <button onClick={() => act(() => c.newUntitled({ path: props.path, type: 'directory' }))}>New folder</button>
        <button onClick={() => upload.click()}>Upload .ipynb</button>
        <input ref={upload} type="file" accept=".ipynb,application/x-ipynb+json" multiple hidden aria-label="upload notebook" onChange={(e) => void onUpload(e.currentTarget.files)} />
      </div>
      <Show when={error()}>{(e) => <p class="error" role="alert">{e()}</p>}</Show>
      <Show when={!listing.error} fallback={
        <p class="error" role="alert">
          Could not open {props.path || 'home'}: {errorMessage(listing.error)}
          <Show when={/HTTP 403/.test(errorMessage(listing.error))}>
            {' '}<button class="change-token" onClick={() => { forgetToken(); window.location.reload(); }}>Use another token</button>
          </Show>
        </p>
      }>
        <table class="files">
          <thead><tr><th>Name</th><th>Modified</th><th>Size</th><th /></tr></thead>
          <tbody>
            <For each={items()}>
              {(m) => <FileRow m={m} services={props.services} act={act} />}
            </For>
          </tbody>
        </table>
        <Show when={listing() && items().length === 0}><p class="empty">This folder is empty.</p></Show>
      </Show>
    </div>
  );
}

function FileRow(props: { m: Contents.IModel; services: Services; act: (f: () => Promise<unknown>) => Promise<void> }): JSX.Element {
  const c = props.services.contents;
  const [renaming, setRenaming] = createSignal(false);
  const open = (): void => {
    if (props.m.type === 'directory') navigate({ kind: 'tree', path: props.m.path });
    else if (props.m.type === 'notebook') navigate({ kind: 'notebook', path: props.m.path });
  };
  const dir = props.m.path.includes('/') ? props.m.path.slice(0, props.m.path.lastIndexOf('/')) : '';
  return (
    <tr class="file-row" data-path={props.m.path} data-type={props.m.type}>
      <td>
        <Show when={renaming()} fallback={
          <a href="#" class={`file-link ${props.m.type}`} onClick={(e) => { e.preventDefault(); open(); }}>
            {props.m.type === 'directory' ? '📁 ' : props.m.type === 'notebook' ? '📓 ' : '📄 '}{props.m.name}
          </a>
        }>
          <input
            class="rename-input"
            value={props.m.name}
            aria-label="new name"
            ref={(el) => queueMicrotask(() => el.select())}
            onKeyDown={(e) => {
              if (e.key === 'Escape') setRenaming(false);
              if (e.key !== 'Enter') return;
              const name = e.currentTarget.value.trim();
              setRenaming(false);
              if (name && name !== props.m.name && !name.includes('/')) void props.act(() => c.rename(props.m.path, dir ? `${dir}/${name}` : name));
            }}
            onBlur={() => setRenaming(false)}
          />
        </Show>
      </td>
      <td>{new Date(props.m.last_modified).toLocaleString()}</td>
      <td>{props.m.type === 'directory' ? '' : formatSize(props.m.size)}</td>
      <td class="row-actions">
        <button title="rename" onClick={() => setRenaming(true)}>Rename</button>
        <Show when={props.m.type !== 'directory'}>
          <button title="duplicate" onClick={() => void props.act(() => c.copy(props.m.path, dir))}>Duplicate</button>
          <button title="download" onClick={() => void props.act(async () => {
            const full = await c.get(props.m.path, { content: true, ...(props.m.type === 'notebook' ? { type: 'notebook' } : { type: 'file', format: 'text' }) });
            downloadText(props.m.name, props.m.type === 'notebook' ? JSON.stringify(full.content, null, 1) : String(full.content));
          })}>Download</button>
        </Show>
        <button title="delete" class="danger" onClick={() => {
          if (window.confirm(`Delete ${props.m.path}?`)) void props.act(() => c.delete(props.m.path));
        }}>Delete</button>
      </td>
    </tr>
  );
}

function formatSize(n: number | undefined): string {
  if (n === undefined || n === null) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
