// API paths ("a/b/c.ipynb", '/'-separated, relative to the root) to OS paths, with
// the checks Jupyter Server's FileContentsManager makes (to_os_path, is_hidden) plus
// one it does not: a symlink may not lead outside the root.
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { HttpError, badRequest, notFound } from '../http/errors.ts';

/** Normalises an API path: no leading/trailing '/', no empty, '.', '..' or NUL segments. */
export function normalizeApiPath(p: string): string {
  if (p.includes('\0')) throw badRequest('path contains a NUL character');
  if (p.includes('\\')) throw badRequest('path contains a backslash');
  const segs = p.split('/').filter((s) => s !== '' && s !== '.');
  if (segs.some((s) => s === '..')) throw new HttpError(404, `no such file or directory: ${p}`, 'Not Found');
  return segs.join('/');
}

export function isHiddenApiPath(apiPath: string): boolean {
  return apiPath.split('/').some((s) => s.startsWith('.'));
}

export function parentOf(apiPath: string): string {
  const i = apiPath.lastIndexOf('/');
  return i < 0 ? '' : apiPath.slice(0, i);
}

export function baseName(apiPath: string): string {
  return apiPath.slice(apiPath.lastIndexOf('/') + 1);
}

export function joinApi(dir: string, name: string): string {
  return dir ? `${dir}/${name}` : name;
}

export class PathResolver {
  readonly #root: string;
  #realRoot: Promise<string> | undefined;
  constructor(rootDir: string, readonly allowHidden: boolean) {
    this.#root = path.resolve(rootDir);
  }

  /** The OS path for an already-normalised API path (lexically inside the root). */
  osPath(apiPath: string): string {
    const p = path.join(this.#root, ...apiPath.split('/').filter(Boolean));
    if (p !== this.#root && !p.startsWith(this.#root + path.sep)) throw notFound(`no such file or directory: ${apiPath}`);
    return p;
  }

  /**
   * Resolves for reading: hidden paths (unless allowed) answer 404 as Jupyter does,
   * and a path whose real location (after symlinks) leaves the root is refused.
   */
  async forRead(apiPath: string): Promise<string> {
    if (!this.allowHidden && isHiddenApiPath(apiPath)) throw notFound(`no such file or directory: ${apiPath}`);
    const p = this.osPath(apiPath);
    await this.assertInsideRoot(p, apiPath);
    return p;
  }

  /** Resolves for writing: hidden targets are a 400, as in Jupyter Server. */
  async forWrite(apiPath: string): Promise<string> {
    if (!this.allowHidden && isHiddenApiPath(apiPath)) throw badRequest(`cannot create or change hidden file or directory ${apiPath}`);
    if (apiPath === '') throw badRequest('cannot change the root directory');
    const p = this.osPath(apiPath);
    // The parent must really be inside the root; the target itself may not exist yet.
    await this.assertInsideRoot(path.dirname(p), parentOf(apiPath));
    return p;
  }

  async assertInsideRoot(osPath: string, apiPath: string): Promise<void> {
    const root = await (this.#realRoot ??= realpath(this.#root));
    let real: string;
    try {
      real = await realpath(osPath);
    } catch {
      return; // does not exist: the caller reports 404 with its own wording
    }
    if (real !== root && !real.startsWith(root + path.sep)) throw notFound(`no such file or directory: ${apiPath}`);
  }
}
