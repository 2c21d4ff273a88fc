// Completions (complete_request) and hover help (inspect_request) from the notebook's
// kernel, for every Python model. Jupyter counts cursor positions in Unicode code
// points (messaging 5.2+), Monaco in UTF-16 units: convert both ways.
import type { Kernel } from '@jupyterlab/services';
import { stripAnsi } from '../render/ansi.ts';
import { monaco } from './monaco.ts';

let current: () => Kernel.IKernelConnection | null = () => null;

/** Points the providers at the open notebook's kernel. */
export function setProviderKernel(get: () => Kernel.IKernelConnection | null): void {
  current = get;
}

export function utf16ToCodePoints(text: string, offset: number): number {
  return [...text.slice(0, offset)].length;
}
export function codePointsToUtf16(text: string, cp: number): number {
  let units = 0;
  let n = 0;
  for (const ch of text) {
    if (n >= cp) break;
    units += ch.length;
    n++;
  }
  return units;
}

let registered = false;
export function registerKernelProviders(): void {
  if (registered) return;
  registered = true;
  monaco.languages.registerCompletionItemProvider('python', {
    triggerCharacters: ['.'],
    async provideCompletionItems(model, position) {
      const k = current();
      if (!k || k.status === 'dead') return { suggestions: [] };
      const code = model.getValue();
      const offset = model.getOffsetAt(position);
      const reply = await k.requestComplete({ code, cursor_pos: utf16ToCodePoints(code, offset) });
      const c = reply.content;
      if (c.status !== 'ok' || model.isDisposed()) return { suggestions: [] };
      const start = model.getPositionAt(codePointsToUtf16(code, c.cursor_start));
      const end = model.getPositionAt(codePointsToUtf16(code, c.cursor_end));
      const range = new monaco.Range(start.lineNumber, start.column, end.lineNumber, end.column);
      const types = (c.metadata?._jupyter_types_experimental as { text: string; type?: string }[] | undefined) ?? [];
      const kindOf = (t?: string): monaco.languages.CompletionItemKind => {
        const K = monaco.languages.CompletionItemKind;
        switch (t) {
          case 'function': return K.Function;
          case 'class': return K.Class;
          case 'module': return K.Module;
          case 'keyword': return K.Keyword;
          case 'instance': return K.Variable;
          case 'statement': return K.Variable;
          case 'param': return K.Variable;
          case 'path': return K.File;
          default: return K.Text;
        }
      };
      const typeByText = new Map(types.map((t) => [t.text, t.type]));
      return {
        suggestions: c.matches.slice(0, 500).map((m, i) => ({
          label: m,
          kind: kindOf(typeByText.get(m)),
          insertText: m,
          range,
          sortText: String(i).padStart(5, '0'),
        })),
      };
    },
  });
  monaco.languages.registerHoverProvider('python', {
    async provideHover(model, position) {
      const k = current();
      if (!k || k.status === 'dead' || k.status === 'busy') return null;
      const code = model.getValue();
      const offset = model.getOffsetAt(position);
      const reply = await k.requestInspect({ code, cursor_pos: utf16ToCodePoints(code, offset), detail_level: 0 });
      const c = reply.content;
      if (c.status !== 'ok' || !c.found) return null;
      const plain = (c.data as Record<string, unknown>)['text/plain'];
      if (typeof plain !== 'string') return null;
      const text = stripAnsi(plain).slice(0, 4000);
      // A fenced block is rendered as text by Monaco's markdown renderer (no HTML).
      const fence = '`'.repeat(Math.max(3, ...[...text.matchAll(/`+/g)].map((m) => m[0].length + 1)));
      return { contents: [{ value: `${fence}text\n${text}\n${fence}`, isTrusted: false, supportHtml: false }] };
    },
  });
}
