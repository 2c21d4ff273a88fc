// Jupyter Server's sessions API (jupyter_server/services/sessions/handlers.py):
// GET|POST /api/sessions, GET|PATCH|DELETE /api/sessions/{id}.
import { isRecord } from '@kinesis/protocol/validate';
import { objectBody, optString, placementConstraints } from '../http/body.ts';
import { badRequest, notFound } from '../http/errors.ts';
import { sendJson, type Route } from '../http/router.ts';
import { errorText, type Logger } from '../logger.ts';
import { withDeadline, MAX_REST_WAIT_MS } from '../kernels/routes.ts';
import { UnknownKernelError, type KernelChoice, type SessionStore } from './store.ts';

function kernelChoice(body: Record<string, unknown>): KernelChoice | undefined {
  const k = body['kernel'];
  if (k === undefined || k === null) return undefined;
  if (!isRecord(k)) throw badRequest('kernel must be an object with a name or an id');
  return { id: optString(k, 'id', 64), name: optString(k, 'name', 256), constraints: placementConstraints(k) };
}

export function sessionRoutes(store: SessionStore, logger: Logger): Route[] {
  return [
    { method: 'GET', path: '/api/sessions', handler: ({ res }) => sendJson(res, 200, store.list()) },
    {
      method: 'POST',
      path: '/api/sessions',
      handler: async (ctx) => {
        const body = objectBody(await ctx.json(), 'request body');
        const nb = isRecord(body['notebook']) ? body['notebook'] : {};
        const path = optString(body, 'path', 4096) ?? optString(nb, 'path', 4096);
        if (path === undefined) throw badRequest('Missing field in JSON data: path');
        const name = optString(body, 'name', 4096) ?? '';
        const type = optString(body, 'type', 64) ?? '';
        const model = store.create({ path, name, type, kernel: kernelChoice(body) ?? {} });
        sendJson(ctx.res, 201, model, { Location: `/api/sessions/${model.id}` });
      },
    },
    {
      method: 'GET',
      path: '/api/sessions/:id',
      handler: ({ res, params }) => {
        const m = store.get(params['id'] ?? '');
        if (!m) throw notFound(`session ${(params['id'] ?? '').slice(0, 64)} not found`);
        sendJson(res, 200, m);
      },
    },
    {
      method: 'PATCH',
      path: '/api/sessions/:id',
      handler: async (ctx) => {
        const id = ctx.params['id'] ?? '';
        if (!store.get(id)) throw notFound(`session ${id.slice(0, 64)} not found`);
        const body = objectBody(await ctx.json(), 'request body');
        const kernel = kernelChoice(body);
        if (kernel && !kernel.id && !kernel.name) throw badRequest('kernel must have a name or an id');
        let r;
        try {
          r = store.update(id, {
            path: optString(body, 'path', 4096),
            name: optString(body, 'name', 4096),
            type: optString(body, 'type', 64),
            ...(kernel ? { kernel } : {}),
          });
        } catch (err) {
          if (err instanceof UnknownKernelError) throw badRequest(err.message);
          throw err;
        }
        if (!r) throw notFound(`session ${id.slice(0, 64)} not found`);
        if (r.replacedKernel) {
          // As Jupyter Server: the session's old kernel is shut down when it gets a new one.
          store.manager.shutdown(r.replacedKernel, 'replaced in its session').catch((err: unknown) => logger.warn('shutdown failed', { error: errorText(err) }));
        }
        sendJson(ctx.res, 200, r.model);
      },
    },
    {
      method: 'DELETE',
      path: '/api/sessions/:id',
      handler: async ({ res, params }) => {
        const kernelId = store.delete(params['id'] ?? '');
        if (kernelId === undefined) throw notFound(`session ${(params['id'] ?? '').slice(0, 64)} not found`);
        await withDeadline(store.manager.shutdown(kernelId, 'its session was deleted'), MAX_REST_WAIT_MS);
        res.writeHead(204).end();
      },
    },
  ];
}
