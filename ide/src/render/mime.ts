// Rich MIME bundles, in the order of preference the issue sets (close to JupyterLab's):
// HTML, SVG, PNG/JPEG/GIF, markdown, LaTeX, JSON, plain text. Anything scriptable
// (application/javascript, widget views) is never executed; it falls through to the
// next representation, which for Python objects is always text/plain.
import { renderAnsi } from './ansi.ts';
import { renderMarkdown, renderTex } from './markdown.ts';
import { sanitizeToString } from './sanitize.ts';

export const MIME_ORDER = ['text/html', 'image/svg+xml', 'image/png', 'image/jpeg', 'image/gif', 'text/markdown', 'text/latex', 'application/json', 'text/plain'] as const;

const asText = (v: unknown): string => (Array.isArray(v) ? v.join('') : typeof v === 'string' ? v : '');

export function pickMime(data: Readonly<Record<string, unknown>>): string | undefined {
  return MIME_ORDER.find((m) => data[m] !== undefined);
}

const B64_RE = /^[A-Za-z0-9+/=\s]*$/;
const sanitized = new WeakMap<object, string>();

function img(mime: string, b64: string, meta: unknown): HTMLElement {
  const el = document.createElement('img');
  if (B64_RE.test(b64)) el.src = `data:${mime};base64,${b64.replace(/\s/g, '')}`;
  el.alt = 'output image';
  const m = (meta as Record<string, unknown> | undefined)?.[mime] as { width?: unknown; height?: unknown } | undefined;
  if (typeof m?.width === 'number') el.width = m.width;
  if (typeof m?.height === 'number') el.height = m.height;
  return el;
}

/** Builds the DOM for one MIME bundle. Returns the element and the MIME type used. */
export function renderBundle(data: Readonly<Record<string, unknown>>, metadata: unknown): { el: HTMLElement; mime: string } {
  const mime = pickMime(data) ?? 'text/plain';
  const v = data[mime];
  let el: HTMLElement;
  switch (mime) {
    case 'text/html': {
      el = document.createElement('div');
      el.className = 'out-html';
      // Outputs are immutable objects in the document: sanitise each once, so cells
      // scrolling back into view cost no DOMPurify pass.
      let clean = sanitized.get(data);
      if (clean === undefined) {
        clean = sanitizeToString(asText(v));
        sanitized.set(data, clean);
      }
      el.innerHTML = clean; // sanitised above
      break;
    }
    case 'image/svg+xml':
      // As an <img>, an SVG is inert: no script, no handlers, no external loads.
      el = document.createElement('img');
      (el as HTMLImageElement).src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(asText(v))}`;
      (el as HTMLImageElement).alt = 'SVG output';
      break;
    case 'image/png':
    case 'image/jpeg':
    case 'image/gif':
      el = img(mime, asText(v), metadata);
      break;
    case 'text/markdown':
      el = document.createElement('div');
      el.className = 'out-markdown markdown';
      el.innerHTML = renderMarkdown(asText(v)); // sanitised inside renderMarkdown
      break;
    case 'text/latex': {
      el = document.createElement('div');
      const tex = asText(v).trim().replace(/^\$\$?|\$\$?$/g, '');
      el.innerHTML = sanitizeToString(renderTex(tex, true)); // KaTeX output (trust off), sanitised anyway
      break;
    }
    case 'application/json':
      el = document.createElement('pre');
      el.className = 'out-json';
      el.textContent = JSON.stringify(v, null, 2);
      break;
    default:
      el = document.createElement('pre');
      renderAnsi(el, asText(v));
  }
  return { el, mime };
}
