// The provider's end of the tunnel: dials ws(s)://<gateway>/api/tunnel with subprotocol
// kinesis.tunnel.v1, answers the challenge, and stays connected, reconnecting with jittered
// exponential backoff whenever the connection drops (docs/protocols.md).
//
// States: idle → connecting → handshaking → open → (backoff → connecting …) → closed.
// Only close() ends the loop; there is no retry storm: every retry waits its backoff, and
// the backoff resets only after a full handshake (a gateway that accepts and at once drops
// us keeps us backing off).
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import { ProtocolError } from '@kinesis/protocol/errors';
import {
  authText,
  decodeFrame,
  encodeControl,
  TUNNEL_PATH,
  TUNNEL_SUBPROTOCOL,
  TUNNEL_VERSION,
  DEFAULT_MAX_TUNNEL_FRAME,
  type ControlMessage,
  type Hello,
  type KernelRequest,
  type Welcome,
} from '@kinesis/protocol/tunnel';
import { Backoff, type BackoffOptions } from './backoff.ts';
import { errorText, ProviderConfigError } from './errors.ts';
import type { Logger } from './logger.ts';
import type { OutboxSocket } from './outbox.ts';
import { corkForTick, releaseFlush } from '@kinesis/protocol/node/cork';

export type LinkState = 'idle' | 'connecting' | 'handshaking' | 'open' | 'backoff' | 'closed';

export interface LinkHandlers {
  /** Builds the hello (without signature) for the current kernels and offer. */
  hello(): Omit<Hello, 'signature' | 'address' | 'type' | 'version'>;
  signAuth(text: string): Promise<string>;
  readonly address: string;
  /** `socket`: the TCP socket under `ws` (for corking), when ws exposed it. */
  onWelcome(ws: WebSocket, welcome: Welcome, socket: Duplex | undefined): void;
  onRequest(req: KernelRequest): void;
  onKernelFrame(kernelId: string, payload: Uint8Array): void;
  onCredit(kernelId: string, bytes: number): void;
  onDisconnect(): void;
}

export interface LinkOptions {
  readonly gatewayUrl: string;
  readonly logger: Logger;
  readonly backoff?: BackoffOptions;
  /** Drop the connection when the gateway has been silent (no ping, no frame) this long (default 15 s: it pings every 5 s). */
  readonly idleTimeoutMs?: number;
  /** Give up a handshake that takes longer (default 10 s). */
  readonly handshakeTimeoutMs?: number;
  readonly maxFrameBytes?: number;
}

/** http://host:port[/base] → ws://host:port[/base]/api/tunnel; https → wss. */
export function tunnelUrl(gatewayUrl: string): string {
  let u: URL;
  try {
    u = new URL(gatewayUrl);
  } catch (cause) {
    throw new ProviderConfigError(`gateway URL ${JSON.stringify(gatewayUrl)} is not a URL`, { cause });
  }
  if (u.protocol === 'http:' || u.protocol === 'ws:') u.protocol = 'ws:';
  else if (u.protocol === 'https:' || u.protocol === 'wss:') u.protocol = 'wss:';
  else throw new ProviderConfigError(`gateway URL must be http(s):// or ws(s)://, not ${u.protocol}`);
  if (u.username || u.password) throw new ProviderConfigError('gateway URL must not carry credentials');
  u.pathname = `${u.pathname.replace(/\/+$/, '')}${TUNNEL_PATH}`;
  u.search = '';
  u.hash = '';
  return u.toString();
}

export class TunnelLink {
  private stateValue: LinkState = 'idle';
  private ws: WebSocket | undefined;
  private readonly backoff: Backoff;
  private timer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private idleWs: WebSocket | undefined;
  private heardAt = 0;
  private readonly url: string;
  private readonly zeroMask: boolean;
  private connectedOnce = false;
  private openWaiters: Array<() => void> = [];

  constructor(
    private readonly o: LinkOptions,
    private readonly h: LinkHandlers,
  ) {
    this.url = tunnelUrl(o.gatewayUrl);
    const u = new URL(this.url);
    this.zeroMask = u.protocol === 'wss:' || ['127.0.0.1', '[::1]', 'localhost'].includes(u.hostname);
    this.backoff = new Backoff(o.backoff);
  }

  get state(): LinkState {
    return this.stateValue;
  }

  get socket(): WebSocket | undefined {
    return this.stateValue === 'open' ? this.ws : undefined;
  }

  start(): void {
    if (this.stateValue !== 'idle') return;
    this.connect();
  }

