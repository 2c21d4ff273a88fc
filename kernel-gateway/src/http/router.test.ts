import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { badRequest } from './errors.ts';
import { Router, sendJson } from './router.ts';

let server: Server;
let base: string;

beforeAll(async () => {
  const router = new Router({ maxBodyBytes: 64 }).add(
    { method: 'GET', path: '/api/things/:id', handler: ({ res, params }) => sendJson(res, 200, { id: params['id'] }) },
    { method: 'GET', path: '/api/files/*path', handler: ({ res, params }) => sendJson(res, 200, { path: params['path'] }) },
    { method: 'POST', path: '/api/echo', handler: async ({ res, json }) => sendJson(res, 200, { got: await json() }) },
    { method: 'GET', path: '/api/fail', handler: () => { throw badRequest('nope'); } },
    { method: 'GET', path: '/api/crash', handler: () => { throw new Error('secret /path/key'); } },
  );
  server = createServer((req, res) => {
    void router.handle(req, res, new URL(req.url ?? '/', 'http://x')).then((hit) => {
      if (!hit) sendJson(res, 404, { message: 'not found', reason: 'Not Found' });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

it('matches named and rest-of-path captures, decoded', async () => {
  expect(await (await fetch(`${base}/api/things/a%20b`)).json()).toEqual({ id: 'a b' });
  expect(await (await fetch(`${base}/api/files/x/y%2Fz.ipynb`)).json()).toEqual({ path: 'x/y/z.ipynb' });
  expect(await (await fetch(`${base}/api/files`)).json()).toEqual({ path: '' });
});

it('answers malformed percent-encoding with 400, not 500', async () => {
  const r = await fetch(`${base}/api/files/%E0%A4%A`);
  expect(r.status).toBe(400);
  expect(((await r.json()) as { message: string }).message).toMatch(/percent-encoding/);
});

it('maps errors: HttpError as is, anything else as a bare 500 that leaks nothing', async () => {
  expect((await fetch(`${base}/api/fail`)).status).toBe(400);
  const r = await fetch(`${base}/api/crash`);
  expect(r.status).toBe(500);
  expect(await r.text()).not.toContain('secret');
});

it('rejects bad JSON with 400, oversize bodies with 413, wrong methods with 405', async () => {
  expect((await fetch(`${base}/api/echo`, { method: 'POST', body: '{' })).status).toBe(400);
  expect((await fetch(`${base}/api/echo`, { method: 'POST', body: 'x'.repeat(100) })).status).toBe(413);
  expect((await fetch(`${base}/api/echo`)).status).toBe(405);
});
