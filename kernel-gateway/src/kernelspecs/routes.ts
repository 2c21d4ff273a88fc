// GET /api/kernelspecs, /api/kernelspecs/{name}, /kernelspecs/{name}/{file}, as Jupyter
// Server (jupyter_server/services/kernelspecs/handlers.py, jupyter_server/kernelspecs/handlers.py).
import { notFound } from '../http/errors.ts';
import { sendJson, type Route } from '../http/router.ts';
import type { KernelManager } from '../kernels/manager.ts';
import { defaultSpecName, specModel } from './catalog.ts';

const TYPES: Record<string, string> = {
  png: 'image/png',
  svg: 'image/svg+xml',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  json: 'application/json; charset=utf-8',
};

export function kernelspecRoutes(manager: KernelManager): Route[] {
  const load = (id: string): number => manager.loadOf(id);
  return [
    {
      method: 'GET',
      path: '/api/kernelspecs',
      handler: ({ res }) => {
        const catalog = manager.catalog();
        const kernelspecs: Record<string, unknown> = {};
        for (const e of catalog.values()) kernelspecs[e.name] = specModel(e, load);
        sendJson(res, 200, { default: defaultSpecName(catalog), kernelspecs });
      },
    },
    {
      method: 'GET',
      path: '/api/kernelspecs/:name',
      handler: ({ res, params }) => {
        const name = params['name'] ?? '';
        const e = manager.catalog().get(name);
        if (!e) throw notFound(`kernelspec ${JSON.stringify(name.slice(0, 128))} not found`);
        sendJson(res, 200, specModel(e, load));
      },
    },
    {
      method: 'GET',
      path: '/kernelspecs/:name/:file',
      handler: ({ res, params }) => {
        const name = params['name'] ?? '';
        const file = params['file'] ?? '';
        const e = manager.catalog().get(name);
        const b64 = e?.offers[0]?.ad.resources[file];
        if (b64 === undefined) throw notFound(`kernelspec resource ${JSON.stringify(`${name}/${file}`.slice(0, 200))} not found`);
        const body = Buffer.from(b64, 'base64');
        const ext = file.slice(file.lastIndexOf('.') + 1).toLowerCase();
        res.writeHead(200, {
          'Content-Type': TYPES[ext] ?? 'application/octet-stream',
          'Content-Length': String(body.length),
          'Cache-Control': 'max-age=300',
          'X-Content-Type-Options': 'nosniff',
          // A provider wrote these bytes: never let them run as a page of this origin.
          'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        });
        res.end(body);
      },
    },
  ];
}
