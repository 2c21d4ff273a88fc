// Write operations of the contents API, following Jupyter Server's
// FileContentsManager (new_untitled, copy, save, rename_file, delete_file) and
// increment_filename, so names come out as a Jupyter user expects
// (Untitled.ipynb, Untitled1.ipynb, Untitled Folder 1, a-Copy1.ipynb).
import { randomBytes } from 'node:crypto';
import { appendFile, copyFile, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { NotebookFormatError, emptyNotebook, stringifyNotebook, validateNotebook } from '@kinesis/protocol/notebook/index';
import { HttpError, badRequest, conflict, notFound } from '../http/errors.ts';
import { deleteCheckpoints, renameCheckpoints } from './checkpoints.ts';
import type { ContentType } from './model.ts';
import { statOr404 } from './model.ts';
import { baseName, joinApi, normalizeApiPath, parentOf } from './paths.ts';
import type { PathResolver } from './paths.ts';

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/** Writes via a temporary file and rename, as Jupyter's atomic_writing does. */
export async function atomicWrite(osPath: string, data: string | Buffer): Promise<void> {
  const tmp = path.join(path.dirname(osPath), `.~${path.basename(osPath)}.${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(tmp, data);
    await rename(tmp, osPath);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** jupyter_server ContentsManager.increment_filename. */
export async function incrementFilename(resolver: PathResolver, filename: string, dirApi: string, insert: string): Promise<string> {
  let dot = filename.lastIndexOf('.');
  let ext = dot >= 0 ? filename.slice(dot + 1) : '';
  if (ext !== 'ipynb') {
    dot = filename.indexOf('.');
    ext = dot >= 0 ? filename.slice(dot + 1) : '';
  }
  const stem = dot >= 0 ? filename.slice(0, dot) : filename;
  const suffix = dot >= 0 ? `.${ext}` : '';
  for (let i = 0; i < 100_000; i++) {
    const name = `${stem}${i ? `${insert}${i}` : ''}${suffix}`;
    if (!(await exists(resolver.osPath(joinApi(dirApi, name))))) return name;
  }
  throw conflict(`no free name for ${filename} in ${dirApi || '/'}`);
}

async function assertDirectory(resolver: PathResolver, dirApi: string): Promise<string> {
  const p = await resolver.forRead(dirApi);
  let st;
  try {
    st = await stat(p);
  } catch {
    throw notFound(`no such directory: ${dirApi}`);
  }
  if (!st.isDirectory()) throw badRequest('Cannot POST to files, use PUT instead.');
  return p;
}

/** POST {type, ext}: a new untitled notebook, file or directory in `dirApi`. Returns its API path. */
export async function newUntitled(resolver: PathResolver, dirApi: string, type: ContentType, ext: string): Promise<string> {
  await assertDirectory(resolver, dirApi);
  if (type === 'directory') {
    const name = await incrementFilename(resolver, 'Untitled Folder', dirApi, ' ');
    const api = joinApi(dirApi, name);
    await mkdir(await resolver.forWrite(api));
    return api;
  }
  const e = type === 'notebook' ? '.ipynb' : ext;
  if (e && !/^\.[^/\\\0]{1,32}$/.test(e)) throw badRequest(`invalid extension ${JSON.stringify(ext)}`);
  const name = await incrementFilename(resolver, `${type === 'notebook' ? 'Untitled' : 'untitled'}${e}`, dirApi, '');
  const api = joinApi(dirApi, name);
  const os = await resolver.forWrite(api);
  await writeFile(os, type === 'notebook' ? stringifyNotebook(emptyNotebook()) : '', { flag: 'wx' });
  return api;
}

/** POST {copy_from}: copies a file into `dirApi` as `<name>-Copy<n><ext>`. */
export async function copyInto(resolver: PathResolver, fromApiRaw: string, dirApi: string): Promise<string> {
  const fromApi = normalizeApiPath(fromApiRaw);
  const fromOs = await resolver.forRead(fromApi);
  const st = await statOr404(fromOs, fromApi);
  if (st.isDirectory()) throw badRequest(`cannot copy directory ${fromApi}`);
  await assertDirectory(resolver, dirApi);
  const name = await incrementFilename(resolver, baseName(fromApi).replace(/-Copy\d*\./, '.'), dirApi, '-Copy');
  const api = joinApi(dirApi, name);
  await copyFile(fromOs, await resolver.forWrite(api));
  return api;
}

export interface SaveBody {
  readonly type?: unknown;
  readonly format?: unknown;
  readonly content?: unknown;
  readonly chunk?: unknown;
}

/**
 * PUT: saves a notebook (validated nbformat 4), a file (text or base64, optionally in
 * JupyterLab's numbered chunks: 1 starts, n>1 appends, -1 is the last) or a directory.
 * Returns whether the path was created (201) rather than replaced (200).
 */
export async function save(resolver: PathResolver, apiPath: string, body: SaveBody, maxBytes: number): Promise<boolean> {
  const os = await resolver.forWrite(apiPath);
  const existed = await exists(os);
  if (!(await exists(path.dirname(os)))) throw notFound(`no such directory: ${parentOf(apiPath)}`);
  const type = body.type;
  if (type === 'directory') {
    if (existed && !(await stat(os)).isDirectory()) throw badRequest(`${apiPath} exists and is not a directory`);
    await mkdir(os, { recursive: true });
    return !existed;
  }
  if (existed && (await stat(os)).isDirectory()) throw badRequest(`${apiPath} is a directory, not a file`);
  if (type === 'notebook') {
    if (body.content === undefined || body.content === null) throw badRequest('no notebook content provided');
    try {
      validateNotebook(body.content);
    } catch (err) {
      if (err instanceof NotebookFormatError) throw badRequest(`Notebook validation failed: ${err.message}`, err);
      throw err;
    }
    const text = stringifyNotebook(body.content);
    if (Buffer.byteLength(text) > maxBytes) throw tooLarge(apiPath, maxBytes);
    await atomicWrite(os, text);
    return !existed;
  }
  if (type !== 'file') throw badRequest(`unknown content type ${JSON.stringify(type)}; expected notebook, file or directory`);
  if (typeof body.content !== 'string') throw badRequest('no file content provided');
  let data: Buffer;
  if (body.format === 'text') data = Buffer.from(body.content, 'utf8');
  else if (body.format === 'base64') {
    if (!/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(body.content)) throw badRequest('content is not valid base64');
    data = Buffer.from(body.content, 'base64');
  } else throw badRequest("Must specify format of file contents as 'text' or 'base64'");
  const chunk = body.chunk;
  if (chunk === undefined || chunk === null) {
    if (data.length > maxBytes) throw tooLarge(apiPath, maxBytes);
    await atomicWrite(os, data);
    return !existed;
  }
  if (typeof chunk !== 'number' || !Number.isInteger(chunk) || (chunk < 1 && chunk !== -1)) throw badRequest('chunk must be a positive integer or -1');
  const current = chunk === 1 || !existed ? 0 : (await stat(os)).size;
  if (current + data.length > maxBytes) throw tooLarge(apiPath, maxBytes);
  if (chunk === 1) await writeFile(os, data);
  else await appendFile(os, data);
  return !existed;
}

const tooLarge = (apiPath: string, max: number): HttpError => new HttpError(413, `${apiPath}: content over the ${max}-byte limit`, 'Payload Too Large');

/** PATCH {path}: renames a file or directory; 409 if the target exists. */
export async function renamePath(resolver: PathResolver, fromApi: string, toRaw: unknown): Promise<string> {
  if (typeof toRaw !== 'string' || toRaw.trim() === '') throw badRequest('body must be {"path": "<new path>"}');
  const toApi = normalizeApiPath(toRaw);
  if (toApi === fromApi) return toApi;
  const fromOs = await resolver.forWrite(fromApi);
  await statOr404(fromOs, fromApi);
  const toOs = await resolver.forWrite(toApi);
  if (await exists(toOs)) throw conflict(`File already exists: ${toApi}`);
  if (!(await exists(path.dirname(toOs)))) throw notFound(`no such directory: ${parentOf(toApi)}`);
  if ((toOs + path.sep).startsWith(fromOs + path.sep)) throw badRequest(`cannot move ${fromApi} into itself`);
  await rename(fromOs, toOs);
  await renameCheckpoints(fromOs, toOs);
  return toApi;
}

/** DELETE: a file (with its checkpoint) or a directory that holds nothing but checkpoints. */
export async function deletePath(resolver: PathResolver, apiPath: string): Promise<void> {
  const os = await resolver.forWrite(apiPath);
  const st = await statOr404(os, apiPath);
  if (st.isDirectory()) {
    const left = (await readdir(os)).filter((n) => n !== '.ipynb_checkpoints');
    if (left.length) throw badRequest(`Directory ${apiPath} not empty`);
    await rm(os, { recursive: true });
    return;
  }
  await rm(os);
  await deleteCheckpoints(os);
}
