// The notebook's kernel: one Jupyter session (POST /api/sessions) for the notebook
// path, its kernel connection, and the execution of cells. Kernel state (busy/idle,
// connection) is kept apart from per-cell execution state; outputs stream into the
// Yjs document, batched per animation frame so a kernel printing in a tight loop
// costs one document transaction and one render per frame, never one per message.
import { createSignal } from 'solid-js';
import type { Accessor } from 'solid-js';
import { ServerConnection, type Kernel, type KernelMessage, type Session } from '@jupyterlab/services';
import type { Output } from '@kinesis/protocol/notebook/index';
import type { Services } from '../api/services.ts';
import type { NotebookModel } from '../model/notebook.ts';
import { applyIopub } from '../model/outputs.ts';
import type { OutputState } from '../model/outputs.ts';
import { parseReceipt, parseVerdict, receiptMetadata, type Verdict } from './receipts.ts';
import { ReconnectWatcher } from './reconnect.ts';
import type { Receipt } from './receipts.ts';

export type CellRunState = 'idle' | 'queued' | 'running';
export interface CellExec {
  readonly state: CellRunState;
  readonly startedAt?: number;
  readonly endedAt?: number;
}
export interface StdinPrompt {
  readonly prompt: string;
  readonly password: boolean;
  reply(value: string): void;
}

export class KernelController {
  readonly status: Accessor<string>;
  readonly connection: Accessor<string>;
  readonly kernelName: Accessor<string | undefined>;
  readonly error: Accessor<string | undefined>;
  readonly lastReceipt: Accessor<Receipt | undefined>;
  readonly #setStatus: (s: string) => void;
  readonly #setConnection: (s: string) => void;
  readonly #setKernelName: (s: string | undefined) => void;
  readonly #setError: (s: string | undefined) => void;
  readonly #setLastReceipt: (r: Receipt | undefined) => void;
  readonly #exec = new Map<string, [Accessor<CellExec>, (v: CellExec) => void]>();
  readonly #stdin = new Map<string, [Accessor<StdinPrompt | undefined>, (v: StdinPrompt | undefined) => void]>();
  readonly #pending = new Map<string, { state: OutputState; dirty: boolean }>();
  // execute_request msg_id → cell, and verdicts that arrived before their reply was handled
  // (the gateway's `kinesis_usage` notice can overtake `future.done`). Both bounded.
  readonly #execCells = new Map<string, string>();
  readonly #earlyVerdicts = new Map<string, Verdict>();
  #session: Session.ISessionConnection | undefined;
  #reconnect: ReconnectWatcher | undefined;
  #frame = 0;
  #disposed = false;

  constructor(
    readonly services: Services,
    readonly model: NotebookModel,
    readonly path: () => string,
  ) {
    const [status, setStatus] = createSignal('no kernel');
    const [connection, setConnection] = createSignal('disconnected');
    const [kernelName, setKernelName] = createSignal<string | undefined>();
    const [error, setError] = createSignal<string | undefined>();
    const [lastReceipt, setLastReceipt] = createSignal<Receipt | undefined>();
    this.status = status;
    this.connection = connection;
    this.kernelName = kernelName;
    this.error = error;
    this.lastReceipt = lastReceipt;
    this.#setStatus = setStatus;
    this.#setConnection = setConnection;
    this.#setKernelName = setKernelName;
    this.#setError = setError;
    this.#setLastReceipt = setLastReceipt;
  }

  get kernel(): Kernel.IKernelConnection | null {
    return this.#session?.kernel ?? null;
  }

