import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Router, sendError } from '../http/router.ts';
import { staticRoutes } from './index.ts';

let server: Server;
let base: string;
let dist: string;
const js = `console.log(${JSON.stringify('x'.repeat(5000))});`;

beforeAll(async () => {
  dist = await mkdtemp(path.join(tmpdir(), 'kinesis-dist-'));
  await mkdir(path.join(dist, 'assets'));
  await writeFile(path.join(dist, 'index.html'), '<!doctype html><script type="module" src="/assets/index-abc123.js"></script>');
  await writeFile(path.join(dist, 'assets', 'index-abc123.js'), js);
  await writeFile(path.join(dist, 'secret.txt'), 'not an asset');
  const router = new Router().add(...staticRoutes({ distDir: dist }));
  server = createServer((req, res) => {
    router.handle(req, res, new URL(req.url ?? '/', 'http://x')).then((h) => h || res.writeHead(404).end(), (e: unknown) => sendError(res, e));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dist, { recursive: true, force: true });
});

describe('static IDE routes', () => {
  it('serves the shell at /, /notebooks/* and /tree/* with a strict CSP', async () => {
    for (const p of ['/', '/notebooks/a/b.ipynb', '/tree/sub', '/tree']) {
      const r = await fetch(base + p);
      expect(r.status, p).toBe(200);
      expect(await r.text()).toContain('index-abc123.js');
      expect(r.headers.get('cache-control')).toBe('no-cache');
      const csp = r.headers.get('content-security-policy') ?? '';
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toMatch(/script-src[^;]*unsafe-inline/);
      expect(csp).not.toContain('unsafe-eval');
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      expect(r.headers.get('referrer-policy')).toBe('no-referrer');
    }
  });

  it('serves hashed assets with a long immutable cache, gzipped when asked', async () => {
    const r = await fetch(`${base}/assets/index-abc123.js`, { headers: { 'Accept-Encoding': 'identity' } });
    expect(r.headers.get('cache-control')).toContain('immutable');
    expect(r.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(await r.text()).toBe(js);
    // fetch would decode gzip itself; ask node:http for raw bytes instead
    const raw = await new Promise<{ enc: string | undefined; body: Buffer }>((resolve, reject) => {
      import('node:http').then(({ get }) => get(`${base}/assets/index-abc123.js`, { headers: { 'Accept-Encoding': 'gzip' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ enc: res.headers['content-encoding'], body: Buffer.concat(chunks) }));
      }).on('error', reject), reject);
    });
    expect(raw.enc).toBe('gzip');
    expect(gunzipSync(raw.body).toString()).toBe(js);
  });

  it('refuses anything outside assets/', async () => {
    for (const p of ['/assets/../secret.txt', '/assets/%2e%2e/secret.txt', '/assets/', '/secret.txt', '/assets/missing.js']) {
      const r = await fetch(base + p);
      expect(r.status, p).toBe(404);
    }
  });

  it('says how to build when the IDE is missing', async () => {
    const router = new Router().add(...staticRoutes({ distDir: path.join(dist, 'nope') }));
    const s = createServer((req, res) => {
      router.handle(req, res, new URL(req.url ?? '/', 'http://x')).catch((e: unknown) => sendError(res, e));
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const r = await fetch(`http://127.0.0.1:${(s.address() as AddressInfo).port}/`);
    expect(r.status).toBe(503);
    expect((await r.json()).message).toMatch(/npm run build/);
    s.closeAllConnections();
    await new Promise<void>((r2) => s.close(() => r2()));
  });
});
