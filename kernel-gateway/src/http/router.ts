// A small method+path router over node:http. Route modules (kernels, sessions,
// contents, usage, …) export `Route[]`; the app mounts them. Errors map to Jupyter
// Server's JSON error shape `{ message, reason }` here and nowhere else.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError, badRequest } from './errors.ts';
import { asHttpError } from '../errors.ts';

export interface RequestContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  /** Named segments (`:id`) and the rest-of-path capture (`*path`, URL-decoded, may be ''). */
  readonly params: Readonly<Record<string, string>>;
  /** Reads and parses a JSON body, at most `maxBodyBytes`; an empty body gives `undefined`. */
  json(): Promise<unknown>;
  /** Reads the raw body, at most `maxBodyBytes`. */
  body(): Promise<Buffer>;
}

export type Handler = (ctx: RequestContext) => Promise<void> | void;

export interface Route {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** e.g. `/api/kernels/:id/interrupt`, `/api/contents/*path` (a `*` capture must be last). */
  readonly path: string;
  readonly handler: Handler;
}

interface Compiled { readonly route: Route; readonly re: RegExp; readonly names: readonly string[] }

export interface RouterOptions { readonly maxBodyBytes?: number }

export class Router {
  readonly #routes: Compiled[] = [];
  readonly #maxBody: number;

  constructor(opts: RouterOptions = {}) {
    this.#maxBody = opts.maxBodyBytes ?? 16 * 1024 * 1024;
  }

  add(...routes: readonly Route[]): this {
    for (const route of routes) this.#routes.push(compile(route));
    return this;
  }

  /** Answers the request if a route matches its path; returns false when none does. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    let pathMatched = false;
    for (const c of this.#routes) {
      const m = c.re.exec(url.pathname);
      if (!m) continue;
      pathMatched = true;
      if (c.route.method !== req.method) continue;
      try {
        // Decoding can fail on malformed percent-encoding: a 400, inside the error mapping.
        const params: Record<string, string> = {};
        c.names.forEach((n, i) => {
          params[n] = safeDecode(m[i + 1] ?? '');
        });
        await c.route.handler(makeContext(req, res, url, params, this.#maxBody));
      } catch (err) {
        sendError(res, err);
      }
      return true;
    }
    if (pathMatched) {
      sendError(res, new HttpError(405, `method ${req.method ?? '?'} not allowed on ${url.pathname}`, 'Method Not Allowed'));
      return true;
    }
    return false;
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const http = err instanceof HttpError ? err : asHttpError(err);
  if (http) {
    sendJson(res, http.status, { message: http.message, reason: http.reason ?? null });
    return;
  }
  console.error('[gateway] internal error:', err);
  sendJson(res, 500, { message: 'internal server error', reason: 'Internal Server Error' });
}

function compile(route: Route): Compiled {
  const names: string[] = [];
  const parts = route.path.split('/').map((seg, i, all) => {
    if (seg.startsWith(':')) {
      names.push(seg.slice(1));
      return '([^/]+)';
    }
    if (seg.startsWith('*')) {
      if (i !== all.length - 1) throw new Error(`'*' capture must be last in ${route.path}`);
      names.push(seg.slice(1));
      return '?(.*)'; // lets `/api/contents` and `/api/contents/` match with path ''
    }
    return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  });
  return { route, re: new RegExp(`^${parts.join('/')}/?$`), names };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch (cause) {
    throw badRequest('malformed percent-encoding in URL', cause);
  }
}

function makeContext(req: IncomingMessage, res: ServerResponse, url: URL, params: Record<string, string>, maxBody: number): RequestContext {
  let cached: Promise<Buffer> | undefined;
  const body = (): Promise<Buffer> => (cached ??= readBody(req, maxBody));
  return {
    req,
    res,
    url,
    params,
    body,
    async json() {
      const buf = await body();
      if (buf.length === 0) return undefined;
      try {
        return JSON.parse(buf.toString('utf8')) as unknown;
      } catch (cause) {
        throw badRequest('request body is not valid JSON', cause);
      }
    },
  };
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (Number.isFinite(declared) && declared > max) {
    return Promise.reject(new HttpError(413, `request body over ${max} bytes`, 'Payload Too Large'));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new HttpError(413, `request body over ${max} bytes`, 'Payload Too Large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
