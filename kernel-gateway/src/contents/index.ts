// The Jupyter contents API (/api/contents) over a data directory, wire-compatible
// with Jupyter Server's ContentsHandler and CheckpointsHandler
// (jupyter_server/services/contents/handlers.py), so @jupyterlab/services'
// ContentsManager and JupyterLab itself can browse and save notebooks here.
import { emptyNotebook } from '@kinesis/protocol/notebook/index';
import type { RequestContext, Route } from '../http/router.ts';
import { sendJson } from '../http/router.ts';
import { badRequest } from '../http/errors.ts';
import { createCheckpoint, deleteCheckpoint, listCheckpoints, restoreCheckpoint } from './checkpoints.ts';
import { getModel, statOr404 } from './model.ts';
import type { ContentType } from './model.ts';
import { copyInto, deletePath, newUntitled, renamePath, save } from './ops.ts';
import type { SaveBody } from './ops.ts';
import { PathResolver, normalizeApiPath } from './paths.ts';

export interface ContentsOptions {
  /** The directory served as the contents root. */
  readonly rootDir: string;
  /** Serve and list dot-files (Jupyter's ContentsManager.allow_hidden). Default false. */
  readonly allowHidden?: boolean;
  /** Largest file a save may write, in bytes. Default 100 MiB. */
  readonly maxSaveBytes?: number;
  /** Largest file a GET may read into memory, in bytes. Default 256 MiB. */
  readonly maxReadBytes?: number;
}

const CHECKPOINTS_RE = /^(.*?)\/?checkpoints(?:\/([^/]+))?$/;

function splitCheckpoints(raw: string): { path: string; checkpoint: string | undefined } | undefined {
  const m = CHECKPOINTS_RE.exec(raw.replace(/\/+$/, ''));
  if (!m) return undefined;
  // `checkpoints` must be its own segment: "x/checkpoints", not "xcheckpoints".
  const before = m[1] ?? '';
  const whole = raw.replace(/\/+$/, '');
  if (before !== '' && whole[before.length] !== '/') return undefined;
  if (before === '') return undefined;
  return { path: before, checkpoint: m[2] };
}

const TYPES = new Set(['directory', 'file', 'notebook']);

function locationOf(apiPath: string, suffix = ''): string {
  return `/api/contents/${apiPath.split('/').map(encodeURIComponent).join('/')}${suffix}`;
}

function flag(v: string | null, name: string, dflt: boolean): boolean {
  if (v === null) return dflt;
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw badRequest(`${name} ${JSON.stringify(v)} is invalid; expected 0 or 1`);
}

async function bodyObject(ctx: RequestContext): Promise<Record<string, unknown> | undefined> {
  const b = await ctx.json();
  if (b === undefined || b === null) return undefined;
  if (typeof b !== 'object' || Array.isArray(b)) throw badRequest('request body must be a JSON object');
  return b as Record<string, unknown>;
}

