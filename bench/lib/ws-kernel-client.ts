// A lean Jupyter kernel client over the WebSocket API, for benchmarks: the same code
// drives Jupyter Server (the reference) and the Kinesis gateway, so timings compare
// like with like. Tests of client compatibility use @jupyterlab/services instead.
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { V1_SUBPROTOCOL, decodeLegacy, decodeV1, encodeLegacy, encodeV1, makeMessage, type JupyterMessage } from '@kinesis/protocol';

export type Framing = 'v1' | 'legacy';

export interface ExecResult {
  readonly reply: JupyterMessage;
  readonly streamBytes: number;
  readonly ms: number;
}

export class WsKernelClient {
  readonly session = randomUUID();
  #ws: WebSocket;
  #pending = new Map<string, { reply?: JupyterMessage; idle: boolean; stream: number; t0: number; resolve: (r: ExecResult) => void; reject: (e: Error) => void }>();
  onMessage: ((m: JupyterMessage) => void) | undefined;

  private constructor(ws: WebSocket, readonly framing: Framing) {
    this.#ws = ws;
    ws.on('message', (data: Buffer, isBinary: boolean) => this.#receive(framing === 'v1' ? decodeV1(data) : decodeLegacy(isBinary ? data : data.toString('utf8'))));
    ws.on('close', () => {
      for (const p of this.#pending.values()) p.reject(new Error('socket closed'));
      this.#pending.clear();
    });
  }

  static async connect(baseUrl: string, token: string, kernelId: string, framing: Framing): Promise<WsKernelClient> {
    const url = new URL(`/api/kernels/${kernelId}/channels`, baseUrl.replace(/^http/, 'ws'));
    const session = randomUUID();
    url.searchParams.set('session_id', session);
    const ws = new WebSocket(url, framing === 'v1' ? [V1_SUBPROTOCOL] : [], { headers: { Authorization: `token ${token}` }, perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
    (ws as unknown as { _socket?: { setNoDelay(v: boolean): void } })._socket?.setNoDelay(true);
    const c = new WsKernelClient(ws, framing);
    Object.defineProperty(c, 'session', { value: session });
    return c;
  }

  #receive(m: JupyterMessage): void {
    this.onMessage?.(m);
    const parent = m.parent_header.msg_id;
    const p = parent ? this.#pending.get(parent) : undefined;
    if (!p) return;
    if (m.header.msg_type === 'stream') p.stream += String(m.content['text'] ?? '').length;
    if (m.channel === 'shell' && m.header.msg_type.endsWith('_reply')) p.reply = m;
    if (m.header.msg_type === 'status' && m.content['execution_state'] === 'idle') p.idle = true;
    if (p.reply && p.idle && parent) {
      this.#pending.delete(parent);
      p.resolve({ reply: p.reply, streamBytes: p.stream, ms: performance.now() - p.t0 });
    }
  }

  /** Sends and resolves once both the reply and the matching `idle` have arrived. */
  request(msgType: string, content: Record<string, unknown>, channel: 'shell' | 'control' = 'shell'): Promise<ExecResult> {
    const msg = makeMessage({ channel, msgType, session: this.session, content });
    return new Promise((resolve, reject) => {
      this.#pending.set(msg.header.msg_id, { idle: false, stream: 0, t0: performance.now(), resolve, reject });
      this.#ws.send(this.framing === 'v1' ? encodeV1(msg) : encodeLegacy(msg));
    });
  }

  execute(code: string): Promise<ExecResult> {
    return this.request('execute_request', { code, silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true });
  }

  close(): void {
    this.#ws.close(1000);
  }
}

export async function rest<T = unknown>(baseUrl: string, token: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(new URL(path, baseUrl), {
    method,
    headers: { Authorization: `token ${token}`, 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (res.status === 204 ? undefined : await res.json()) as T;
}

export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}
