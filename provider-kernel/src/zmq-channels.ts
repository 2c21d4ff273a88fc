// The ZMQ side of one kernel: DEALER sockets for shell, control and stdin, a SUB for iopub,
// as jupyter_client connects them. Shell and stdin share one routing id, because the
// kernel sends input_request on its stdin ROUTER to the identity that sent the
// execute_request on shell (jupyter_client does the same with session.bsession).
// The DEALERs are libzmq's (the `zeromq` package); the iopub SUB is either libzmq's or our
// own ZMTP reader (zmtp-sub.ts), which can hand a large frame on while it arrives.
import { randomUUID } from 'node:crypto';
import * as zmq from 'zeromq';
import type { Channel } from '@kinesis/protocol/jupyter/messages';
import { zmqUrl, type ConnectionInfo } from './connection.ts';
import type { Logger } from './logger.ts';
import type { TcpEnds } from './peer-check.ts';
import { ZmtpSubscriber, type LargeFrameSink } from './zmtp-sub.ts';

export type InboundHandler = (channel: Channel, frames: Buffer[]) => void;

type Sendable = zmq.Dealer;

/** Who reads a kernel's iopub: zmtp-sub.ts, or libzmq's SUB (the `zeromq` package). */
export type IopubReader = 'js' | 'libzmq';

/** How iopub is read. Without `arriving`, libzmq's SUB reads it. */
export interface IopubOptions {
  /** Read iopub with zmtp-sub.ts: a large frame may be taken as it arrives. */
  readonly arriving: {
    /** See ZmtpSubHandlers.onLargeFrame; streamed messages are not passed to onFrames. */
    onLargeFrame(framesSoFar: readonly Buffer[], size: number, more: boolean): LargeFrameSink | undefined;
    /** A message taken as it arrived was cut off. */
    onAbort(): void;
    /** A message skipped because one of its frames was over the limit (`framesSoFar`: those before it). */
    onOversize(framesSoFar: readonly Buffer[], size: number): void;
    /** A connection to the kernel's iopub completed its handshake (its two ends), and ended. */
    onReady?(ends: TcpEnds | undefined): void;
    onGone?(): void;
    readonly largeFrameBytes: number;
    /** Frames over this are skipped unread with their message (default: zmtp-sub.ts's DEFAULT_MAX_FRAME_BYTES). */
    readonly maxFrameBytes?: number;
  };
}

export class KernelChannels {
  private readonly sockets: { shell: zmq.Dealer; control: zmq.Dealer; stdin: zmq.Dealer };
  private readonly iopub: zmq.Subscriber | ZmtpSubscriber;
  // zeromq 6 allows one pending send per socket: later sends wait their turn here.
  private readonly sendChains = new Map<Sendable, Promise<void>>();
  private closed = false;
  private unconnected = new Set<string>(['shell', 'control', 'stdin']);
  private onAllConnected: (() => void) | undefined;
  /**
   * Resolves once shell, control and stdin have each completed the ZMTP handshake with the
   * kernel. A ROUTER drops messages for identities it has not seen connect, so an
   * input_request sent before our stdin socket's identity reached the kernel would be lost
   * for good (kernel_info_reply proves only the shell connection). The TCP `connect` event
   * alone was not enough: under load the handshake that carries the identity could still be
   * under way, and a test of input() lost its input_request once in CI.
   */
  readonly connected: Promise<void>;

  constructor(
    info: ConnectionInfo,
    private readonly onFrames: InboundHandler,
    private readonly logger: Logger,
    iopubOptions?: IopubOptions,
  ) {
    this.connected = new Promise<void>((resolve) => (this.onAllConnected = resolve));
    const identity = `kinesis-${randomUUID()}`;
    const dealer = (name: string, port: number, routingId?: string): zmq.Dealer => {
      const s = new zmq.Dealer({ linger: 0, ...(routingId ? { routingId } : {}) });
      // Listen before connecting, or the event can come first.
      s.events.on('handshake', () => {
        this.unconnected.delete(name);
        if (this.unconnected.size === 0) this.onAllConnected?.();
      });
      s.connect(zmqUrl(info, port));
      return s;
    };
    this.sockets = {
      shell: dealer('shell', info.shell_port, identity),
      control: dealer('control', info.control_port),
      stdin: dealer('stdin', info.stdin_port, identity),
    };
    for (const ch of ['shell', 'control', 'stdin'] as const) void this.readLoop(ch, this.sockets[ch]);
    const a = iopubOptions?.arriving;
    if (a) {
      this.iopub = new ZmtpSubscriber(
        { host: info.ip, port: info.iopub_port, largeFrameBytes: a.largeFrameBytes, ...(a.maxFrameBytes ? { maxFrameBytes: a.maxFrameBytes } : {}) },
        {
          onLargeFrame: (frames, size, more) => a.onLargeFrame(frames, size, more),
          onMessage: (frames, streamed) => {
            if (!streamed) this.deliver('iopub', frames);
          },
          onAbort: (streamed) => {
            if (streamed) a.onAbort();
          },
          onOversize: (frames, size) => a.onOversize(frames, size),
          onError: (reason) => this.logger.warn('kernel iopub connection failed', { reason }),
          onReady: (ends) => a.onReady?.(ends),
          onGone: () => a.onGone?.(),
        },
      );
    } else {
      const sub = new zmq.Subscriber({ linger: 0 });
      sub.connect(zmqUrl(info, info.iopub_port));
      sub.subscribe();
      this.iopub = sub;
      void this.readLoop('iopub', sub);
    }
  }

  private deliver(channel: Channel, frames: Buffer[]): void {
    try {
      this.onFrames(channel, frames);
    } catch (e) {
      this.logger.error('handler for kernel message threw', { channel, error: String(e) });
    }
  }

  private async readLoop(channel: Channel, sock: zmq.Dealer | zmq.Subscriber): Promise<void> {
    while (!this.closed) {
      let frames: Buffer[];
      try {
        frames = await sock.receive();
      } catch (e) {
        if (this.closed) return;
        this.logger.warn('zmq receive failed', { channel, error: String(e) });
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      this.deliver(channel, frames);
    }
  }

  /** Queues frames on a shell/control/stdin socket. Resolves when ZMQ has them. */
  send(channel: Exclude<Channel, 'iopub'>, frames: Buffer[]): Promise<void> {
    if (this.closed) return Promise.resolve();
    const sock = this.sockets[channel];
    const prev = this.sendChains.get(sock);
    // Nothing pending on this socket (the usual case): hand the frames to ZMQ now, not a few
    // microtasks later after the caller's whole stack has unwound (~20 µs of every request).
    const next = prev === undefined ? this.sendNow(channel, sock, frames) : prev.then(() => this.sendNow(channel, sock, frames));
    this.sendChains.set(sock, next);
    void next.then(() => {
      if (this.sendChains.get(sock) === next) this.sendChains.delete(sock);
    });
    return next;
  }

  private async sendNow(channel: Channel, sock: Sendable, frames: Buffer[]): Promise<void> {
    if (this.closed) return;
    try {
      await sock.send(frames);
    } catch (e) {
      if (!this.closed) this.logger.warn('zmq send failed', { channel, error: String(e) });
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...Object.values(this.sockets), this.iopub]) {
      try {
        s.close();
      } catch {
        // already closed
      }
    }
  }
}
