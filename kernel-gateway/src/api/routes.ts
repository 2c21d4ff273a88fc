// GET /api and /api/status, as Jupyter Server answers them
// (jupyter_server/services/api/handlers.py).
import { sendJson, type Route } from '../http/router.ts';
import type { KernelManager } from '../kernels/manager.ts';

/** The Jupyter Server REST API level this gateway speaks. */
export const JUPYTER_API_VERSION = '2.14.0';

export function apiRoutes(manager: KernelManager, started: Date): Route[] {
  return [
    { method: 'GET', path: '/api', handler: ({ res }) => sendJson(res, 200, { version: JUPYTER_API_VERSION, kinesis: '0.1.0' }) },
    {
      method: 'GET',
      path: '/api/status',
      handler: ({ res }) => {
        let connections = 0;
        let last = started.getTime();
        for (const k of manager.kernels.values()) {
          connections += k.clients.size;
          if (k.lastActivity > last) last = k.lastActivity;
        }
        sendJson(res, 200, {
          started: started.toISOString(),
          last_activity: new Date(last).toISOString(),
          connections,
          kernels: manager.kernels.size,
          providers: manager.providers.list().length,
        });
      },
    },
  ];
}
