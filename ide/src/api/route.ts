// Jupyter-style URLs, so links can be shared: /tree/<dir> is the file browser and
// /notebooks/<path> opens a notebook. Paths are '/'-joined and percent-encoded per segment.
import { createSignal } from 'solid-js';

export type Route = { readonly kind: 'tree'; readonly path: string } | { readonly kind: 'notebook'; readonly path: string };

export function parseRoute(pathname: string): Route {
  const dec = (s: string): string => s.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  }).join('/');
  if (pathname.startsWith('/notebooks/')) return { kind: 'notebook', path: dec(pathname.slice('/notebooks/'.length)) };
  if (pathname.startsWith('/tree')) return { kind: 'tree', path: dec(pathname.slice('/tree'.length)) };
  return { kind: 'tree', path: '' };
}

export function routeUrl(r: Route): string {
  const enc = r.path.split('/').filter(Boolean).map(encodeURIComponent).join('/');
  return r.kind === 'notebook' ? `/notebooks/${enc}` : `/tree${enc ? `/${enc}` : ''}`;
}

const [route, setRoute] = createSignal<Route>(parseRoute(window.location.pathname));
window.addEventListener('popstate', () => setRoute(parseRoute(window.location.pathname)));

export { route };

export function navigate(r: Route, replace = false): void {
  const url = routeUrl(r);
  if (replace) window.history.replaceState(null, '', url);
  else window.history.pushState(null, '', url);
  setRoute(r);
}
