// Token auth as Jupyter Server does it: `Authorization: token <t>` (or `Bearer <t>`), or
// `?token=<t>` in the URL (browsers cannot set headers on a WebSocket). Compared in constant
// time over SHA-256 digests, so neither the content nor the length of the token leaks through
// timing.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export function presentedToken(req: IncomingMessage, url: URL): string | undefined {
  const h = req.headers.authorization;
  if (typeof h === 'string') {
    const m = /^(?:token|bearer)\s+(\S+)\s*$/i.exec(h);
    if (m) return m[1];
  }
  return url.searchParams.get('token') ?? undefined;
}

export function tokenMatches(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** Paths that need the token: the Jupyter API and kernelspec resources. Static IDE files do not; the tunnel authenticates by signature. */
export function needsToken(pathname: string): boolean {
  if (pathname === '/api/tunnel' || pathname === '/api/tunnel/') return false;
  return pathname === '/api' || pathname.startsWith('/api/') || pathname.startsWith('/kernelspecs/');
}
