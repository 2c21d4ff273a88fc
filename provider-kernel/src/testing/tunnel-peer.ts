// TEST PEER — NOT the gateway. A minimal stand-in for the gateway's side of the tunnel
// (docs/protocols.md), built on protocol/src/tunnel.ts, so the provider's tunnel code can be
// tested against the real codec without the whole gateway: it sends the challenge, checks
// the hello's signature, answers welcome, issues requests, records frames and grants credit.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyMessage } from 'ethers';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeV1, encodeV1 } from '@kinesis/protocol/jupyter/ws-framing';
import type { JupyterMessage } from '@kinesis/protocol/jupyter/messages';
import {
  authText,
  decodeFrame,
  encodeControl,
  encodeCredit,
  encodeKernelFrame,
  TUNNEL_SUBPROTOCOL,
  type Advertise,
  type ControlMessage,
  type Hello,
  type KernelRequest,
  type KernelStatusEvent,
  type Reply,
} from '@kinesis/protocol/tunnel';

type RequestBody = KernelRequest extends infer R ? (R extends KernelRequest ? Omit<R, 'id'> : never) : never;

export interface PeerOptions {
  readonly initialCredit?: number;
  /** Grant back every kernel frame's length as soon as it arrives (a gateway whose clients keep up). Default true. */
  readonly autoCredit?: boolean;
  /** Skip the welcome (to test handshake timeouts). */
  readonly silent?: boolean;
  /** Close every connection at once (to watch the provider's backoff). */
  readonly rejectAll?: boolean;
}

export interface ReceivedMessage {
  readonly kernelId: string;
  readonly msg: JupyterMessage;
  readonly bytes: number;
  readonly at: number;
}

export class TunnelTestPeer {
  readonly hellos: Hello[] = [];
  readonly statuses: KernelStatusEvent[] = [];
  readonly adverts: Advertise[] = [];
  readonly messages: ReceivedMessage[] = [];
  /** Times at which a provider opened a connection (for backoff tests). */
  readonly connectTimes: number[] = [];
  autoCredit: boolean;
  private ws: WebSocket | undefined;
  private nextId = 1;
  private readonly replies = new Map<number, (r: Reply) => void>();
  private waiters: Array<() => void> = [];
  private readonly gatewayId = `test-peer-${randomBytes(4).toString('hex')}`;

  private constructor(
    private readonly server: http.Server,
    private readonly wss: WebSocketServer,
    private readonly o: PeerOptions,
  ) {
    this.autoCredit = o.autoCredit ?? true;
    wss.on('connection', (ws) => this.onConnection(ws));
  }

  static async start(o: PeerOptions = {}, port = 0): Promise<TunnelTestPeer> {
    const server = http.createServer((_req, res) => res.writeHead(404).end());
    const wss = new WebSocketServer({ server, path: '/api/tunnel', handleProtocols: (p) => (p.has(TUNNEL_SUBPROTOCOL) ? TUNNEL_SUBPROTOCOL : false) });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
    return new TunnelTestPeer(server, wss, o);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get connected(): boolean {
    return this.ws !== undefined;
  }

  private onConnection(ws: WebSocket): void {
    this.connectTimes.push(Date.now());
    if (this.o.rejectAll) {
      ws.close(1011, 'test peer rejects everyone');
      return;
    }
    const nonce = randomBytes(32).toString('hex');
    let authed = false;
    ws.on('message', (data: Buffer, isBinary) => {
      if (!isBinary) return ws.close(1003);
      const f = decodeFrame(data);
      if (f.kind === 'control') return this.onControl(ws, f.message, nonce, () => (authed = true), authed);
      if (!authed) return ws.close(1008);
      if (f.kind === 'kernel') {
        this.messages.push({ kernelId: f.kernelId, msg: decodeV1(f.payload), bytes: data.length, at: Date.now() });
        if (this.autoCredit) ws.send(encodeCredit(f.kernelId, data.length));
        this.wake();
      }
    });
    ws.on('close', () => {
      if (this.ws === ws) this.ws = undefined;
      this.wake();
    });
    ws.send(encodeControl({ type: 'challenge', version: 1, gatewayId: this.gatewayId, nonce }));
  }

  private onControl(ws: WebSocket, m: ControlMessage, nonce: string, auth: () => void, authed: boolean): void {
    if (m.type === 'hello') {
      if (authed) return;
      const signer = verifyMessage(authText(this.gatewayId, nonce), m.signature);
      if (signer.toLowerCase() !== m.address.toLowerCase()) return ws.close(4401, 'bad signature');
      this.hellos.push(m);
      if (this.o.silent) return;
      auth();
      this.ws?.close(4409, 'replaced');
      this.ws = ws;
      ws.send(encodeControl({ type: 'welcome', providerId: m.address, initialCredit: this.o.initialCredit ?? 8 * 1024 * 1024 }));
    } else if (m.type === 'reply') {
      this.replies.get(m.id)?.(m);
      this.replies.delete(m.id);
    } else if (m.type === 'kernel_status') {
      this.statuses.push(m);
    } else if (m.type === 'advertise') {
      this.adverts.push(m);
    }
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits until `pred` holds, re-checking on every event; rejects after `timeoutMs`. */
  async until<T>(pred: () => T | undefined | false, timeoutMs = 20_000, what = 'condition'): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = pred();
      if (v) return v;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  request(body: RequestBody, timeoutMs = 40_000): Promise<Reply> {
    const ws = this.ws;
    if (!ws) return Promise.reject(new Error('no provider connected'));
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no reply to ${body.type}`)), timeoutMs);
      this.replies.set(id, (r) => {
        clearTimeout(t);
        resolve(r);
      });
      ws.send(encodeControl({ ...body, id } as KernelRequest));
    });
  }

  sendKernel(kernelId: string, msg: JupyterMessage): void {
    this.ws?.send(encodeKernelFrame(kernelId, encodeV1(msg)));
  }

  sendRaw(data: Buffer): void {
    this.ws?.send(data);
  }

  grant(kernelId: string, bytes: number): void {
    this.ws?.send(encodeCredit(kernelId, bytes));
  }

  /** Messages from `kernelId` answering `parentMsgId`. */
  replies_(kernelId: string, parentMsgId: string): JupyterMessage[] {
    return this.messages.filter((m) => m.kernelId === kernelId && m.msg.parent_header.msg_id === parentMsgId).map((m) => m.msg);
  }

  /** Drops the provider's connection abruptly (like a gateway crash). */
  dropConnection(): void {
    this.ws?.terminate();
    this.ws = undefined;
  }

  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
