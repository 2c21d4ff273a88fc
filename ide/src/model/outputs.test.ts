import { describe, expect, it } from 'vitest';
import { applyIopub, fixCarriageReturns } from './outputs.ts';
import type { OutputState } from './outputs.ts';

const msg = (msg_type: string, content: Record<string, unknown>) => ({ header: { msg_type }, content });

describe('iopub → outputs', () => {
  it('coalesces streams of the same name and applies carriage returns', () => {
    const s: OutputState = { outputs: [], clearPending: false };
    applyIopub(s, msg('stream', { name: 'stdout', text: 'a\n' }));
    applyIopub(s, msg('stream', { name: 'stdout', text: 'progress 10%\r' }));
    applyIopub(s, msg('stream', { name: 'stdout', text: 'progress 99%\r' }));
    applyIopub(s, msg('stream', { name: 'stdout', text: 'done        \n' }));
    applyIopub(s, msg('stream', { name: 'stderr', text: 'warn\n' }));
    expect(s.outputs).toEqual([
      { output_type: 'stream', name: 'stdout', text: 'a\ndone        \n' },
      { output_type: 'stream', name: 'stderr', text: 'warn\n' },
    ]);
  });
  it('overwrites like a terminal and honours backspace', () => {
    expect(fixCarriageReturns('abcdef\rxy')).toBe('xycdef');
    expect(fixCarriageReturns('ab\bc')).toBe('ac');
    expect(fixCarriageReturns('line\r\nnext')).toBe('line\nnext');
  });
  it('defers clear_output(wait=True) to the next output', () => {
    const s: OutputState = { outputs: [], clearPending: false };
    applyIopub(s, msg('stream', { name: 'stdout', text: 'old' }));
    expect(applyIopub(s, msg('clear_output', { wait: true }))).toBe(false);
    expect(s.outputs).toHaveLength(1);
    applyIopub(s, msg('display_data', { data: { 'text/plain': 'new' }, metadata: {} }));
    expect(s.outputs).toEqual([{ output_type: 'display_data', data: { 'text/plain': 'new' }, metadata: {} }]);
    applyIopub(s, msg('clear_output', { wait: false }));
    expect(s.outputs).toEqual([]);
  });
  it('updates displays by display_id', () => {
    const s: OutputState = { outputs: [], clearPending: false };
    applyIopub(s, msg('display_data', { data: { 'text/plain': '1' }, metadata: {}, transient: { display_id: 'd' } }));
    applyIopub(s, msg('execute_result', { execution_count: 3, data: { 'text/plain': 'r' }, metadata: {} }));
    expect(applyIopub(s, msg('update_display_data', { data: { 'text/plain': '2' }, metadata: {}, transient: { display_id: 'd' } }))).toBe(true);
    expect(s.outputs[0]).toMatchObject({ data: { 'text/plain': '2' } });
    expect(applyIopub(s, msg('update_display_data', { data: {}, metadata: {}, transient: { display_id: 'zzz' } }))).toBe(false);
  });
  it('ignores malformed and non-output messages', () => {
    const s: OutputState = { outputs: [], clearPending: false };
    expect(applyIopub(s, msg('stream', { name: 'stdout', text: 5 }))).toBe(false);
    expect(applyIopub(s, msg('status', { execution_state: 'busy' }))).toBe(false);
    applyIopub(s, msg('error', { ename: 'E', evalue: 'v', traceback: 'not a list' }));
    expect(s.outputs).toEqual([{ output_type: 'error', ename: 'E', evalue: 'v', traceback: [] }]);
  });
});
