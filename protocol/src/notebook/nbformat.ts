// nbformat 4 types and a structural validator.
// Spec: https://nbformat.readthedocs.io/en/latest/format_description.html and the
// JSON schema nbformat/v4/nbformat.v4.5.schema.json. We check what a reader relies
// on (types, required keys, output shapes) and leave unknown metadata untouched, so
// a file written by any Jupyter tool survives a round trip byte-for-byte in meaning.

/** A JSON value as it appears in a notebook file. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [k: string]: JsonValue };
export type JsonObject = { readonly [k: string]: JsonValue };

/** nbformat "multiline_string": a string or a list of lines that concatenate to it. */
export type MultilineString = string | readonly string[];

export interface StreamOutput {
  readonly output_type: 'stream';
  readonly name: 'stdout' | 'stderr';
  readonly text: MultilineString;
}
export interface DisplayDataOutput {
  readonly output_type: 'display_data';
  readonly data: JsonObject;
  readonly metadata: JsonObject;
  /** Not saved to disk by Jupyter (transient), kept in memory for update_display_data. */
  readonly transient?: JsonObject;
}
export interface ExecuteResultOutput {
  readonly output_type: 'execute_result';
  readonly execution_count: number | null;
  readonly data: JsonObject;
  readonly metadata: JsonObject;
  readonly transient?: JsonObject;
}
export interface ErrorOutput {
  readonly output_type: 'error';
  readonly ename: string;
  readonly evalue: string;
  readonly traceback: readonly string[];
}
export type Output = StreamOutput | DisplayDataOutput | ExecuteResultOutput | ErrorOutput;

export interface CodeCell {
  readonly id: string;
  readonly cell_type: 'code';
  readonly source: MultilineString;
  readonly metadata: JsonObject;
  readonly outputs: readonly Output[];
  readonly execution_count: number | null;
}
export interface MarkdownCell {
  readonly id: string;
  readonly cell_type: 'markdown';
  readonly source: MultilineString;
  readonly metadata: JsonObject;
  readonly attachments?: JsonObject;
}
export interface RawCell {
  readonly id: string;
  readonly cell_type: 'raw';
  readonly source: MultilineString;
  readonly metadata: JsonObject;
  readonly attachments?: JsonObject;
}
export type Cell = CodeCell | MarkdownCell | RawCell;
export type CellType = Cell['cell_type'];

export interface Notebook {
  readonly nbformat: 4;
  readonly nbformat_minor: number;
  readonly metadata: JsonObject;
  readonly cells: readonly Cell[];
}

export class NotebookFormatError extends Error {
  override readonly name = 'NotebookFormatError';
  constructor(
    message: string,
    /** JSON path of the offending value, e.g. `cells[3].outputs[0].name`. */
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(path ? `${path}: ${message}` : message, options);
  }
}

/** nbformat 4.5 cell ids: 1-64 chars of letters, digits, `-` and `_`. */
export const CELL_ID_RE = /^[a-zA-Z0-9-_]{1,64}$/;

/** Joins a multiline string. */
export function joinSource(s: MultilineString): string {
  return typeof s === 'string' ? s : s.join('');
}

/**
 * Splits text into lines that keep their `\n`, as Jupyter writes `source`
 * (nbformat.v4.nbjson's split_lines): "a\nb" → ["a\n", "b"], "" → [].
 */
export function splitLines(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      out.push(text.slice(start, i + 1));
      start = i + 1;
    }
  }
  if (start < text.length) out.push(text.slice(start));
  return out;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function fail(path: string, msg: string): never {
  throw new NotebookFormatError(msg, path);
}

function checkMultiline(v: unknown, path: string): void {
  if (typeof v === 'string') return;
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return;
  fail(path, 'expected a string or a list of strings');
}

function checkObj(v: unknown, path: string): void {
  if (!isObj(v)) fail(path, 'expected an object');
}

function checkMimeBundle(v: unknown, path: string): void {
  checkObj(v, path);
  for (const [mime, value] of Object.entries(v as object)) {
    // Text-like MIME types are multiline strings; JSON types (application/json,
    // application/*+json) may be any JSON value.
    if (/json$/.test(mime)) continue;
    checkMultiline(value, `${path}["${mime}"]`);
  }
}