  /** Resolves the next time the link reaches `open`, or when it is closed (for tests and start-up). */
  whenOpen(): Promise<void> {
    if (this.stateValue === 'open') return Promise.resolve();
    return new Promise((resolve) => this.openWaiters.push(resolve));
  }

  /** Ends the link for good: no reconnect. Safe to call twice. */
  async close(): Promise<void> {
    if (this.stateValue === 'closed') return;
    const wasOpen = this.stateValue === 'open';
    this.stateValue = 'closed';
    if (wasOpen) this.h.onDisconnect();
    for (const w of this.openWaiters.splice(0)) w();
    clearTimeout(this.timer);
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const ws = this.ws;
    this.ws = undefined;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          ws.terminate();
          resolve();
        }, 2000);
        ws.once('close', () => {
          clearTimeout(t);
          resolve();
        });
        if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
        else ws.close(1001, 'provider shutting down');
      });
    }
  }

  private connect(): void {
    if (this.stateValue === 'closed') return;
    this.stateValue = 'connecting';
    const ws = new WebSocket(this.url, TUNNEL_SUBPROTOCOL, {
      perMessageDeflate: false,
      maxPayload: this.o.maxFrameBytes ?? DEFAULT_MAX_TUNNEL_FRAME,
      handshakeTimeout: this.o.handshakeTimeoutMs ?? 10_000,
      // RFC 6455 §10.3: clients mask frames so that script-controlled bytes cannot be read
      // as HTTP by a transparent proxy on the path. Over TLS, or to a gateway on this very
      // machine, no proxy can see the bytes; there a zero mask (ws then skips the copy and
      // XOR of every payload: 10 MB of output per cell is common) is safe. Elsewhere keep
      // ws's random masks.
      ...(this.zeroMask ? { generateMask: (mask: Buffer) => void mask.fill(0) } : {}),
    });
    this.ws = ws;
    let handshakeTimer: NodeJS.Timeout | undefined;
    let tcp: Duplex | undefined;
    ws.once('upgrade', (res) => (tcp = res.socket));
    ws.on('open', () => {
      if (ws.protocol !== TUNNEL_SUBPROTOCOL) {
        this.o.logger.error('gateway did not accept the tunnel subprotocol', { got: ws.protocol });
        ws.close(1002, 'subprotocol required');
        return;
      }
      this.stateValue = 'handshaking';
      handshakeTimer = setTimeout(() => {
        this.o.logger.warn('tunnel handshake timed out');
        ws.terminate();
      }, this.o.handshakeTimeoutMs ?? 10_000);
      this.touch(ws);
    });
    ws.on('ping', () => this.touch(ws));
    ws.on('pong', () => this.touch(ws));
    ws.on('message', (data, isBinary) => {
      this.touch(ws);
      if (!isBinary) {
        ws.close(1003, 'binary frames only');
        return;
      }
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      let frame;
      try {
        frame = decodeFrame(buf, { maxBytes: this.o.maxFrameBytes ?? DEFAULT_MAX_TUNNEL_FRAME });
      } catch (e) {
        const code = e instanceof ProtocolError ? e.closeCode : 1007;
        this.o.logger.warn('bad frame from gateway; closing the tunnel', { error: errorText(e), code });
        ws.close(code, 'bad frame');
        return;
      }
      if (frame.kind === 'kernel') this.h.onKernelFrame(frame.kernelId, frame.payload);
      else if (frame.kind === 'credit') this.h.onCredit(frame.kernelId, frame.bytes);
      else if (frame.kind === 'kernel-part') ws.close(1007, 'kernel parts flow from provider to gateway only');
      else void this.onControl(ws, frame.message, () => clearTimeout(handshakeTimer), tcp);
    });
    ws.on('error', (e) => {
      // 'close' follows; log once at a level that does not alarm during an expected outage.
      this.o.logger[this.connectedOnce ? 'debug' : 'info']('tunnel error', { error: e.message });
    });
    ws.on('close', (code, reason) => {
      clearTimeout(handshakeTimer);
      if (this.idleWs === ws) {
        clearTimeout(this.idleTimer);
        this.idleTimer = undefined;
      }
      if (this.ws === ws) this.ws = undefined;
      const wasOpen = this.stateValue === 'open';
      if (wasOpen) this.h.onDisconnect();
      if (this.stateValue === 'closed') return;
      const why = reason.toString('utf8').slice(0, 200);
      if (code === 4409) {
        // Another process with our key took the connection. Coming straight back would make
        // the two of us take turns forever: wait the longest delay.
        this.o.logger.error('another provider with this key connected to the gateway; is it running twice?', { code });
        this.backoff.exhaust();
      } else if (code === 4401 || code === 4400) {
        this.o.logger.error('gateway refused the handshake', { code, reason: why });
      } else if (wasOpen) {
        this.o.logger.warn('tunnel closed; reconnecting', { code, reason: why });
      }
      this.scheduleReconnect();
    });
  }

  private async onControl(ws: WebSocket, msg: ControlMessage, handshakeDone: () => void, tcp: Duplex | undefined): Promise<void> {
    if (msg.type === 'challenge') {
      if (this.stateValue !== 'handshaking') return;
      if (msg.version !== TUNNEL_VERSION) {
        this.o.logger.error('gateway speaks another tunnel version', { version: msg.version });
        ws.close(1002, 'unsupported version');
        return;
      }
      try {
        const signature = await this.h.signAuth(authText(msg.gatewayId, msg.nonce));
        const hello: Hello = { type: 'hello', version: TUNNEL_VERSION, address: this.h.address, signature, ...this.h.hello() };
        if (ws.readyState === WebSocket.OPEN) ws.send(encodeControl(hello));
      } catch (e) {
        this.o.logger.error('could not build hello', { error: errorText(e) });
        ws.close(1011, 'provider error');
      }
      return;
    }
    if (msg.type === 'welcome') {
      if (this.stateValue !== 'handshaking') return;
      handshakeDone();
      this.stateValue = 'open';
      this.connectedOnce = true;
      this.backoff.reset();
      this.o.logger.info('connected to gateway', { url: this.url, providerId: msg.providerId });
      this.h.onWelcome(ws, msg, tcp);
      for (const w of this.openWaiters.splice(0)) w();
      return;
    }
    if (this.stateValue !== 'open') {
      ws.close(1008, 'request before welcome');
      return;
    }
    switch (msg.type) {
      case 'start_kernel':
      case 'interrupt_kernel':
      case 'restart_kernel':
      case 'shutdown_kernel':
        this.h.onRequest(msg);
        return;
      default:
        this.o.logger.warn('unexpected control message from gateway', { type: msg.type });
    }
  }

  /**
   * Notes that the gateway was heard from. Every frame calls this, so it only stamps the time:
   * re-arming a timer per frame (clearTimeout + setTimeout) cost ~15 µs of each request's way
   * to the kernel. The one timer re-arms itself for the time left when it fires.
   */
  private touch(ws: WebSocket): void {
    this.heardAt = performance.now();
    if (this.idleTimer === undefined || this.idleWs !== ws) this.armIdle(ws, this.idleLimitMs);
  }

  private get idleLimitMs(): number {
    return this.o.idleTimeoutMs ?? 15_000;
  }

  private armIdle(ws: WebSocket, ms: number): void {
    clearTimeout(this.idleTimer);
    this.idleWs = ws;
    this.idleTimer = setTimeout(() => {
      const left = this.heardAt + this.idleLimitMs - performance.now();
      if (left > 0) return this.armIdle(ws, left);
      this.idleTimer = undefined;
      this.o.logger.warn('gateway silent; dropping the tunnel');
      ws.terminate();
    }, ms);
  }

  private scheduleReconnect(): void {
    if (this.stateValue === 'closed') return;
    const delay = this.backoff.next();
    this.stateValue = 'backoff';
    this.o.logger.debug('reconnecting', { inMs: delay, attempt: this.backoff.attempts });
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

/** Held tunnel writes leave at once past this many bytes, whatever the batch's age (batch.ts). */
const BATCH_MAX_BYTES = 256 * 1024;

/** The tunnel's WebSocket as the outbox's socket: one tunnel frame per send, fragments for parts. */
export function outboxSocket(ws: WebSocket, tcp: Duplex | undefined): OutboxSocket {
  return {
    get open() {
      return ws.readyState === ws.OPEN;
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    send(data, cb) {
      if (ws.readyState !== ws.OPEN) return cb(new Error('tunnel closed'));
      // Messages the kernels emit in one I/O pass (a reply and the idle after it, a burst of
      // output) leave in one writev; see cork.ts.
      corkForTick(tcp);
      if (Buffer.isBuffer(data)) ws.send(data, { binary: true }, cb);
      else data.forEach((d, i) => (i < data.length - 1 ? ws.send(d, { binary: true, fin: false }) : ws.send(d, { binary: true, fin: true }, cb)));
      // A cell flooding output does not pile up behind a batch (batch.ts).
      if (tcp && tcp.writableLength > BATCH_MAX_BYTES) releaseFlush(tcp);
    },
  };
}
