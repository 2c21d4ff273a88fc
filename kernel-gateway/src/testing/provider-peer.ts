// TEST PEER — NOT the provider. A small stand-in for the provider's side of the tunnel
// (docs/protocols.md), built on protocol/src/tunnel.ts, so the gateway can be tested without
// launching kernels: it signs the challenge with a real key, answers requests, and "runs"
// echo kernels that answer kernel_info/execute requests the way ipykernel orders its
// messages (status busy → stream/result → reply → status idle). The real provider with a
// real ipykernel is tested in ../provider.integration.test.ts.
import { Wallet } from 'ethers';
import { WebSocket } from 'ws';
import {
  authText,
  bytesToUuid,
  decodeFrame,
  decodeV1,
  encodeControl,
  encodeKernelFrame,
  encodeKernelPartHeader,
  encodeV1,
  FrameKind,
  KERNEL_PART_HEADER_BYTES,
  makeMessage,
  TUNNEL_SUBPROTOCOL,
  TUNNEL_VERSION,
  uuidToBytes,
  type ControlMessage,
  type HardwareInfo,
  type JupyterMessage,
  type KernelRequest,
  type KernelSpecAd,
  type RunningKernelAd,
} from '@kinesis/protocol';

export interface PeerOptions {
  readonly wallet?: Wallet;
  readonly name?: string;
  readonly hardware?: HardwareInfo;
  readonly pricePerKwh?: bigint;
  readonly kernelspecs?: readonly KernelSpecAd[];
  readonly kernels?: readonly RunningKernelAd[];
  /** Delay before answering start_kernel / restart_kernel (ms). */
  readonly startDelayMs?: number;
  /** Answer start_kernel with ok:false and this error. */
  readonly failStart?: string;
  /** Do not answer WebSocket pings (to test liveness). */
  readonly ignorePings?: boolean;
  /** Sign for another address (to test 4401). */
  readonly badSignature?: boolean;
  /** Write the address in `hello` this way (the signature is still its key's). */
  readonly spellAddress?: (address: string) => string;
}

export const CPU_HARDWARE: HardwareInfo = {
  devices: [{ kind: 'cpu', vendor: 'AMD', name: 'AMD EPYC 7B13', index: 0, memoryMiB: 32768 }],
  cpu: { model: 'AMD EPYC 7B13', cores: 8 },
  memoryMiB: 32768,
  os: 'Linux 6.1',
  arch: 'x64',
};

export function gpuHardware(name: string, memoryMiB: number, count = 1): HardwareInfo {
  return {
    devices: Array.from({ length: count }, (_, index) => ({ kind: 'gpu' as const, vendor: 'NVIDIA', name, index, memoryMiB, powerLimitW: 450 })),
    cpu: { model: 'Intel Xeon', cores: 32 },
    memoryMiB: 131072,
    os: 'Linux 6.1',
    arch: 'x64',
  };
}

export const PYTHON_SPEC: KernelSpecAd = {
  name: 'python3',
  spec: { argv: ['python3', '-m', 'ipykernel_launcher', '-f', '{connection_file}'], display_name: 'Python 3 (ipykernel)', language: 'python', interrupt_mode: 'signal', metadata: { debugger: true } },
  resources: { 'logo-64x64.png': Buffer.from('\x89PNG fake logo bytes').toString('base64') },
};

interface EchoKernel {
  readonly id: string;
  readonly session: string;
  readonly spec: string;
  executionCount: number;
  /** Held back while true (to test queueing during start). */
  paused: boolean;
}

export class ProviderPeer {
  readonly wallet: Wallet;
  readonly requests: KernelRequest[] = [];
  /** Client messages that reached this peer, decoded. */
  readonly received: { kernelId: string; msg: JupyterMessage }[] = [];
  /** Credit granted per kernel. */
  readonly credit = new Map<string, number>();
  /** Bytes of KERNEL and KERNEL PART frames sent per kernel: what the gateway owes credit for. */
  readonly sent = new Map<string, number>();
  readonly kernels = new Map<string, EchoKernel>();
  closeCode: number | undefined;
  closeReason = '';
  welcomed = false;
  /** The features the gateway named in its welcome; undefined when it named none. */
  features: readonly string[] | undefined;
  /** The budget for messages in parts the gateway named in its welcome. */
  maxPartialBytes: number | undefined;
  /**
   * While false, client messages and kernel requests are recorded but not answered, as by a
   * kernel busy producing output; `answer()` turns answering back on and answers what waited.
   */
  answering = true;
  #unanswered: (() => Promise<void> | void)[] = [];
  ws!: WebSocket;
  #opts: PeerOptions;

  private constructor(opts: PeerOptions) {
    this.#opts = opts;
    this.wallet = opts.wallet ?? (Wallet.createRandom() as unknown as Wallet);
    for (const k of opts.kernels ?? []) this.kernels.set(k.kernelId, { id: k.kernelId, session: crypto.randomUUID(), spec: k.specName, executionCount: 0, paused: false });
  }

  get address(): string {
    return this.wallet.address;
  }

