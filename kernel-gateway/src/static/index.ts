// Serves the built IDE (ide/dist): the app shell at `/`, `/notebooks/<path>` and
// `/tree/<path>` (so a notebook link can be shared, as in Jupyter), and vite's hashed
// assets with a year-long immutable cache. Every response carries a strict
// Content-Security-Policy: kernel outputs are rendered in this origin after
// sanitising, and the CSP is the second wall should a sanitiser ever miss something.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { ServerResponse } from 'node:http';
import type { RequestContext, Route } from '../http/router.ts';
import { HttpError, notFound } from '../http/errors.ts';

export interface StaticOptions {
  /** The vite build output, e.g. `ide/dist`. */
  readonly distDir: string;
}

/**
 * script-src 'self': no inline script and no eval anywhere (Monaco 0.57 needs neither;
 * its workers are same-origin files). style-src needs 'unsafe-inline' because Monaco
 * and KaTeX set inline styles. Images may come from https (markdown images) but
 * never leak the page URL: Referrer-Policy is no-referrer. connect-src 'self'
 * covers the same-origin ws:/wss: channels in CSP Level 3 browsers.
 */
export const APP_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob: https:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "worker-src 'self' blob:",
  "frame-src 'none'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': APP_CSP,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json; charset=utf-8', '.svg': 'image/svg+xml',
  '.png': 'image/png', '.ico': 'image/x-icon', '.woff2': 'font/woff2', '.woff': 'font/woff', '.ttf': 'font/ttf',
  '.map': 'application/json; charset=utf-8', '.txt': 'text/plain; charset=utf-8', '.wasm': 'application/wasm',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.mjs', '.css', '.json', '.svg', '.map', '.txt', '.ttf']);

interface Cached { readonly body: Buffer; readonly gz: Buffer | undefined; readonly mtimeMs: number }

export function staticRoutes(opts: StaticOptions): Route[] {
  const root = path.resolve(opts.distDir);
  const cache = new Map<string, Cached>();

  async function load(rel: string): Promise<Cached> {
    const file = path.join(root, rel);
    if (!file.startsWith(root + path.sep)) throw notFound('not found');
    let st;
    try {
      st = await stat(file);
    } catch {
      if (rel === 'index.html') throw new HttpError(503, `the IDE is not built (no ${path.join(opts.distDir, 'index.html')}); run \`npm run build\``, 'Service Unavailable');
      throw notFound(`not found: /${rel}`);
    }
    if (!st.isFile()) throw notFound(`not found: /${rel}`);
    const hit = cache.get(rel);
    if (hit && hit.mtimeMs === st.mtimeMs) return hit;
    const body = await readFile(file);
    const ext = path.extname(rel);
    const entry = { body, gz: COMPRESSIBLE.has(ext) && body.length > 1024 ? gzipSync(body) : undefined, mtimeMs: st.mtimeMs };
    cache.set(rel, entry);
    return entry;
  }

  function send(ctx: RequestContext, rel: string, entry: Cached, cacheControl: string): void {
    const res: ServerResponse = ctx.res;
    const headers: Record<string, string> = {
      ...SECURITY_HEADERS,
      'Content-Type': TYPES[path.extname(rel)] ?? 'application/octet-stream',
      'Cache-Control': cacheControl,
      Vary: 'Accept-Encoding',
    };
    const acceptsGzip = /\bgzip\b/.test(String(ctx.req.headers['accept-encoding'] ?? ''));
    const body = acceptsGzip && entry.gz ? entry.gz : entry.body;
    if (body === entry.gz) headers['Content-Encoding'] = 'gzip';
    headers['Content-Length'] = String(body.length);
    res.writeHead(200, headers);
    res.end(body);
  }

  // The shell is never cached, so a new build is picked up on reload; it names its
  // hashed assets, which are cached for a year.
  const shell = async (ctx: RequestContext): Promise<void> => send(ctx, 'index.html', await load('index.html'), 'no-cache');

  const asset = async (ctx: RequestContext): Promise<void> => {
    const rel = (ctx.params.path ?? '').split('/').filter((s) => s && s !== '.');
    if (rel.length === 0 || rel.some((s) => s === '..' || s.includes('\0') || s.includes('\\'))) throw notFound('not found');
    const name = path.posix.join('assets', ...rel);
    send(ctx, name, await load(name), 'public, max-age=31536000, immutable');
  };

  return [
    { method: 'GET', path: '/', handler: shell },
    { method: 'GET', path: '/notebooks/*path', handler: shell },
    { method: 'GET', path: '/tree/*path', handler: shell },
    { method: 'GET', path: '/assets/*path', handler: asset },
  ];
}
