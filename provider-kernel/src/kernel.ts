// One Jupyter kernel on this machine: its process, its ZMQ channels, its lifecycle
// (start, interrupt, restart, shutdown, death). Follows jupyter_client's KernelManager:
// https://jupyter-client.readthedocs.io/en/stable/api/jupyter_client.html#jupyter_client.KernelManager
//
// Messages the provider sends on its own behalf (kernel_info_request to see that the kernel
// is up, interrupt_request, shutdown_request) use a private session id, and everything the
// kernel answers to that session is consumed here, never forwarded: clients must not see
// replies or busy/idle they did not ask for.
import { randomUUID } from 'node:crypto';
import { promises as fs, rmSync } from 'node:fs';
import path from 'node:path';
import { makeMessage, type Channel } from '@kinesis/protocol/jupyter/messages';
import type { RunningKernelStatus } from '@kinesis/protocol/tunnel';
import { newConnectionInfo, privateDir, writeConnectionFile, type ConnectionInfo, type RunAs } from './connection.ts';
import { KernelError, errorText } from './errors.ts';
import { buildKernelEnv } from './kernel-env.ts';
import { KernelProcess } from './kernel-process.ts';
import type { LocalKernelSpec } from './kernelspecs.ts';
import type { Logger } from './logger.ts';
import { ArrivingContent, DeferredSignature, delimiterIndex, peekHeader, signatureMatches, splitZmqFrames, toZmqFrames, type HeaderPeek, type SignedParts, type WireParts } from './wire.ts';
import { KernelChannels, type IopubReader } from './zmq-channels.ts';
import type { LargeFrameSink } from './zmtp-sub.ts';
import { verifyLocalPeer, type PeerVerdict, type TcpEnds } from './peer-check.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

export type KernelState = 'starting' | 'idle' | 'busy' | 'restarting' | 'stopping' | 'dead' | 'stopped';

/**
 * iopub output with at least this many bytes of content has its signature checked after it is
 * handed on (`onMessage`'s `unchecked`), so that its first parts cross the tunnel meanwhile.
 */
export const DEFER_SIGNATURE_BYTES = 1024 * 1024;
/** The most bytes of header, and of parent header, read from a message not checked yet. */
const MAX_UNCHECKED_HEADER_BYTES = 64 * 1024;

export interface KernelHooks {
  /**
   * A message from the kernel, for the clients. Its signature is checked, unless `unchecked`
   * is given (iopub output of DEFER_SIGNATURE_BYTES and more, once the kernel's iopub works):
   * then the hook checks it, and no client may get the end of the message before it passed.
   * When `unchecked` is an ArrivingContent, the content is still arriving (only offered after
   * acceptsArriving said yes): its bytes come in behind `filled`, and its verdict follows.
   */
  onMessage(kernel: Kernel, channel: Channel, parts: WireParts, header: HeaderPeek, parent: HeaderPeek | undefined, unchecked?: DeferredSignature | ArrivingContent): void;
  /**
   * Would onMessage take iopub output of this many bytes (its v1 parts) while its content is
   * still arriving? Without this hook, or when it says no, messages come whole.
   */
  acceptsArriving?(kernel: Kernel, msgType: string, wireBytes: number): boolean;
  /**
   * iopub output was skipped unread: one of its parts was over the reader's limit
   * (`maxIopubFrameBytes`; the provider passes the tunnel's 64 MiB).
   * `parent`: its parent header's bytes when they came before that part (unchecked).
   */
  onOversize?(kernel: Kernel, bytes: number, parent: Buffer | undefined): void;
  /** Lifecycle changes the kernel cannot announce itself (tunnel `kernel_status`). */
  onStatus(kernel: Kernel, status: 'starting' | 'restarting' | 'dead', reason?: string): void;
}