function checkOutput(o: unknown, path: string): void {
  if (!isObj(o)) fail(path, 'output must be an object');
  switch (o.output_type) {
    case 'stream':
      if (o.name !== 'stdout' && o.name !== 'stderr') fail(`${path}.name`, 'stream name must be stdout or stderr');
      checkMultiline(o.text, `${path}.text`);
      return;
    case 'display_data':
      checkMimeBundle(o.data, `${path}.data`);
      checkObj(o.metadata, `${path}.metadata`);
      return;
    case 'execute_result':
      if (o.execution_count !== null && !Number.isInteger(o.execution_count)) fail(`${path}.execution_count`, 'expected an integer or null');
      checkMimeBundle(o.data, `${path}.data`);
      checkObj(o.metadata, `${path}.metadata`);
      return;
    case 'error':
      if (typeof o.ename !== 'string') fail(`${path}.ename`, 'expected a string');
      if (typeof o.evalue !== 'string') fail(`${path}.evalue`, 'expected a string');
      if (!Array.isArray(o.traceback) || !o.traceback.every((x) => typeof x === 'string')) fail(`${path}.traceback`, 'expected a list of strings');
      return;
    default:
      fail(`${path}.output_type`, `unknown output_type ${JSON.stringify(o.output_type)}`);
  }
}

function checkCell(c: unknown, path: string, requireId: boolean): void {
  if (!isObj(c)) fail(path, 'cell must be an object');
  if (c.id !== undefined || requireId) {
    if (typeof c.id !== 'string' || !CELL_ID_RE.test(c.id)) fail(`${path}.id`, 'cell id must match [a-zA-Z0-9-_]{1,64}');
  }
  checkMultiline(c.source, `${path}.source`);
  checkObj(c.metadata, `${path}.metadata`);
  switch (c.cell_type) {
    case 'code':
      if (!Array.isArray(c.outputs)) fail(`${path}.outputs`, 'expected a list');
      c.outputs.forEach((o, i) => checkOutput(o, `${path}.outputs[${i}]`));
      if (c.execution_count !== null && !Number.isInteger(c.execution_count)) fail(`${path}.execution_count`, 'expected an integer or null');
      return;
    case 'markdown':
    case 'raw':
      if (c.attachments !== undefined) checkObj(c.attachments, `${path}.attachments`);
      return;
    default:
      fail(`${path}.cell_type`, `unknown cell_type ${JSON.stringify(c.cell_type)}`);
  }
}

/**
 * Validates a parsed notebook (nbformat 4.x). Cell ids are required from 4.5 on;
 * older minors may omit them (upgradeNotebook adds them). Duplicate ids are rejected.
 * @throws NotebookFormatError
 */
export function validateNotebook(v: unknown): asserts v is Notebook {
  if (!isObj(v)) fail('', 'notebook must be a JSON object');
  if (v.nbformat !== 4) fail('nbformat', `only nbformat 4 is supported, got ${JSON.stringify(v.nbformat)}`);
  if (!Number.isInteger(v.nbformat_minor) || (v.nbformat_minor as number) < 0) fail('nbformat_minor', 'expected a non-negative integer');
  checkObj(v.metadata, 'metadata');
  if (!Array.isArray(v.cells)) fail('cells', 'expected a list');
  const requireId = (v.nbformat_minor as number) >= 5;
  const seen = new Set<string>();
  v.cells.forEach((c, i) => {
    checkCell(c, `cells[${i}]`, requireId);
    const id = (c as { id?: string }).id;
    if (id !== undefined) {
      if (seen.has(id)) fail(`cells[${i}].id`, `duplicate cell id ${id}`);
      seen.add(id);
    }
  });
}

/**
 * Parses notebook JSON text, rejecting oversize input before parsing.
 * @throws NotebookFormatError
 */
export function parseNotebook(text: string, maxChars = 256 * 1024 * 1024): Notebook {
  if (text.length > maxChars) throw new NotebookFormatError(`notebook is over ${maxChars} characters`, '');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (cause) {
    throw new NotebookFormatError('not valid JSON', '', { cause });
  }
  validateNotebook(v);
  return upgradeNotebook(v);
}

/** A fresh random cell id (nbformat 4.5 recommends short random ids). */
export function newCellId(): string {
  const bytes = new Uint8Array(8);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Upgrades nbformat 4.0-4.4 to 4.5 by giving every cell an id, as nbformat's validator does. */
export function upgradeNotebook(nb: Notebook): Notebook {
  if (nb.nbformat_minor >= 5 && nb.cells.every((c) => typeof c.id === 'string')) return nb;
  return {
    ...nb,
    nbformat_minor: Math.max(nb.nbformat_minor, 5),
    cells: nb.cells.map((c) => (typeof c.id === 'string' ? c : { ...c, id: newCellId() })),
  };
}

/** An empty notebook as Jupyter creates it for an untitled notebook. */
export function emptyNotebook(): Notebook {
  return { nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [] };
}
