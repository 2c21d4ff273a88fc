// Every HTML or SVG fragment from a kernel, a notebook file or markdown passes through
// here before it touches the DOM. Kernels run on machines the user does not control
// and this origin holds the session token, so: no script, no event handlers, no
// javascript: URLs (DOMPurify's defaults), and in addition no <style> (it would
// restyle the whole IDE), no forms, frames or embeds, and ids/names prefixed so an
// output cannot clobber DOM globals. The page's CSP (script-src 'self', no inline)
// is the second wall.
import DOMPurify from 'dompurify';

const FORBID_TAGS = ['style', 'script', 'form', 'input', 'button', 'textarea', 'select', 'option', 'iframe', 'frame', 'frameset', 'object', 'embed', 'base', 'meta', 'link', 'template', 'foreignObject'];
const FORBID_ATTR = ['action', 'formaction', 'srcdoc', 'ping', 'background'];

let hooked = false;
function ensureHooks(): void {
  if (hooked) return;
  hooked = true;
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      const href = node.getAttribute('href') ?? '';
      // Same-document anchors stay; everything else opens apart from the IDE.
      if (!href.startsWith('#')) {
        node.setAttribute('target', '_blank');
        node.setAttribute('rel', 'noopener noreferrer');
      }
    }
    if (node.hasAttribute('xlink:href')) {
      const v = node.getAttribute('xlink:href') ?? '';
      if (!v.startsWith('#')) node.removeAttribute('xlink:href');
    }
  });
}

export function sanitizeToString(html: string): string {
  ensureHooks();
  return DOMPurify.sanitize(html, {
    FORBID_TAGS,
    FORBID_ATTR,
    SANITIZE_NAMED_PROPS: true,
    ALLOW_UNKNOWN_PROTOCOLS: false,
    USE_PROFILES: { html: true, svg: true, svgFilters: true, mathMl: true },
  });
}
