// Monaco, trimmed to what a notebook needs: the core editor API plus find, suggest,
// hover, bracket matching, comments, multi-cursor and clipboard, and the Python and
// Markdown grammars. Loading all of monaco-editor's languages would triple the bundle.
import * as monaco from 'monaco-editor/editor/editor.api';
import EditorWorker from 'monaco-editor/editor/editor.worker?worker';
import 'monaco-editor/features/find/register';
import 'monaco-editor/features/suggest/register';
// features/suggest only registers inline completions; the suggest widget itself:
import 'monaco-editor/editor/contrib/suggest/browser/suggestController';
import 'monaco-editor/editor/contrib/snippet/browser/snippetController2';
import 'monaco-editor/features/hover/register';
import 'monaco-editor/features/bracketMatching/register';
import 'monaco-editor/features/comment/register';
import 'monaco-editor/features/multicursor/register';
import 'monaco-editor/features/clipboard/register';
import 'monaco-editor/features/linesOperations/register';
import 'monaco-editor/features/wordHighlighter/register';
import 'monaco-editor/features/parameterHints/register';
import 'monaco-editor/features/codicon/register';
import 'monaco-editor/languages/definitions/python/register';
import 'monaco-editor/languages/definitions/markdown/register';

declare global {
  interface Window {
    MonacoEnvironment?: monaco.Environment;
  }
}

// Workers are same-origin module files (CSP worker-src 'self'), not blob: URLs.
window.MonacoEnvironment = { getWorker: () => new EditorWorker() };

export { monaco };
