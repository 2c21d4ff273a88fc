// Jupyter's on-disk line splitting (nbformat/v4/rwbase.py split_lines / rejoin_lines):
// files store sources and text outputs as lists of lines (clean diffs); the API
// serves them joined. Both forms mean the same text.
import type { Cell, JsonObject, JsonValue, MultilineString, Notebook, Output } from './nbformat.ts';
import { joinSource, splitLines } from './nbformat.ts';

// Non-`text/*` MIME types whose values are text and so are split too (rwbase._non_text_split_mimes).
const NON_TEXT_SPLIT = new Set(['application/javascript', 'image/svg+xml']);
const isSplitMime = (mime: string): boolean => mime.startsWith('text/') || NON_TEXT_SPLIT.has(mime);

type Mode = 'split' | 'join';

function lines(v: MultilineString, mode: Mode): MultilineString {
  return mode === 'split' ? (typeof v === 'string' ? splitLines(v) : v) : joinSource(v);
}

function bundle(b: JsonObject, mode: Mode): JsonObject {
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(b)) {
    out[k] = isSplitMime(k) && (typeof v === 'string' || Array.isArray(v)) ? (lines(v as MultilineString, mode) as JsonValue) : v;
  }
  return out;
}

function output(o: Output, mode: Mode): Output {
  switch (o.output_type) {
    case 'stream':
      return { ...o, text: lines(o.text, mode) };
    case 'display_data':
    case 'execute_result':
      return { ...o, data: bundle(o.data, mode) };
    default:
      return o;
  }
}

function attachments(a: JsonObject, mode: Mode): JsonObject {
  const out: Record<string, JsonValue> = {};
  for (const [name, b] of Object.entries(a)) out[name] = b && typeof b === 'object' && !Array.isArray(b) ? bundle(b as JsonObject, mode) : b;
  return out;
}

function cell(c: Cell, mode: Mode): Cell {
  if (c.cell_type === 'code') return { ...c, source: lines(c.source, mode), outputs: c.outputs.map((o) => output(o, mode)) };
  const base = { ...c, source: lines(c.source, mode) };
  return c.attachments ? { ...base, attachments: attachments(c.attachments, mode) } : base;
}

/** The on-disk form: sources and text outputs as lists of lines. */
export function splitNotebookLines(nb: Notebook): Notebook {
  return { ...nb, cells: nb.cells.map((c) => cell(c, 'split')) };
}

/** The API form Jupyter Server serves: the same text, joined into strings. */
export function rejoinNotebookLines(nb: Notebook): Notebook {
  return { ...nb, cells: nb.cells.map((c) => cell(c, 'join')) };
}