export interface KernelOptions {
  readonly kernelId: string;
  readonly spec: LocalKernelSpec;
  readonly clientEnv: Readonly<Record<string, unknown>>;
  /** Parent of the per-kernel working dirs and connection files. */
  readonly dataDir: string;
  readonly logger: Logger;
  readonly hooks: KernelHooks;
  readonly passEnv?: readonly string[];
  /** Run the kernel as this Unix user instead of the provider's (see docs/provider-runbook.md). */
  readonly runAs?: RunAs;
  /** Variables the provider sets for this kernel (CUDA_VISIBLE_DEVICES for its GPU). */
  readonly extraEnv?: Readonly<Record<string, string>>;
  /** Who reads the kernel's iopub (default 'js': large output is handed on while it arrives). */
  readonly iopubReader?: IopubReader;
  /** With the js reader: iopub output with a part over this many bytes is skipped unread (default: zmtp-sub.ts's 1 GiB; the provider passes the tunnel's 64 MiB). */
  readonly maxIopubFrameBytes?: number;
  /**
   * With the js reader, how iopub messages are authenticated (docs/protocols.md, "Who may
   * speak for a kernel"). 'peer' (default): a connection whose far end is verified, through
   * /proc, as a socket of the kernel process launched here (or of its descendants) needs no
   * per-message HMAC check; until it is verified, or where it cannot be, every message is
   * checked. 'hmac': every message is checked.
   */
  readonly iopubAuth?: IopubAuth;
  /** The lookup behind 'peer' (default: peer-check.ts's verifyLocalPeer; tests pass their own to control its timing). */
  readonly verifyPeer?: (ends: TcpEnds, pid: number) => Promise<PeerVerdict>;
  /** How long a (re)start may take until kernel_info_reply (default 30 s: the gateway answers clients within 40 s). */
  readonly startTimeoutMs?: number;
  /** How long a kernel gets to exit after shutdown_request before SIGTERM, and after SIGTERM before SIGKILL. */
  readonly shutdownTimeoutMs?: number;
}

const MAX_PENDING_CLIENT_MESSAGES = 4096;

export type IopubAuth = 'peer' | 'hmac';
const NO_KEY = Buffer.alloc(0);

interface OwnRequest {
  resolve(content: Buffer): void;
  reject(e: Error): void;
}

export class Kernel {
  readonly id: string;
  readonly spec: LocalKernelSpec;
  private stateValue: KernelState = 'starting';
  private proc: KernelProcess | undefined;
  private channels: KernelChannels | undefined;
  private info: ConnectionInfo | undefined;
  private key = Buffer.alloc(0);
  private connectionFile: string | undefined;
  private readonly workDir: string;
  private readonly runtimeDir: string;
  private readonly ownSession = `kinesis-provider-${randomUUID()}`;
  private readonly ownRequests = new Map<string, OwnRequest>();
  private generation = 0;
  private iopubSeen = false;
  /** Counts iopub connections (and generations): a verification that finishes late for an older one is ignored. */
  private iopubConnection = 0;
  /** The current iopub connection is verified as the kernel's own (peer-check.ts): its messages are not HMAC-checked. */
  private iopubPeerVerified = false;
  /** Settles once the current iopub connection's lookup has (a start waits for it, so a kernel's first cell meets a settled mode). */
  private iopubVerdict: Promise<void> = Promise.resolve();
  private readonly pending: Array<{ channel: Exclude<Channel, 'iopub'>; parts: WireParts }> = [];
  private badMessages = 0;
  /** The iopub message whose content is arriving now (iopub reads one message at a time). */
  private arriving: ArrivingContent | undefined;
  private lifecycle: Promise<void> = Promise.resolve();
  /** Set by shutdown() at once, so a start still waiting for the kernel gives up now. */
  private abandoned = false;

  constructor(private readonly o: KernelOptions) {
    this.id = o.kernelId;
    this.spec = o.spec;
    this.workDir = path.join(o.dataDir, 'kernels', o.kernelId);
    this.runtimeDir = path.join(o.dataDir, 'runtime');
  }

