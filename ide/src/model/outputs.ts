// How iopub messages change a cell's outputs, as pure functions over plain arrays
// (Jupyter messaging 5.3, "IOPub"; behaviour matches JupyterLab's OutputAreaModel):
// consecutive stream messages of one name coalesce into one output, `\r` and `\b`
// rewrite the current line as a terminal would, clear_output(wait=True) defers the
// clear to the next output, and update_display_data replaces outputs by display_id.
import type { JsonObject, MultilineString, Output } from '@kinesis/protocol/notebook/index';

export interface IopubLike {
  readonly header: { readonly msg_type: string };
  readonly content: Record<string, unknown>;
}

export interface OutputState {
  outputs: Output[];
  /** clear_output(wait=True) was received; the next output clears first. */
  clearPending: boolean;
}

const text = (t: MultilineString | unknown): string => (Array.isArray(t) ? t.join('') : typeof t === 'string' ? t : '');

/**
 * Applies `\r` (return to line start, later text overwrites) and `\b` (erase one
 * character) to text, the way a terminal shows progress bars. A trailing `\r` is
 * kept so the next chunk still overwrites the line.
 */
export function fixCarriageReturns(s: string): string {
  if (!/[\r\b]/.test(s)) return s;
  const lines = s.split('\n');
  const out = lines.map((line, i) => {
    let buf = '';
    let col = 0;
    const last = i === lines.length - 1;
    for (let k = 0; k < line.length; k++) {
      const ch = line[k] as string;
      if (ch === '\r') {
        if (k === line.length - 1 && last) return buf + '\r';
        if (line[k + 1] === undefined) continue;
        col = 0;
      } else if (ch === '\b') {
        if (col > 0) col--;
      } else {
        buf = buf.slice(0, col) + ch + buf.slice(col + 1);
        col++;
      }
    }
    return buf;
  });
  return out.join('\n');
}

/** Streams larger than this are cut at the front in memory, as JupyterLab's output limit does. */
export const MAX_STREAM_CHARS = 4 * 1024 * 1024;

function appendStream(state: OutputState, name: 'stdout' | 'stderr', chunk: string): void {
  const last = state.outputs[state.outputs.length - 1];
  if (last && last.output_type === 'stream' && last.name === name) {
    let merged = fixCarriageReturns(text(last.text) + chunk);
    if (merged.length > MAX_STREAM_CHARS) merged = merged.slice(merged.length - MAX_STREAM_CHARS);
    state.outputs[state.outputs.length - 1] = { output_type: 'stream', name, text: merged };
  } else {
    state.outputs.push({ output_type: 'stream', name, text: fixCarriageReturns(chunk) });
  }
}

function displayIdOf(o: Output): string | undefined {
  if (o.output_type !== 'display_data' && o.output_type !== 'execute_result') return undefined;
  const id = o.transient?.display_id;
  return typeof id === 'string' ? id : undefined;
}

const obj = (v: unknown): JsonObject => (v && typeof v === 'object' && !Array.isArray(v) ? (v as JsonObject) : {});

/**
 * Applies one iopub message to `state` (mutating `state.outputs` in place for
 * speed; callers hand in a copy). Returns true if outputs changed. Messages that
 * do not produce outputs (status, execute_input, comm_*) are ignored. Malformed
 * content is ignored rather than trusted: it comes from a kernel we do not control.
 */
export function applyIopub(state: OutputState, msg: IopubLike): boolean {
  const c = msg.content;
  const type = msg.header.msg_type;
  if (type === 'clear_output') {
    if (c.wait === true) {
      state.clearPending = true;
      return false;
    }
    const changed = state.outputs.length > 0;
    state.outputs = [];
    state.clearPending = false;
    return changed;
  }
  let out: Output | undefined;
  switch (type) {
    case 'stream': {
      const name = c.name === 'stderr' ? 'stderr' : 'stdout';
      if (typeof c.text !== 'string') return false;
      if (state.clearPending) {
        state.outputs = [];
        state.clearPending = false;
      }
      appendStream(state, name, c.text);
      return true;
    }
    case 'display_data':
      out = { output_type: 'display_data', data: obj(c.data), metadata: obj(c.metadata), ...(c.transient ? { transient: obj(c.transient) } : {}) };
      break;
    case 'execute_result':
      out = {
        output_type: 'execute_result',
        execution_count: typeof c.execution_count === 'number' ? c.execution_count : null,
        data: obj(c.data),
        metadata: obj(c.metadata),
        ...(c.transient ? { transient: obj(c.transient) } : {}),
      };
      break;
    case 'error':
      out = {
        output_type: 'error',
        ename: String(c.ename ?? ''),
        evalue: String(c.evalue ?? ''),
        traceback: Array.isArray(c.traceback) ? c.traceback.map(String) : [],
      };
      break;
    case 'update_display_data':
      return updateDisplay(state.outputs, obj(c.transient).display_id, obj(c.data), obj(c.metadata));
    default:
      return false;
  }
  if (state.clearPending) {
    state.outputs = [];
    state.clearPending = false;
  }
  state.outputs.push(out);
  return true;
}

/** Replaces data/metadata of every output carrying `displayId`; true if any did. */
export function updateDisplay(outputs: Output[], displayId: unknown, data: JsonObject, metadata: JsonObject): boolean {
  if (typeof displayId !== 'string') return false;
  let hit = false;
  outputs.forEach((o, i) => {
    if (displayIdOf(o) === displayId && (o.output_type === 'display_data' || o.output_type === 'execute_result')) {
      outputs[i] = { ...o, data, metadata };
      hit = true;
    }
  });
  return hit;
}

export function hasDisplayId(outputs: readonly Output[], displayId: string): boolean {
  return outputs.some((o) => displayIdOf(o) === displayId);
}
