// Contents models exactly as Jupyter Server's FileContentsManager builds them
// (jupyter_server/services/contents/filemanager.py: _base_model, _dir_model,
// _file_model, _notebook_model); the field set is what @jupyterlab/services'
// validateContentsModel checks.
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import type { Stats } from 'node:fs';
import { access, readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { NotebookFormatError, rejoinNotebookLines, upgradeNotebook, validateNotebook } from '@kinesis/protocol/notebook/index';
import { HttpError, badRequest, notFound } from '../http/errors.ts';
import { baseName, joinApi } from './paths.ts';
import type { PathResolver } from './paths.ts';

export type ContentType = 'directory' | 'file' | 'notebook';
export type ContentFormat = 'json' | 'text' | 'base64';

export interface ContentsModel {
  name: string;
  path: string;
  type: ContentType;
  writable: boolean;
  created: string;
  last_modified: string;
  mimetype: string | null;
  content: unknown;
  format: ContentFormat | null;
  size: number | null;
  hash?: string;
  hash_algorithm?: string;
  message?: string;
}

export interface GetOptions {
  readonly type?: ContentType | undefined;
  readonly format?: 'text' | 'base64' | undefined;
  readonly content: boolean;
  readonly hash: boolean;
  readonly maxReadBytes: number;
}

const MIME: Record<string, string> = {
  '.txt': 'text/plain', '.py': 'text/x-python', '.md': 'text/markdown', '.json': 'application/json',
  '.csv': 'text/csv', '.html': 'text/html', '.htm': 'text/html', '.css': 'text/css', '.js': 'text/javascript',
  '.ts': 'text/typescript', '.svg': 'image/svg+xml', '.png': 'image/png', '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.pdf': 'application/pdf', '.yaml': 'application/x-yaml',
  '.yml': 'application/x-yaml', '.ipynb': 'application/x-ipynb+json', '.sh': 'application/x-sh',
  '.tsv': 'text/tab-separated-values', '.xml': 'application/xml', '.zip': 'application/zip',
};

export function guessMime(name: string, format: ContentFormat | null): string {
  return MIME[path.extname(name).toLowerCase()] ?? (format === 'base64' ? 'application/octet-stream' : 'text/plain');
}

const iso = (d: Date): string => d.toISOString();

async function isWritable(p: string): Promise<boolean> {
  try {
    await access(p, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export async function statOr404(p: string, apiPath: string): Promise<Stats> {
  try {
    return await stat(p);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw notFound(`no such file or directory: ${apiPath}`);
    throw cause;
  }
}

async function baseModel(p: string, apiPath: string, st: Stats, type: ContentType): Promise<ContentsModel> {
  return {
    name: baseName(apiPath),
    path: apiPath,
    type,
    writable: await isWritable(p),
    // Jupyter uses ctime for `created` (st_birthtime is not portable); so do we.
    created: iso(st.ctime),
    last_modified: iso(st.mtime),
    mimetype: null,
    content: null,
    format: null,
    size: null,
  };
}

/** The model for any path: directory, notebook or file, as `opts` ask. */
export async function getModel(resolver: PathResolver, apiPath: string, opts: GetOptions): Promise<ContentsModel> {
  const p = await resolver.forRead(apiPath);
  const st = await statOr404(p, apiPath);
  if (st.isDirectory()) {
    if (opts.type && opts.type !== 'directory') throw badRequest(`${apiPath} is a directory, not a ${opts.type}`);
    return dirModel(resolver, p, apiPath, st, opts);
  }
  if (opts.type === 'directory') throw badRequest(`${apiPath} is not a directory`);
  if (!st.isFile()) throw notFound(`no such file or directory: ${apiPath}`);
  const asNotebook = opts.type === 'notebook' || (opts.type === undefined && apiPath.endsWith('.ipynb'));
  return asNotebook ? notebookModel(p, apiPath, st, opts) : fileModel(p, apiPath, st, opts);
}

async function dirModel(resolver: PathResolver, p: string, apiPath: string, st: Stats, opts: GetOptions): Promise<ContentsModel> {
  const model = await baseModel(p, apiPath, st, 'directory');
  model.size = null;
  if (!opts.content) return model;
  const entries = await readdir(p, { withFileTypes: true });
  const children: ContentsModel[] = [];
  for (const e of entries) {
    if (!resolver.allowHidden && e.name.startsWith('.')) continue;
    const childApi = joinApi(apiPath, e.name);
    const childOs = path.join(p, e.name);
    let cst: Stats;
    try {
      cst = await stat(childOs); // follows symlinks; a dangling one is skipped, as Jupyter does
      await resolver.assertInsideRoot(childOs, childApi);
    } catch {
      continue;
    }
    if (cst.isDirectory()) children.push(await baseModel(childOs, childApi, cst, 'directory'));
    else if (cst.isFile()) {
      const type: ContentType = e.name.endsWith('.ipynb') ? 'notebook' : 'file';
      const child = await baseModel(childOs, childApi, cst, type);
      child.size = cst.size;
      if (type === 'file') child.mimetype = guessMime(e.name, null);
      children.push(child);
    }
  }
  model.content = children;
  model.format = 'json';
  return model;
}

async function readLimited(p: string, apiPath: string, st: Stats, max: number): Promise<Buffer> {
  if (st.size > max) throw new HttpError(413, `${apiPath} is ${st.size} bytes, over the ${max}-byte read limit`, 'Payload Too Large');
  return readFile(p);
}

function hashOf(buf: Buffer): { hash: string; hash_algorithm: string } {
  return { hash: createHash('sha256').update(buf).digest('hex'), hash_algorithm: 'sha256' };
}

async function fileModel(p: string, apiPath: string, st: Stats, opts: GetOptions): Promise<ContentsModel> {
  const model = await baseModel(p, apiPath, st, 'file');
  model.size = st.size;
  model.mimetype = guessMime(apiPath, null);
  if (!opts.content && !opts.hash) return model;
  const buf = await readLimited(p, apiPath, st, opts.maxReadBytes);
  if (opts.hash) Object.assign(model, hashOf(buf));
  if (!opts.content) return model;
  if (opts.format === 'base64') {
    model.content = buf.toString('base64');
    model.format = 'base64';
  } else {
    const text = decodeUtf8(buf);
    if (text === undefined) {
      if (opts.format === 'text') throw badRequest(`${apiPath} is not UTF-8 encoded`);
      model.content = buf.toString('base64');
      model.format = 'base64';
    } else {
      model.content = text;
      model.format = 'text';
    }
  }
  model.mimetype = guessMime(apiPath, model.format);
  return model;
}

async function notebookModel(p: string, apiPath: string, st: Stats, opts: GetOptions): Promise<ContentsModel> {
  const model = await baseModel(p, apiPath, st, 'notebook');
  model.size = st.size;
  if (!opts.content && !opts.hash) return model;
  const buf = await readLimited(p, apiPath, st, opts.maxReadBytes);
  if (opts.hash) Object.assign(model, hashOf(buf));
  if (!opts.content) return model;
  let nb: unknown;
  try {
    nb = JSON.parse(buf.toString('utf8'));
  } catch (cause) {
    throw badRequest(`Unreadable Notebook: ${apiPath} is not valid JSON`, cause);
  }
  // Like Jupyter, a notebook that parses but fails validation is still returned,
  // with the validation error in `message`, so the user can open and repair it.
  try {
    validateNotebook(nb);
    // Served joined, as Jupyter Server's nbformat.reads does (rejoin_lines).
    nb = rejoinNotebookLines(upgradeNotebook(nb));
  } catch (err) {
    if (!(err instanceof NotebookFormatError)) throw err;
    model.message = `Notebook validation failed: ${err.message}`;
  }
  model.content = nb;
  model.format = 'json';
  return model;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
function decodeUtf8(buf: Buffer): string | undefined {
  try {
    return utf8.decode(buf);
  } catch {
    return undefined;
  }
}