  get state(): KernelState {
    return this.stateValue;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** For hello.kernels: only kernels the gateway can re-attach. */
  get adStatus(): RunningKernelStatus | undefined {
    const s = this.stateValue;
    return s === 'starting' || s === 'idle' || s === 'busy' || s === 'restarting' ? s : undefined;
  }

  /** Launches the kernel; resolves once it answered kernel_info_request. */
  start(): Promise<void> {
    return this.serial(async () => {
      const runAs = this.o.runAs;
      await privateDir(path.join(this.o.dataDir, 'kernels'), runAs ? 0o711 : 0o700);
      await privateDir(this.workDir);
      await fs.mkdir(path.join(this.workDir, '.tmp'), { recursive: true, mode: 0o700 });
      if (runAs) {
        await fs.chown(this.workDir, runAs.uid, runAs.gid);
        await fs.chown(path.join(this.workDir, '.tmp'), runAs.uid, runAs.gid);
      }
      this.setState('starting');
      try {
        try {
          await this.launch(await newConnectionInfo(this.spec.name));
        } catch (first) {
          // Ports are picked free and released before the kernel binds them (connection.ts),
          // so another process can take one in between and the kernel exits at once. Only
          // that case is retried, once, on fresh ports; a kernel that hangs is not.
          if (!(first instanceof Error && /exited while starting/.test(first.message))) throw first;
          this.o.logger.warn('kernel exited while starting; retrying once on fresh ports', { kernelId: this.id, error: first.message });
          await this.cleanupProcess();
          await this.launch(await newConnectionInfo(this.spec.name));
        }
      } catch (e) {
        await this.cleanupProcess();
        this.setState('dead');
        this.pending.length = 0; // nobody will run them
        throw e;
      }
    });
  }

  /** Interrupt as the kernelspec says: SIGINT to the process group, or interrupt_request on control. */
  async interrupt(): Promise<void> {
    if (!this.proc?.alive) throw new KernelError(`kernel ${this.id} is not running`);
    if (this.spec.spec.interrupt_mode === 'message') {
      await this.ownRequest('control', 'interrupt_request', {}, 5000);
    } else {
      // jupyter_client signals the whole group too (LocalProvisioner.send_signal), so a
      // subprocess the cell is waiting on is interrupted with it.
      this.proc.signalGroup('SIGINT');
    }
  }

  /**
   * Restart as jupyter_client's restart_kernel(now=False): shutdown_request(restart=true),
   * wait, kill if needed, then relaunch with the same id, ports and key (clients keep their
   * ids; new ports only if the old ones cannot be had). Also revives a dead kernel.
   */
  restart(): Promise<void> {
    return this.serial(async () => {
      if (this.stateValue === 'stopping' || this.stateValue === 'stopped') throw new KernelError(`kernel ${this.id} was shut down`);
      this.setState('restarting');
      this.o.hooks.onStatus(this, 'restarting');
      await this.stopProcess(true);
      const info = this.info ?? (await newConnectionInfo(this.spec.name));
      try {
        await this.launch(info);
      } catch (e) {
        this.o.logger.warn('relaunch on the same ports failed; trying new ports', { kernelId: this.id, error: errorText(e) });
        await this.cleanupProcess();
        try {
          await this.launch(await newConnectionInfo(this.spec.name));
        } catch (e2) {
          await this.cleanupProcess();
          this.setState('dead');
          this.pending.length = 0;
          this.o.hooks.onStatus(this, 'dead', `restart failed: ${errorText(e2)}`);
          throw e2;
        }
      }
    });
  }

  /** shutdown_request, then SIGTERM, then SIGKILL; resolves when the process group is gone. */
  shutdown(): Promise<void> {
    this.abandoned = true;
    return this.serial(async () => {
      if (this.stateValue === 'stopped') return;
      this.setState('stopping');
      await this.stopProcess(false);
      this.setState('stopped');
      await fs.rm(this.workDir, { recursive: true, force: true }).catch(() => undefined);
    });
  }

  /** Forwards a client's message (already validated) to the kernel, or queues it while the kernel starts. */
  sendFromClient(channel: Exclude<Channel, 'iopub'>, parts: WireParts): void {
    const s = this.stateValue;
    if (s === 'starting' || s === 'restarting') {
      if (this.pending.length >= MAX_PENDING_CLIENT_MESSAGES) {
        this.o.logger.warn('kernel start queue full; dropping a client message', { kernelId: this.id });
        return;
      }
      this.pending.push({ channel, parts });
      return;
    }
    if (!this.channels || s === 'dead' || s === 'stopped' || s === 'stopping') {
      this.o.logger.debug('message for a kernel that is not running dropped', { kernelId: this.id, state: s });
      return;
    }
    void this.channels.send(channel, toZmqFrames(this.key, parts));
  }

  // ---- internals -------------------------------------------------------------------

  /** Lifecycle operations run one at a time, in order. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lifecycle.then(fn, fn);
    this.lifecycle = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private setState(s: KernelState): void {
    this.stateValue = s;
  }

  private async launch(info: ConnectionInfo): Promise<void> {
    const gen = ++this.generation;
    this.info = info;
    this.key = Buffer.from(info.key, 'latin1');
    this.iopubSeen = false;
    this.forgetIopubPeer();
    this.connectionFile = await writeConnectionFile(this.runtimeDir, this.id, info, this.o.runAs);
    const argv = this.spec.spec.argv.map((a) => a.replaceAll('{connection_file}', this.connectionFile as string).replaceAll('{resource_dir}', this.spec.dir));
    const env = buildKernelEnv({
      kernelId: this.id,
      workDir: this.workDir,
      clientEnv: this.o.clientEnv,
      ...(this.spec.spec.env ? { specEnv: this.spec.spec.env } : {}),
      ...(this.o.passEnv ? { passEnv: this.o.passEnv } : {}),
      ...(this.o.extraEnv ? { extra: this.o.extraEnv } : {}),
    });
    const proc = new KernelProcess({ argv, env, cwd: this.workDir, logger: this.o.logger, kernelId: this.id, ...(this.o.runAs ? { runAs: this.o.runAs } : {}) });
    this.proc = proc;
    const js = (this.o.iopubReader ?? 'js') === 'js';
    this.channels = new KernelChannels(info, (ch, frames) => this.onFrames(gen, ch, frames), this.o.logger, js ? {
      arriving: {
        largeFrameBytes: DEFER_SIGNATURE_BYTES,
        ...(this.o.maxIopubFrameBytes ? { maxFrameBytes: this.o.maxIopubFrameBytes } : {}),
        onLargeFrame: (frames, size, more) => this.onLargeFrame(gen, frames, size, more),
        onAbort: () => {
          this.arriving?.abort('the kernel connection broke in the middle of the message');
          this.arriving = undefined;
        },
        onOversize: (frames, size) => this.onOversize(gen, frames, size),
        onReady: (ends) => this.verifyIopubPeer(gen, proc, ends),
        onGone: () => this.forgetIopubPeer(),
      },
    } : undefined);
    void proc.exited.then((x) => this.onExit(gen, proc, x.code, x.signal));
    this.o.logger.info('kernel launched', { kernelId: this.id, spec: this.spec.name, pid: proc.pid });
    await this.waitReady(gen, proc);
    if (gen !== this.generation) throw new KernelError(`kernel ${this.id} was replaced while starting`);
    this.setState('idle');
    for (const m of this.pending.splice(0)) this.sendFromClient(m.channel, m.parts);
  }

  /**
   * Ready means: kernel_info_reply on shell AND at least one iopub message seen, so our SUB
   * is connected and no output is lost to ZMQ's slow-joiner gap (jupyter_client's
   * wait_for_ready does the same). kernel_info_request is re-sent until both happen.
   */
  private async waitReady(gen: number, proc: KernelProcess): Promise<void> {
    const deadline = Date.now() + (this.o.startTimeoutMs ?? 30_000);
    let replied = false;
    while (Date.now() < deadline) {
      if (!proc.alive || this.abandoned) break;
      try {
        await this.ownRequest('shell', 'kernel_info_request', {}, replied ? 250 : 1000);
        replied = true;
      } catch (e) {
        if (!(e instanceof KernelError && e.shortMessage.includes('no reply'))) break;
      }
      if (replied && this.iopubSeen) {
        const channels = this.channels;
        const left = deadline - Date.now();
        if (channels && left > 0 && (await Promise.race([channels.connected.then(() => true), sleep(left).then(() => false)]))) {
          await Promise.race([this.iopubVerdict, sleep(Math.min(2000, Math.max(0, deadline - Date.now())))]);
          return;
        }
        break;
      }
      if (gen !== this.generation) break;
    }
    if (this.abandoned) throw new KernelError(`kernel ${this.id} was shut down while starting`);
    const exited = !proc.alive;
    const tail = proc.stderrTail();
    throw new KernelError(
      exited ? `kernel ${this.spec.name} exited while starting` : `kernel ${this.spec.name} did not answer kernel_info_request within ${this.o.startTimeoutMs ?? 30_000} ms`,
      tail ? { details: tail.slice(-2000) } : {},
    );
  }

  private ownRequest(channel: 'shell' | 'control', msgType: string, content: Record<string, unknown>, timeoutMs: number): Promise<Buffer> {
    const channels = this.channels;
    if (!channels) return Promise.reject(new KernelError(`kernel ${this.id} has no channels`));
    const msg = makeMessage({ channel, msgType, session: this.ownSession, username: 'kinesis-provider', content });
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.ownRequests.delete(msg.header.msg_id);
        reject(new KernelError(`no reply to ${msgType} from kernel ${this.id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.ownRequests.set(msg.header.msg_id, {
        resolve: (c) => {
          clearTimeout(timer);
          resolve(c);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      const parts: WireParts = {
        header: Buffer.from(JSON.stringify(msg.header)),
        parent: Buffer.from('{}'),
        metadata: Buffer.from('{}'),
        content: Buffer.from(JSON.stringify(content)),
        buffers: [],
      };
      void channels.send(channel, toZmqFrames(this.key, parts));
    });
  }

  private onFrames(gen: number, channel: Channel, frames: Buffer[]): void {
    if (gen !== this.generation) return; // a previous process's socket still draining
    let m: SignedParts;
    try {
      m = splitZmqFrames(frames);
    } catch (e) {
      this.dropMessage(channel, errorText(e));
      return;
    }
    const parts = m.parts;
    // Large output may go on before its signature is checked: the provider checks it while it
    // is sent (provider.ts). Its header and parent are read first, so they must be small; and
    // anything the provider itself acts on (statuses, replies to its own requests, the first
    // iopub message, which tells it iopub works) is checked first.
    const mayDefer = channel === 'iopub' && this.iopubSeen && parts.content.length >= DEFER_SIGNATURE_BYTES && parts.header.length <= MAX_UNCHECKED_HEADER_BYTES && parts.parent.length <= MAX_UNCHECKED_HEADER_BYTES;
    if (!mayDefer && !this.signed(channel, m)) return;
    const header = peekHeader(parts.header);
    const parent = parts.parent.length > 2 ? peekHeader(parts.parent) : undefined;
    const defer = mayDefer && header !== undefined && header.msgType !== 'status' && parent?.session !== this.ownSession;
    if (mayDefer && !defer && !this.signed(channel, m)) return;
    if (!header) {
      this.o.logger.warn('dropping kernel message with an unreadable header', { kernelId: this.id, channel });
      return;
    }
    if (channel === 'iopub') this.iopubSeen = true;
    if (parent?.session === this.ownSession) {
      if (channel !== 'iopub') {
        const req = this.ownRequests.get(parent.msgId);
        if (req) {
          this.ownRequests.delete(parent.msgId);
          req.resolve(parts.content);
        }
      }
      return;
    }
    if (channel === 'iopub' && header.msgType === 'status') this.trackStatus(parts.content);
    this.o.hooks.onMessage(this, channel, parts, header, parent, defer ? new DeferredSignature(this.keyFor(channel), m) : undefined);
  }

  /**
   * The content frame of an iopub message begins and is large: when the message may go on
   * before its signature is checked (as in onFrames: not a status, small header and parent,
   * not an answer to our own request, iopub known to work) and the provider takes it so,
   * it is handed on now and its content follows as it arrives.
   */
  private onLargeFrame(gen: number, frames: readonly Buffer[], size: number, more: boolean): LargeFrameSink | undefined {
    if (gen !== this.generation || more || !this.iopubSeen || size < DEFER_SIGNATURE_BYTES) return undefined;
    const d = delimiterIndex(frames);
    // Exactly the signature, header, parent and metadata after the delimiter: this frame is the content.
    if (d < 0 || frames.length !== d + 5) return undefined;
    const [signature, header, parent, metadata] = frames.slice(d + 1) as [Buffer, Buffer, Buffer, Buffer];
    if (header.length > MAX_UNCHECKED_HEADER_BYTES || parent.length > MAX_UNCHECKED_HEADER_BYTES) return undefined;
    const h = peekHeader(header);
    const p = parent.length > 2 ? peekHeader(parent) : undefined;
    if (!h || h.msgType === 'status' || p?.session === this.ownSession) return undefined;
    const wireBytes = header.length + parent.length + metadata.length + size;
    if (!this.o.hooks.acceptsArriving?.(this, h.msgType, wireBytes)) return undefined;
    const content = new ArrivingContent(this.keyFor('iopub'), { header, parent, metadata }, signature, size);
    this.arriving = content;
    this.o.hooks.onMessage(this, 'iopub', { header, parent, metadata, content: content.buffer, buffers: [] }, h, p, content);
    return {
      buffer: content.buffer,
      progress: (filled) => {
        content.progress(filled);
        if (filled === size && this.arriving === content) this.arriving = undefined;
      },
    };
  }

  /** A new iopub connection, or none: nothing is verified, and any lookup still under way is for an older one. Returns the new connection's number. */
  private forgetIopubPeer(): number {
    this.iopubPeerVerified = false;
    return ++this.iopubConnection;
  }

  /** The key a message on `channel` is checked with: none on an iopub connection verified as the kernel's own. */
  private keyFor(channel: Channel): Buffer {
    return channel === 'iopub' && this.iopubPeerVerified ? NO_KEY : this.key;
  }

  /**
   * A new iopub connection: until it is verified as the kernel's own, its messages are
   * checked as usual. The check reads /proc once; a connection that ended, or a kernel that
   * was replaced, meanwhile is not marked.
   */
  private verifyIopubPeer(gen: number, proc: KernelProcess, ends: TcpEnds | undefined): void {
    const connection = this.forgetIopubPeer();
    const pid = proc.pid;
    if ((this.o.iopubAuth ?? 'peer') !== 'peer' || pid === undefined || gen !== this.generation) return;
    const verify = this.o.verifyPeer ?? verifyLocalPeer;
    this.iopubVerdict = (ends ? verify(ends, pid) : Promise.resolve({ ok: false as const, reason: 'the socket does not give its ends' }))
      .then((v) => {
        if (connection !== this.iopubConnection || gen !== this.generation || !proc.alive) return;
        if (v.ok) {
          this.iopubPeerVerified = true;
          this.o.logger.debug('kernel iopub connection verified as the kernel\'s own; its messages are not HMAC-checked', { kernelId: this.id, pid: v.pid, port: ends?.localPort });
        } else this.o.logger.info('kernel iopub connection not verified as the kernel\'s own; every message on it is HMAC-checked', { kernelId: this.id, reason: v.reason });
      })
      .catch(() => undefined);
  }

  private onOversize(gen: number, frames: readonly Buffer[], size: number): void {
    if (gen !== this.generation) return;
    this.dropMessage('iopub', `a part of ${size} bytes is over the limit`);
    const d = delimiterIndex(frames);
    this.o.hooks.onOversize?.(this, size, d >= 0 ? frames[d + 3] : undefined);
  }

  /** True when the message is signed with this kernel's key; drops it when not. */
  private signed(channel: Channel, m: SignedParts): boolean {
    if (signatureMatches(this.keyFor(channel), m)) return true;
    this.dropMessage(channel, 'kernel message has a bad HMAC signature');
    return false;
  }

  /**
   * Drops a message that is malformed or not signed with this kernel's key (not from our
   * kernel). Logs the first few and then every 1000th, so a flood cannot fill the log.
   */
  dropMessage(channel: Channel, reason: string): void {
    this.badMessages++;
    if (this.badMessages <= 5 || this.badMessages % 1000 === 0) {
      this.o.logger.warn('dropping kernel message', { kernelId: this.id, channel, reason, count: this.badMessages });
    }
  }

  private trackStatus(content: Buffer): void {
    const m = /"execution_state"\s*:\s*"(busy|idle)"/.exec(content.toString('utf8', 0, Math.min(content.length, 256)));
    if (m && (this.stateValue === 'idle' || this.stateValue === 'busy')) this.setState(m[1] as 'busy' | 'idle');
  }

  private onExit(gen: number, proc: KernelProcess, code: number | null, signal: NodeJS.Signals | null): void {
    // Children may still hold the group: reap them whatever the reason for the exit.
    proc.signalGroup('SIGKILL');
    if (gen !== this.generation) return;
    for (const [id, r] of this.ownRequests) {
      this.ownRequests.delete(id);
      r.reject(new KernelError(`kernel ${this.id} exited`));
    }
    const s = this.stateValue;
    if (s === 'stopping' || s === 'stopped' || s === 'restarting') return; // expected
    const reason = signal ? `kernel process killed by ${signal}` : `kernel process exited with code ${code}`;
    this.o.logger.warn('kernel died', { kernelId: this.id, reason });
    const wasStarting = s === 'starting';
    this.setState('dead');
    this.closeChannels();
    // Synchronously, so that once `dead` is announced nothing of the kernel is left on disk.
    if (this.connectionFile) rmSync(this.connectionFile, { force: true });
    this.connectionFile = undefined;
    // A kernel that dies while starting is reported by start()'s rejection instead.
    if (!wasStarting) this.o.hooks.onStatus(this, 'dead', reason);
  }

  /** Stops the current process: polite request, then signals. `restart` tells the kernel why. */
  private async stopProcess(restart: boolean): Promise<void> {
    const proc = this.proc;
    const grace = this.o.shutdownTimeoutMs ?? 5000;
    if (proc?.alive) {
      try {
        await this.ownRequest('control', 'shutdown_request', { restart }, Math.min(grace, 2000));
      } catch {
        // a hung or busy kernel may not answer; signals follow
      }
      if (!(await proc.waitExit(grace))) await proc.terminate(grace);
    }
    await this.cleanupProcess();
  }

  private async cleanupProcess(): Promise<void> {
    const proc = this.proc;
    if (proc) {
      if (proc.alive) await proc.terminate(1000);
      proc.signalGroup('SIGKILL');
    }
    this.closeChannels();
    await this.removeConnectionFile();
  }

  private closeChannels(): void {
    this.channels?.close();
    this.channels = undefined;
  }

  private async removeConnectionFile(): Promise<void> {
    const f = this.connectionFile;
    this.connectionFile = undefined;
    if (f) await fs.rm(f, { force: true }).catch(() => undefined);
  }
}