export function contentsRoutes(opts: ContentsOptions): Route[] {
  const resolver = new PathResolver(opts.rootDir, opts.allowHidden ?? false);
  const maxSave = opts.maxSaveBytes ?? 100 * 1024 * 1024;
  const maxRead = opts.maxReadBytes ?? 256 * 1024 * 1024;

  const savedModel = (apiPath: string) => getModel(resolver, apiPath, { content: false, hash: false, maxReadBytes: maxRead });

  async function get(ctx: RequestContext): Promise<void> {
    const cp = splitCheckpoints(ctx.params.path ?? '');
    if (cp && cp.checkpoint === undefined) {
      const apiPath = normalizeApiPath(cp.path);
      const os = await resolver.forRead(apiPath);
      await statOr404(os, apiPath);
      sendJson(ctx.res, 200, await listCheckpoints(os));
      return;
    }
    const apiPath = normalizeApiPath(ctx.params.path ?? '');
    const q = ctx.url.searchParams;
    const type = q.get('type') || undefined;
    if (type !== undefined && !TYPES.has(type)) throw badRequest(`Type ${JSON.stringify(type)} is invalid`);
    const format = q.get('format') || undefined;
    if (format !== undefined && format !== 'text' && format !== 'base64') throw badRequest(`Format ${JSON.stringify(format)} is invalid`);
    const model = await getModel(resolver, apiPath, {
      type: type as ContentType | undefined,
      format,
      content: flag(q.get('content'), 'Content', true),
      hash: flag(q.get('hash'), 'Hash', false),
      maxReadBytes: maxRead,
    });
    sendJson(ctx.res, 200, model);
  }

  async function post(ctx: RequestContext): Promise<void> {
    const cp = splitCheckpoints(ctx.params.path ?? '');
    if (cp) {
      const apiPath = normalizeApiPath(cp.path);
      const os = await resolver.forWrite(apiPath);
      await statOr404(os, apiPath);
      if (cp.checkpoint === undefined) {
        const model = await createCheckpoint(os);
        sendJson(ctx.res, 201, model, { Location: locationOf(apiPath, `/checkpoints/${model.id}`) });
      } else {
        await restoreCheckpoint(os, cp.checkpoint, apiPath);
        ctx.res.writeHead(204).end();
      }
      return;
    }
    const dirApi = normalizeApiPath(ctx.params.path ?? '');
    const body = await bodyObject(ctx);
    let created: string;
    if (body?.copy_from !== undefined) {
      if (typeof body.copy_from !== 'string') throw badRequest('copy_from must be a path');
      created = await copyInto(resolver, body.copy_from, dirApi);
    } else {
      const ext = typeof body?.ext === 'string' ? body.ext : '';
      const rawType = body?.type;
      if (rawType !== undefined && rawType !== '' && (typeof rawType !== 'string' || !TYPES.has(rawType))) throw badRequest(`Type ${JSON.stringify(rawType)} is invalid`);
      const type = (rawType || (ext === '.ipynb' ? 'notebook' : 'file')) as ContentType;
      created = await newUntitled(resolver, dirApi, type, ext);
    }
    sendJson(ctx.res, 201, await savedModel(created), { Location: locationOf(created) });
  }

  async function put(ctx: RequestContext): Promise<void> {
    const apiPath = normalizeApiPath(ctx.params.path ?? '');
    const body = await bodyObject(ctx);
    if (body?.copy_from !== undefined) throw badRequest('Cannot copy with PUT, only POST');
    // An empty PUT creates an empty notebook or file, as Jupyter's ContentsHandler._new does.
    const model: SaveBody = body ?? (apiPath.endsWith('.ipynb') ? { type: 'notebook', content: emptyNotebook() } : { type: 'file', format: 'text', content: '' });
    const created = await save(resolver, apiPath, model, maxSave);
    sendJson(ctx.res, created ? 201 : 200, await savedModel(apiPath), { Location: locationOf(apiPath) });
  }

  async function patch(ctx: RequestContext): Promise<void> {
    const apiPath = normalizeApiPath(ctx.params.path ?? '');
    const body = await bodyObject(ctx);
    const to = await renamePath(resolver, apiPath, body?.path);
    sendJson(ctx.res, 200, await savedModel(to), { Location: locationOf(to) });
  }

  async function del(ctx: RequestContext): Promise<void> {
    const cp = splitCheckpoints(ctx.params.path ?? '');
    if (cp?.checkpoint !== undefined) {
      const apiPath = normalizeApiPath(cp.path);
      await deleteCheckpoint(await resolver.forWrite(apiPath), cp.checkpoint, apiPath);
    } else {
      await deletePath(resolver, normalizeApiPath(ctx.params.path ?? ''));
    }
    ctx.res.writeHead(204).end();
  }

  const path = '/api/contents/*path';
  return [
    { method: 'GET', path, handler: get },
    { method: 'POST', path, handler: post },
    { method: 'PUT', path, handler: put },
    { method: 'PATCH', path, handler: patch },
    { method: 'DELETE', path, handler: del },
  ];
}