  /** Dials the gateway and resolves after the welcome, or after the gateway closed the tunnel. */
  static async connect(gatewayUrl: string, opts: PeerOptions = {}): Promise<ProviderPeer> {
    const peer = new ProviderPeer(opts);
    await peer.#dial(gatewayUrl);
    return peer;
  }

  #dial(gatewayUrl: string): Promise<void> {
    const url = gatewayUrl.replace(/^http/, 'ws') + '/api/tunnel';
    const ws = new WebSocket(url, [TUNNEL_SUBPROTOCOL], { perMessageDeflate: false, autoPong: !this.#opts.ignorePings });
    this.ws = ws;
    return new Promise((resolve, reject) => {
      ws.on('error', reject);
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve();
      });
      ws.on('message', (data: Buffer) => {
        const f = decodeFrame(data);
        if (f.kind === 'credit') {
          this.credit.set(f.kernelId, (this.credit.get(f.kernelId) ?? 0) + f.bytes);
          return;
        }
        if (f.kind === 'kernel') {
          this.#onKernelMessage(f.kernelId, decodeV1(f.payload));
          return;
        }
        if (f.kind === 'kernel-part') throw new Error('the gateway sent a KERNEL PART frame');
        void this.#onControl(f.message, resolve);
      });
    });
  }

  async #onControl(m: ControlMessage, welcomed: () => void): Promise<void> {
    switch (m.type) {
      case 'challenge': {
        const signer = this.#opts.badSignature ? Wallet.createRandom() : this.wallet;
        const signature = await signer.signMessage(authText(m.gatewayId, m.nonce));
        this.#control({
          type: 'hello',
          version: TUNNEL_VERSION,
          address: this.#opts.spellAddress ? this.#opts.spellAddress(this.wallet.address) : this.wallet.address,
          signature,
          name: this.#opts.name ?? 'test-peer',
          hardware: this.#opts.hardware ?? CPU_HARDWARE,
          pricePerKwh: (this.#opts.pricePerKwh ?? 1000n).toString(),
          kernelspecs: this.#opts.kernelspecs ?? [PYTHON_SPEC],
          kernels: [...this.kernels.values()].map((k) => ({ kernelId: k.id, specName: k.spec, status: 'idle' as const })),
        });
        return;
      }
      case 'welcome':
        this.welcomed = true;
        this.features = m.features;
        this.maxPartialBytes = m.maxPartialBytes;
        welcomed();
        return;
      case 'start_kernel':
      case 'restart_kernel':
      case 'interrupt_kernel':
      case 'shutdown_kernel':
        this.requests.push(m);
        if (!this.answering) {
          this.#unanswered.push(() => this.#onRequest(m));
          return;
        }
        await this.#onRequest(m);
        return;
      default:
        return;
    }
  }

  async #onRequest(m: KernelRequest): Promise<void> {
    if (m.type === 'start_kernel' || m.type === 'restart_kernel') {
      if (this.#opts.startDelayMs) await sleep(this.#opts.startDelayMs);
      if (m.type === 'start_kernel' && this.#opts.failStart) return this.#control({ type: 'reply', id: m.id, ok: false, error: this.#opts.failStart });
      const prev = this.kernels.get(m.kernelId);
      const spec = m.type === 'start_kernel' ? m.specName : (prev?.spec ?? 'python3');
      const k: EchoKernel = { id: m.kernelId, session: crypto.randomUUID(), spec, executionCount: 0, paused: false };
      this.kernels.set(k.id, k);
      this.#iopubStatus(k, 'starting', {});
      this.#iopubStatus(k, 'idle', {});
      return this.#control({ type: 'reply', id: m.id, ok: true });
    }
    if (m.type === 'shutdown_kernel') this.kernels.delete(m.kernelId);
    this.#control({ type: 'reply', id: m.id, ok: this.kernels.has(m.kernelId) || m.type === 'shutdown_kernel', ...(this.kernels.has(m.kernelId) || m.type === 'shutdown_kernel' ? {} : { error: 'no such kernel' }) } as ControlMessage);
  }

  #onKernelMessage(kernelId: string, msg: JupyterMessage): void {
    this.received.push({ kernelId, msg });
    if (!this.answering) {
      this.#unanswered.push(() => this.#answer(kernelId, msg));
      return;
    }
    this.#answer(kernelId, msg);
  }

  /** Answers again, starting with what came while it did not (in arrival order). */
  async answer(): Promise<void> {
    this.answering = true;
    for (const f of this.#unanswered.splice(0)) await f();
  }

  #answer(kernelId: string, msg: JupyterMessage): void {
    const k = this.kernels.get(kernelId);
    if (!k) return;
    const parent = msg.header;
    const ch = msg.channel;
    const t = msg.header.msg_type;
    this.#iopubStatus(k, 'busy', parent);
    if (t === 'execute_request') {
      const code = String(msg.content['code'] ?? '');
      k.executionCount++;
      this.sendKernelMessage(kernelId, makeMessage({ channel: 'iopub', msgType: 'execute_input', session: k.session, parent, content: { code, execution_count: k.executionCount } }));
      if (code.startsWith('print ')) {
        this.sendKernelMessage(kernelId, makeMessage({ channel: 'iopub', msgType: 'stream', session: k.session, parent, content: { name: 'stdout', text: code.slice(6) + '\n' } }));
      }
      if (code.startsWith('buffers ')) {
        // A display_data with binary buffers, as a comm with binary payload would carry.
        this.sendKernelMessage(kernelId, makeMessage({ channel: 'iopub', msgType: 'comm_msg', session: k.session, parent, content: { comm_id: 'c1', data: {} }, buffers: [new Uint8Array([1, 2, 3, 255])] }));
      }
      this.sendKernelMessage(kernelId, makeMessage({ channel: ch, msgType: 'execute_reply', session: k.session, parent, content: { status: 'ok', execution_count: k.executionCount, user_expressions: {} } }));
    } else if (t === 'kernel_info_request') {
      this.sendKernelMessage(
        kernelId,
        makeMessage({
          channel: ch,
          msgType: 'kernel_info_reply',
          session: k.session,
          parent,
          content: { status: 'ok', protocol_version: '5.3', implementation: 'echo', implementation_version: '1', language_info: { name: 'python', version: '3', mimetype: 'text/x-python', file_extension: '.py' }, banner: 'echo', help_links: [] },
        }),
      );
    } else if (t.endsWith('_request')) {
      this.sendKernelMessage(kernelId, makeMessage({ channel: ch, msgType: t.replace(/_request$/, '_reply'), session: k.session, parent, content: { status: 'ok' } }));
    }
    this.#iopubStatus(k, 'idle', parent);
  }

  sendKernelMessage(kernelId: string, msg: JupyterMessage): void {
    this.sendRaw(encodeKernelFrame(kernelId, encodeV1(msg)));
  }

  /** Kernel-side output without a request: e.g. a background thread printing. */
  stream(kernelId: string, text: string, parent: Partial<JupyterMessage['header']> = {}): void {
    const k = this.kernels.get(kernelId);
    this.sendKernelMessage(kernelId, makeMessage({ channel: 'iopub', msgType: 'stream', session: k?.session ?? 'x', parent, content: { name: 'stdout', text } }));
  }

  /**
   * Sends one v1 frame as KERNEL PART frames of `partBytes` each (the last may be shorter).
   * Returns the size of each tunnel frame sent, which is what the gateway credits back.
   */
  sendParts(kernelId: string, v1Frame: Uint8Array, partBytes: number): number[] {
    const sizes: number[] = [];
    for (let offset = 0; offset < v1Frame.byteLength; offset += partBytes) {
      const f = kernelPartFrame(kernelId, v1Frame.byteLength, offset, v1Frame.subarray(offset, offset + partBytes));
      this.sendRaw(f);
      sizes.push(f.length);
    }
    return sizes;
  }

  /** Send KERNEL PART frames as two WebSocket fragments (header, bytes) instead of one frame. */
  partsAsFragments = false;

  sendRaw(frame: Uint8Array): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if ((frame[0] === FrameKind.Kernel || frame[0] === FrameKind.KernelPart) && frame.byteLength >= 17) {
      const id = bytesToUuid(frame.subarray(1, 17));
      this.sent.set(id, (this.sent.get(id) ?? 0) + frame.byteLength);
    }
    if (this.partsAsFragments && frame[0] === FrameKind.KernelPart && frame.byteLength > KERNEL_PART_HEADER_BYTES) {
      // As the real provider sends them: the part's header, then its bytes, as two fragments of one message.
      this.ws.send(frame.subarray(0, KERNEL_PART_HEADER_BYTES), { fin: false });
      this.ws.send(frame.subarray(KERNEL_PART_HEADER_BYTES), { fin: true });
      return;
    }
    this.ws.send(frame);
  }

  kernelStatus(kernelId: string, status: 'starting' | 'restarting' | 'dead', reason?: string): void {
    this.#control({ type: 'kernel_status', kernelId, status, ...(reason ? { reason } : {}) });
  }

  /** Takes back the kernel's message in parts under way (`kernel_part_abort`). */
  partAbort(kernelId: string): void {
    this.#control({ type: 'kernel_part_abort', kernelId });
  }

  /** Drops the connection abruptly (as a killed process would). */
  kill(): void {
    this.ws.terminate();
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((r) => {
      this.ws.once('close', () => r());
      this.ws.close(1000);
    });
  }

  #iopubStatus(k: EchoKernel, state: string, parent: Partial<JupyterMessage['header']>): void {
    this.sendKernelMessage(k.id, makeMessage({ channel: 'iopub', msgType: 'status', session: k.session, parent, content: { execution_state: state } }));
  }

  #control(m: ControlMessage): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(encodeControl(m));
  }
}

/** One KERNEL PART tunnel frame: `bytes` of a v1 frame of `total` bytes, starting at `offset` (not checked, so tests can break the rules). */
export function kernelPartFrame(kernelId: string, total: number, offset: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([encodeKernelPartHeader(uuidToBytes(kernelId), total, offset), bytes]);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
