// Test helpers: a gateway on an ephemeral port in a temp dir, a REST helper, and a small
// kernel-channels WebSocket client speaking either framing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { decodeLegacy, decodeV1, encodeLegacy, encodeV1, makeMessage, V1_SUBPROTOCOL, type Channel, type JupyterMessage } from '@kinesis/protocol';
import { startGateway, type RunningGateway, type StartGatewayOptions } from '../index.ts';
import { silentLogger } from '../logger.ts';

export const TOKEN = 'test-token-0123456789';

export interface TestGateway extends RunningGateway {
  readonly dataDir: string;
  api(path: string, init?: RequestInit & { json?: unknown }): Promise<{ status: number; body: any; headers: Headers }>;
  stop(): Promise<void>;
}

export async function startTestGateway(opts: Partial<StartGatewayOptions> = {}): Promise<TestGateway> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'kinesis-gw-'));
  const gw = await startGateway({ port: 0, token: TOKEN, logger: silentLogger, ...opts, dataDir });
  return {
    ...gw,
    close: () => gw.close(),
    dataDir,
    async api(path, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has('authorization')) headers.set('authorization', `token ${TOKEN}`);
      let body = init.body;
      if (init.json !== undefined) {
        body = JSON.stringify(init.json);
        headers.set('content-type', 'application/json');
      }
      const res = await fetch(gw.url + path, { ...init, headers, body: body ?? null });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        // not JSON
      }
      return { status: res.status, body: parsed, headers: res.headers };
    },
    async stop() {
      await gw.close();
      if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ClientOptions {
  readonly sessionId?: string;
  readonly v1?: boolean;
  readonly token?: string;
  /** Opts in to resuming (`kinesis_last_msg_id`, docs/protocols.md): the last message read, '' for none. */
  readonly lastMsgId?: string;
}

export class TestClient {
  readonly messages: JupyterMessage[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly sessionId: string;
  #waiters: (() => void)[] = [];

  private constructor(
    readonly ws: WebSocket,
    readonly v1: boolean,
    sessionId: string,
  ) {
    this.sessionId = sessionId;
    this.closed = new Promise((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.messages.push(v1 ? decodeV1(data) : decodeLegacy(isBinary ? data : data.toString('utf8')));
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  static connect(baseUrl: string, kernelId: string, o: ClientOptions = {}): Promise<TestClient> {
    const session = o.sessionId ?? crypto.randomUUID();
    const q = new URLSearchParams();
    if (session) q.set('session_id', session);
    q.set('token', o.token ?? TOKEN);
    if (o.lastMsgId !== undefined) q.set('kinesis_last_msg_id', o.lastMsgId);
    const url = `${baseUrl.replace(/^http/, 'ws')}/api/kernels/${kernelId}/channels?${q}`;
    const v1 = o.v1 ?? true;
    const ws = new WebSocket(url, v1 ? [V1_SUBPROTOCOL] : [], { perMessageDeflate: false });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new TestClient(ws, v1, session)));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  send(msg: JupyterMessage): void {
    this.ws.send(this.v1 ? encodeV1(msg) : encodeLegacy(msg));
  }

  request(channel: Channel, msgType: string, content: Record<string, unknown> = {}, buffers: Uint8Array[] = []): JupyterMessage {
    const msg = makeMessage({ channel, msgType, session: this.sessionId, content, buffers });
    this.send(msg);
    return msg;
  }

  async waitFor(pred: (m: JupyterMessage) => boolean, timeoutMs = 5000): Promise<JupyterMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find(pred);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; got ${this.messages.map((m) => `${m.channel}:${m.header.msg_type}`).join(', ')}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** The reply to `req` on its channel, after its iopub idle. */
  async reply(req: JupyterMessage, timeoutMs = 5000): Promise<JupyterMessage> {
    const isChild = (m: JupyterMessage): boolean => m.parent_header.msg_id === req.header.msg_id;
    const r = await this.waitFor((m) => isChild(m) && m.channel !== 'iopub', timeoutMs);
    await this.waitFor((m) => isChild(m) && m.header.msg_type === 'status' && m.content['execution_state'] === 'idle', timeoutMs);
    return r;
  }

  close(): Promise<{ code: number; reason: string }> {
    this.ws.close(1000);
    return this.closed;
  }
}

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
