// Jupyter Server's kernels API (jupyter_server/services/kernels/handlers.py):
// GET|POST /api/kernels, GET|DELETE /api/kernels/{id}, POST /api/kernels/{id}/interrupt|restart.
// The WebSocket route (/channels) is in app.ts, which owns the HTTP upgrade.
import { kernelEnv, objectBody, optString, placementConstraints } from '../http/body.ts';
import { notFound } from '../http/errors.ts';
import { sendJson, type Route } from '../http/router.ts';
import type { KernelManager } from './manager.ts';

/** No REST call waits longer than this for a provider (issue: never block a client past 40 s). */
export const MAX_REST_WAIT_MS = 38_000;

export function kernelRoutes(manager: KernelManager, maxWaitMs = MAX_REST_WAIT_MS): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/kernels',
      handler: ({ res }) => sendJson(res, 200, [...manager.kernels.values()].map((k) => k.model())),
    },
    {
      method: 'POST',
      path: '/api/kernels',
      handler: async (ctx) => {
        const body = objectBody(await ctx.json(), 'request body');
        const k = manager.start({ name: optString(body, 'name', 256), env: kernelEnv(body), constraints: placementConstraints(body) });
        // Answer at once with `starting`; clients' messages queue until the kernel is ready.
        sendJson(ctx.res, 201, k.model(), { Location: `/api/kernels/${k.id}` });
      },
    },
    {
      method: 'GET',
      path: '/api/kernels/:id',
      handler: ({ res, params }) => sendJson(res, 200, manager.require(params['id'] ?? '').model()),
    },
    {
      method: 'DELETE',
      path: '/api/kernels/:id',
      handler: async ({ res, params }) => {
        const id = params['id'] ?? '';
        manager.require(id);
        await withDeadline(manager.shutdown(id, 'deleted by a client'), maxWaitMs);
        res.writeHead(204).end();
      },
    },
    {
      method: 'POST',
      path: '/api/kernels/:id/interrupt',
      handler: async ({ res, params }) => {
        await withDeadline(manager.interrupt(params['id'] ?? ''), maxWaitMs);
        res.writeHead(204).end();
      },
    },
    {
      method: 'POST',
      path: '/api/kernels/:id/restart',
      handler: async ({ res, params }) => {
        const id = params['id'] ?? '';
        manager.require(id);
        // Jupyter answers after the restart; we answer then too, or with `restarting` at the deadline.
        await withDeadline(manager.restart(id), maxWaitMs);
        const k = manager.get(id);
        if (!k) throw notFound(`kernel ${id} not found`);
        sendJson(res, 200, k.model());
      },
    },
  ];
}

/** Waits for `p` up to `ms`; rejects with p's error, resolves either way at the deadline. */
export function withDeadline(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    p.then(
      () => {
        clearTimeout(t);
        resolve();
      },
      (err: unknown) => {
        clearTimeout(t);
        reject(err);
      },
    );
  });
}
