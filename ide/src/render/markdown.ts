// KaTeX emits MathML only: browsers render MathML Core natively, it is what screen
// readers read, and it is a fraction of the DOM of KaTeX's HTML output (which
// matters when scrolling a notebook with hundreds of formulas).
//
// Markdown (cells and text/markdown outputs) with TeX math: $…$, $$…$$, \(…\), \[…\]
// are lifted out before marked sees them (so `_` and `*` inside math stay math),
// rendered by KaTeX (trust off: no \href or \includegraphics URLs), put back, and the
// whole result is sanitised.
import katex from 'katex';
import { Marked } from 'marked';
import { sanitizeToString } from './sanitize.ts';

const marked = new Marked({ gfm: true, breaks: false, async: false });

const MATH_RE = /(\$\$[\s\S]+?\$\$|\\\[[\s\S]+?\\\]|\\\([\s\S]+?\\\)|(?<![\\$\w])\$(?!\s)[^$\n]+?(?<!\s)\$(?!\w))/g;
const CODE_RE = /(```[\s\S]*?```|~~~[\s\S]*?~~~|`[^`\n]*`)/g;

export function renderTex(tex: string, display: boolean): string {
  return katex.renderToString(tex, { displayMode: display, throwOnError: false, trust: false, strict: 'ignore', output: 'mathml', maxExpand: 1000, maxSize: 50 });
}

// Rendered markdown by source, so scrolling back over cells costs nothing. Only
// attachment-free sources are cached (attachments make the key large).
const cache = new Map<string, string>();
const CACHE_MAX = 2000;

/** Renders markdown to sanitised HTML; `attachments` resolves `attachment:name` image URLs. */
export function renderMarkdown(src: string, attachments?: Readonly<Record<string, unknown>>): string {
  if (attachments) return render(src, attachments);
  const hit = cache.get(src);
  if (hit !== undefined) return hit;
  const html = render(src, undefined);
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
  cache.set(src, html);
  return html;
}

function render(src: string, attachments: Readonly<Record<string, unknown>> | undefined): string {
  const maths: string[] = [];
  // Protect code spans/blocks first so `$` inside code is not math.
  const codes: string[] = [];
  let text = src.replace(CODE_RE, (m) => `\u0000C${codes.push(m) - 1}\u0000`);
  text = text.replace(MATH_RE, (m) => {
    const display = m.startsWith('$$') || m.startsWith('\\[');
    const body = m.startsWith('$$') ? m.slice(2, -2) : m.startsWith('$') ? m.slice(1, -1) : m.slice(2, -2);
    maths.push(renderTex(body, display));
    return `\u0000M${maths.length - 1}\u0000`;
  });
  text = text.replace(/\u0000C(\d+)\u0000/g, (_m, i: string) => codes[Number(i)] ?? '');
  let html = marked.parse(text) as string;
  html = html.replace(/\u0000M(\d+)\u0000/g, (_m, i: string) => maths[Number(i)] ?? '');
  if (attachments) {
    html = html.replace(/(src=")attachment:([^"]+)"/g, (m, pre: string, name: string) => {
      const bundle = attachments[decodeURIComponent(name)] as Record<string, unknown> | undefined;
      if (!bundle) return m;
      for (const mime of ['image/png', 'image/jpeg', 'image/gif']) {
        const v = bundle[mime];
        const data = Array.isArray(v) ? v.join('') : v;
        if (typeof data === 'string' && /^[A-Za-z0-9+/=\s]+$/.test(data)) return `${pre}data:${mime};base64,${data.replace(/\s/g, '')}"`;
      }
      return m;
    });
  }
  return sanitizeToString(html);
}