  exec(id: string): Accessor<CellExec> {
    return this.#execPair(id)[0];
  }
  stdin(id: string): Accessor<StdinPrompt | undefined> {
    return this.#stdinPair(id)[0];
  }
  #stdinPair(id: string): [Accessor<StdinPrompt | undefined>, (v: StdinPrompt | undefined) => void] {
    let p = this.#stdin.get(id);
    if (!p) {
      const [a, s] = createSignal<StdinPrompt | undefined>();
      p = [a, (v) => s(() => v)];
      this.#stdin.set(id, p);
    }
    return p;
  }
  #execPair(id: string): [Accessor<CellExec>, (v: CellExec) => void] {
    let p = this.#exec.get(id);
    if (!p) {
      const [a, s] = createSignal<CellExec>({ state: 'idle' });
      p = [a, s];
      this.#exec.set(id, p);
    }
    return p;
  }

  /** Starts (or joins) the session for this notebook with kernelspec `name`. */
  async start(name: string): Promise<void> {
    this.#setError(undefined);
    this.#setStatus('starting');
    try {
      if (this.#session && !this.#session.isDisposed) {
        await this.#session.changeKernel({ name });
      } else {
        const path = this.path();
        this.#session = await this.services.sessions.startNew({ path, name: path.split('/').pop() ?? path, type: 'notebook', kernel: { name } });
        this.#session.kernelChanged.connect(this.#onKernelChanged);
      }
      this.#onKernelChanged();
      const spec = await this.kernel?.spec;
      if (spec) {
        this.model.setMetadata({ ...this.model.metadata, kernelspec: { name: spec.name, display_name: spec.display_name, language: spec.language } });
      }
    } catch (err) {
      this.#setStatus('no kernel');
      this.#setError(err instanceof Error ? err.message : String(err));
      throw err;
    }
  }

  readonly #onKernelChanged = (): void => {
    const k = this.kernel;
    this.#reconnect?.dispose();
    this.#reconnect = undefined;
    this.#setKernelName(k?.name);
    if (!k) {
      this.#setStatus('no kernel');
      this.#setConnection('disconnected');
      return;
    }
    this.#setStatus(k.status);
    this.#setConnection(k.connectionStatus);
    k.statusChanged.connect((_k, s) => {
      if (this.kernel === k) this.#setStatus(s);
      if (s === 'restarting' || s === 'dead' || s === 'autorestarting') this.#clearRunning();
    });
    // Back at once after the gateway was away (reconnect.ts), not after the library's 10-30 s.
    const settings = this.services.settings;
    const watcher = (this.#reconnect = new ReconnectWatcher(k, {
      kernelReady: async () => {
        const r = await ServerConnection.makeRequest(new URL(`api/kernels/${encodeURIComponent(k.id)}`, settings.baseUrl).toString(), {}, settings);
        if (!r.ok) return false;
        const state = ((await r.json()) as { execution_state?: unknown }).execution_state;
        return state === 'idle' || state === 'busy';
      },
    }));
    k.connectionStatusChanged.connect((_k, s) => {
      if (this.kernel === k) this.#setConnection(s);
      watcher.check();
    });
    k.iopubMessage.connect((_k, msg) => {
      if (this.kernel === k && (msg.header.msg_type as string) === 'kinesis_usage') this.#onUsage(msg.parent_header as { msg_id?: string }, msg.content);
    });
  };

  /** The gateway's verdict on a cell's receipt: kept beside the receipt in the cell's metadata. */
  #onUsage(parent: { msg_id?: string }, content: unknown): void {
    const msgId = parent.msg_id;
    const verdict = parseVerdict((content as { verdict?: unknown } | undefined)?.verdict);
    if (!msgId || !verdict) return;
    const cellId = this.#execCells.get(msgId);
    if (!cellId) return;
    const current = this.model.cell(cellId)?.get('metadata') as { kinesis?: { receipt?: { message?: { msgId?: string } } } } | undefined;
    if (current?.kinesis?.receipt?.message?.msgId === msgId) {
      this.model.setCellMetadata(cellId, 'kinesis', { ...current.kinesis, verdict } as never);
    } else {
      if (this.#earlyVerdicts.size > 256) this.#earlyVerdicts.clear();
      this.#earlyVerdicts.set(msgId, verdict);
    }
  }

  /** Renames the session with the notebook (PATCH /api/sessions). */
  async setPath(path: string): Promise<void> {
    await this.#session?.setPath(path);
  }

  async interrupt(): Promise<void> {
    await this.kernel?.interrupt();
  }
  async restart(): Promise<void> {
    const k = this.kernel;
    if (!k) return;
    this.#clearRunning();
    await k.restart();
  }
  async shutdown(): Promise<void> {
    const s = this.#session;
    this.#session = undefined;
    this.#clearRunning();
    if (s) await s.shutdown();
    this.#onKernelChanged();
  }

  #clearRunning(): void {
    for (const [, [get, set]] of this.#exec) if (get().state !== 'idle') set({ ...get(), state: 'idle' });
    for (const [, [, set]] of this.#stdin) set(undefined);
  }

  /**
   * Runs one code cell: clears its outputs, sends execute_request (the kernel queues
   * requests, so many cells may be in flight), streams outputs into the document and
   * records the execution count, timings and receipt. Resolves when the reply arrives.
   */
  async execute(cellId: string): Promise<'ok' | 'error' | 'aborted' | 'no-kernel'> {
    const k = this.kernel;
    const cell = this.model.cell(cellId);
    if (!cell || cell.get('cell_type') !== 'code') return 'ok';
    if (!k) {
      this.#setError('no kernel is running: choose one with the kernel button to run cells');
      return 'no-kernel';
    }
    const code = String(cell.get('source'));
    const [, setExec] = this.#execPair(cellId);
    this.#pending.delete(cellId);
    this.model.writeOutputs(cellId, []);
    this.model.setExecutionCount(cellId, null);
    setExec({ state: 'queued' });
    const timing: Record<string, string> = {};
    let startedAt = 0;
    const future = k.requestExecute({ code, silent: false, store_history: true, allow_stdin: true, stop_on_error: true }, false);
    const msgId = future.msg.header.msg_id;
    if (this.#execCells.size > 1024) this.#execCells.delete(this.#execCells.keys().next().value as string);
    this.#execCells.set(msgId, cellId);
    future.onIOPub = (msg) => {
      const type = msg.header.msg_type;
      if (type === 'status') {
        const st = (msg as KernelMessage.IStatusMsg).content.execution_state;
        if (st === 'busy') {
          startedAt = performance.now();
          timing['iopub.status.busy'] = msg.header.date;
          setExec({ state: 'running', startedAt });
        } else if (st === 'idle') timing['iopub.status.idle'] = msg.header.date;
        return;
      }
      if (type === 'execute_input') {
        timing['iopub.execute_input'] = msg.header.date;
        return;
      }
      if (type === 'update_display_data') {
        this.#updateDisplayEverywhere(msg as KernelMessage.IUpdateDisplayDataMsg);
        return;
      }
      this.#queueOutput(cellId, msg);
    };
    future.onStdin = (msg) => {
      if (msg.header.msg_type !== 'input_request') return;
      const content = (msg as KernelMessage.IInputRequestMsg).content;
      const [, set] = this.#stdinPair(cellId);
      set({
        prompt: String(content.prompt ?? ''),
        password: content.password === true,
        reply: (value: string) => {
          set(undefined);
          k.sendInputReply({ status: 'ok', value }, msg.header as KernelMessage.IHeader<'input_request'>);
          // Echo as Jupyter does, so the transcript shows what was typed.
          this.#queueOutput(cellId, { header: { msg_type: 'stream' }, content: { name: 'stdout', text: `${String(content.prompt ?? '')}${content.password ? '········' : value}\n` } });
        },
      });
    };
    try {
      const reply = await future.done;
      this.#flush();
      const endedAt = performance.now();
      timing['shell.execute_reply'] = reply.header.date;
      const content = reply.content as KernelMessage.IExecuteReply;
      if (content.status === 'ok' || content.status === 'error') {
        if (typeof content.execution_count === 'number') this.model.setExecutionCount(cellId, content.execution_count);
      }
      this.model.setCellMetadata(cellId, 'execution', timing);
      const receipt = parseReceipt(reply.metadata);
      const stored = receiptMetadata(reply.metadata);
      const early = this.#earlyVerdicts.get(msgId);
      this.#earlyVerdicts.delete(msgId);
      this.model.setCellMetadata(cellId, 'kinesis', stored ? ({ ...stored, ...(early ? { verdict: early } : {}) } as { receipt: never }) : undefined);
      if (receipt) this.#setLastReceipt(receipt);
      setExec({ state: 'idle', startedAt: startedAt || endedAt, endedAt });
      const st = (content as { status: string }).status;
      return st === 'ok' ? 'ok' : st === 'error' ? 'error' : 'aborted';
    } catch (err) {
      this.#flush();
      setExec({ state: 'idle' });
      // A restart or dead kernel disposes the future; that is not an error of this cell.
      if (this.#disposed) return 'aborted';
      if (err instanceof Error && /disposed|Canceled|restart/i.test(err.message)) return 'aborted';
      throw err;
    } finally {
      const [, setStdin] = this.#stdinPair(cellId);
      setStdin(undefined);
    }
  }

  #queueOutput(cellId: string, msg: { header: { msg_type: string }; content: unknown }): void {
    let p = this.#pending.get(cellId);
    if (!p) {
      // Live outputs keep their in-memory `transient` display ids (the disk form drops them).
      p = { state: { outputs: this.#liveOutputs(cellId) ?? [], clearPending: false }, dirty: false };
      this.#pending.set(cellId, p);
    }
    if (applyIopub(p.state, msg as { header: { msg_type: string }; content: Record<string, unknown> })) p.dirty = true;
    if (!this.#frame) this.#frame = requestAnimationFrame(() => this.#flush());
  }

  #liveOutputs(cellId: string): Output[] | undefined {
    const c = this.model.cell(cellId);
    const arr = c?.get('outputs') as { toArray(): Output[] } | undefined;
    return arr ? [...arr.toArray()] : undefined;
  }

  #flush(): void {
    if (this.#frame) cancelAnimationFrame(this.#frame);
    this.#frame = 0;
    if (this.#disposed) return;
    this.model.doc.transact(() => {
      for (const [id, p] of this.#pending) {
        if (p.dirty) this.model.writeOutputs(id, p.state.outputs);
        p.dirty = false;
        p.state.outputs = [...p.state.outputs];
      }
    });
  }

  #updateDisplayEverywhere(msg: KernelMessage.IUpdateDisplayDataMsg): void {
    this.#flush();
    const displayId = msg.content.transient?.display_id;
    if (typeof displayId !== 'string') return;
    for (const id of this.model.order()) {
      const outs = this.#liveOutputs(id);
      if (!outs) continue;
      const state = { outputs: outs, clearPending: false };
      if (applyIopub(state, msg as unknown as { header: { msg_type: string }; content: Record<string, unknown> })) {
        this.#pending.delete(id);
        this.model.writeOutputs(id, state.outputs);
      }
    }
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#frame) cancelAnimationFrame(this.#frame);
    // Leave the kernel running (as Jupyter does when a tab closes); just disconnect.
    this.#reconnect?.dispose();
    this.#reconnect = undefined;
    this.#session?.dispose();
    this.#session = undefined;
  }
}
