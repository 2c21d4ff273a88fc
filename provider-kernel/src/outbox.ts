// Provider → gateway sending, with the tunnel's flow control (docs/protocols.md, "Flow
// control and fairness"):
// - each kernel has its own queue and its own credit (bytes the gateway will accept);
// - frames go round-robin across kernels that have both queued frames and credit, one
//   frame per turn, and only while the socket's bufferedAmount is under a high-water mark,
//   so a kernel flooding output cannot delay another kernel's reply by more than one frame
//   of each other kernel plus the high-water mark;
// - while the tunnel is down (or a kernel has no credit) frames wait in the queue, which is
//   bounded: past the bound the oldest *output* frames are dropped (stream, display data;
//   never replies or status), counted, and a notice takes their place for the user. A
//   message in parts larger than the bound is not dropped for its size while it is the
//   lane's first: the bound applies to what waits behind it (backlog()).
// - a message larger than the gateway's budget for messages in parts, or than its frame
//   limit, can never cross: it is dropped, and its notice says it was too large.
// Control frames (replies, events) are small and jump the queue; they are not credited.
// - a message in parts (kernel-frame.ts PartedMessage) is one queue entry that gives one part
//   per turn, so a 10 MB output holds other kernels up by one part, not 10 MB; once its
//   first part is out it can no longer be dropped (the gateway is already forwarding it).
//   If the tunnel drops mid-message, it starts over from its first part on the next one.
//   The totals of messages begun and not yet finished stay within the gateway's budget
//   (`maxPartialBytes` in welcome): a kernel whose next message would go over it waits
//   until others finish, first come first served (while one waits, no other kernel begins a
//   message that would take the room it waits for); a message larger than the whole budget
//   can never cross and is dropped like a frame that is too large.
// - a message in parts whose signature is still being checked is held (PartedMessage.hold):
//   on a connection whose gateway can be told to drop it (`partAbort`), its parts go out but
//   the last; otherwise none does. Its lane waits there until it is released or taken back
//   (discard); either way the caller then calls resume().
import { DEFAULT_MAX_PARTIAL_BYTES } from '@kinesis/protocol/tunnel';
import type { PartedMessage } from './kernel-frame.ts';

export interface OutboxSocket {
  /** false once the connection is closing: frames then stay queued. */
  readonly open: boolean;
  readonly bufferedAmount: number;
  /** One tunnel frame: a buffer, or the fragments of one WebSocket message. */
  send(data: Buffer | readonly Buffer[], cb: (err?: Error) => void): void;
}

export interface QueuedFrame {
  readonly frame: Buffer | PartedMessage;
  /** Output that may be dropped when the queue is over its bound. */
  readonly droppable: boolean;
  /** Parent header bytes of the message, for the drop notice. */
  readonly parent?: Buffer;
}

export interface OutboxOptions {
  /** Stop handing frames to the socket while it buffers this many bytes (default 256 KiB). */
  readonly highWaterMark?: number;
  /** Most bytes queued per kernel before output is dropped (default 32 MiB). */
  readonly maxQueuedBytes?: number;
  /**
   * Builds the frame that tells the user `count` output messages (`bytes`) were dropped;
   * `tooLarge` of them because they could never cross, the rest because the queue was full.
   */
  readonly dropNotice?: (kernelId: string, count: number, bytes: number, parent: Buffer | undefined, tooLarge: number) => Buffer | undefined;
  /** Called when a kernel starts losing output (once per gap, not per frame). */
  readonly onDrop?: (kernelId: string, reason: 'queue full' | 'frame too large') => void;
  /** Frames larger than this can never cross the tunnel (the gateway closes it with 1009): dropped like overflow. */
  readonly maxFrameBytes?: number;
}

interface Lane {
  readonly id: string;
  readonly queue: Array<QueuedFrame | 'notice'>;
  head: number;
  queuedBytes: number;
  credit: number;
  dropped: number;
  droppedBytes: number;
  /** Of `dropped`, those dropped for being too large to ever cross (not for the pace). */
  droppedLarge: number;
  /** All frames ever dropped from this lane (stats; `dropped` resets with each notice). */
  droppedTotal: number;
  lastDroppedParent: Buffer | undefined;
  noticeQueued: boolean;
}

export class Outbox {
  private readonly lanes = new Map<string, Lane>();
  private ring: Lane[] = [];
  private next = 0;
  private sock: OutboxSocket | undefined;
  private initialCredit = 0;
  private pumping = false;
  private partsAccepted = true;
  /** The gateway takes `kernel_part_abort`: a held message may begin. */
  private partAbortAccepted = false;
  private maxPartial = DEFAULT_MAX_PARTIAL_BYTES;
  /** Sum of the totals of messages in parts begun and not finished on this connection. */
  private unfinished = 0;
  /** The lane whose next message waits for room in the budget; it goes before any other's. */
  private waiting: Lane | undefined;
  private readonly hwm: number;
  private readonly maxQueued: number;

  constructor(private readonly o: OutboxOptions = {}) {
    this.hwm = o.highWaterMark ?? 256 * 1024;
    this.maxQueued = o.maxQueuedBytes ?? 32 * 1024 * 1024;
  }

  /**
   * After the handshake: every kernel starts over with `initialCredit` on this connection.
   * `parts`: the gateway takes KERNEL PART frames; if not, messages queued in parts go whole.
   */
  attach(sock: OutboxSocket, initialCredit: number, opts: { readonly parts?: boolean; readonly partAbort?: boolean; readonly maxPartialBytes?: number } = {}): void {
    this.sock = sock;
    this.initialCredit = initialCredit;
    this.partsAccepted = opts.parts ?? true;
    this.partAbortAccepted = this.partsAccepted && (opts.partAbort ?? false);
    this.maxPartial = opts.maxPartialBytes ?? DEFAULT_MAX_PARTIAL_BYTES;
    this.unfinished = 0; // every message begun on the last connection starts over
    this.waiting = undefined;
    for (const l of this.lanes.values()) {
      l.credit = initialCredit;
      this.restartParts(l);
    }
    this.pump();
  }

  detach(): void {
    this.sock = undefined;
    this.unfinished = 0;
    this.waiting = undefined;
    // Offline, a message cut off mid-parts is an ordinary queued message again: sheddable.
    for (const l of this.lanes.values()) this.restartParts(l);
  }

  get attached(): boolean {
    return this.sock !== undefined;
  }

  addKernel(id: string): void {
    if (this.lanes.has(id)) return;
    const lane: Lane = { id, queue: [], head: 0, queuedBytes: 0, credit: this.initialCredit, dropped: 0, droppedBytes: 0, droppedLarge: 0, droppedTotal: 0, lastDroppedParent: undefined, noticeQueued: false };
    this.lanes.set(id, lane);
    this.ring.push(lane);
  }

  removeKernel(id: string): void {
    const lane = this.lanes.get(id);
    if (!lane) return;
    const head = lane.queue[lane.head];
    if (head !== undefined && head !== 'notice' && !Buffer.isBuffer(head.frame) && head.frame.started) this.unfinished -= head.frame.total;
    if (this.waiting === lane) this.waiting = undefined;
    this.lanes.delete(id);
    this.ring = this.ring.filter((l) => l !== lane);
    if (this.next >= this.ring.length) this.next = 0;
    this.pump(); // what it held of the budget may let another kernel's message begin
  }

  /** Bytes waiting for a kernel (for tests and stats). */
  queued(id: string): number {
    return this.lanes.get(id)?.queuedBytes ?? 0;
  }

  credit(id: string): number {
    return this.lanes.get(id)?.credit ?? 0;
  }

  /** Frames dropped for a kernel so far (stats and tests). */
  droppedFrames(id: string): number {
    return this.lanes.get(id)?.droppedTotal ?? 0;
  }

  /** Queues a frame; false when it was dropped at once (too large, or the kernel is gone). */
  enqueue(id: string, f: QueuedFrame): boolean {
    const lane = this.lanes.get(id);
    if (!lane) return false;
    const size = sizeOf(f.frame);
    // A message in parts obeys the same bound on its whole length as a single frame.
    if ((Buffer.isBuffer(f.frame) ? size : f.frame.total) > (this.o.maxFrameBytes ?? Infinity)) {
      if (lane.dropped === 0) this.o.onDrop?.(lane.id, 'frame too large');
      lane.dropped++;
      lane.droppedTotal++;
      lane.droppedBytes += size;
      lane.droppedLarge++;
      lane.lastDroppedParent = f.parent;
      if (!lane.noticeQueued) {
        lane.queue.push('notice');
        lane.noticeQueued = true;
      }
      this.pump();
      return false;
    }
    lane.queue.push(f);
    lane.queuedBytes += size;
    if (this.backlog(lane) > this.maxQueued) this.shed(lane);
    this.pump();
    return true;
  }

  /** A CREDIT frame from the gateway. */
  grant(id: string, bytes: number): void {
    const lane = this.lanes.get(id);
    if (!lane) return;
    // Credit can go negative by one frame (a frame larger than the credit left is still sent
    // when some credit remains), so grants first pay that back. Cap at 4 GiB of headroom.
    lane.credit = Math.min(lane.credit + bytes, 0xffffffff);
    this.pump();
  }

  /** Sends what waited for a held message to be released or taken back. */
  resume(): void {
    this.pump();
  }

  /**
   * Takes back a message in parts (its signature check failed), wherever it is in its lane.
   * Returns true when some of its parts went out on the current connection: the gateway must
   * then be told that the message will not be finished, before anything else of the kernel's
   * goes out (the gateway takes no other frame of a kernel in the middle of its message in
   * parts). So nothing is sent here: the caller sends that, then calls resume().
   */
  discard(id: string, m: PartedMessage): boolean {
    const lane = this.lanes.get(id);
    if (!lane) return false;
    const i = lane.queue.findIndex((f, at) => at >= lane.head && f !== 'notice' && f !== undefined && f.frame === m);
    if (i < 0) return false;
    const begun = m.started; // a message cut off with its connection was rewound (restartParts)
    lane.queuedBytes -= m.remainingWireBytes;
    if (i === lane.head) {
      if (begun) this.unfinished -= m.total;
      if (this.waiting === lane) this.waiting = undefined; // its reservation was for this message
      this.advance(lane);
    } else lane.queue.splice(i, 1);
    return begun;
  }

  /** Control frames bypass credit; dropped while detached (their connection is gone). */
  sendControl(frame: Buffer): boolean {
    const s = this.sock;
    if (!s || !s.open) return false;
    s.send(frame, () => this.pump());
    return true;
  }

  private shed(lane: Lane): void {
    // Drop the oldest droppable frames until the lane is back under its bound.
    if (lane.dropped === 0) this.o.onDrop?.(lane.id, 'queue full');
    for (let i = lane.head; i < lane.queue.length && this.backlog(lane) > this.maxQueued; i++) {
      const f = lane.queue[i];
      if (f === undefined || f === 'notice' || !f.droppable || (!Buffer.isBuffer(f.frame) && f.frame.started) || f === this.leadingLarge(lane)) continue;
      const size = sizeOf(f.frame);
      lane.queuedBytes -= size;
      lane.dropped++;
      lane.droppedTotal++;
      lane.droppedBytes += size;
      lane.lastDroppedParent = f.parent;
      if (!lane.noticeQueued) {
        lane.queue[i] = 'notice'; // the notice stands where the output went missing
        lane.noticeQueued = true;
      } else {
        lane.queue.splice(i, 1);
        i--;
      }
    }
  }

  /**
   * The bytes that count against maxQueuedBytes: all the lane holds but leadingLarge's. That
   * message is already in memory whole, and dropping it for its own size would make the bound
   * the largest output a kernel could ever show; the bound is on what waits behind it.
   */
  private backlog(lane: Lane): number {
    const lead = this.leadingLarge(lane);
    return lead ? lane.queuedBytes - (lead.frame as PartedMessage).remainingWireBytes : lane.queuedBytes;
  }

  /**
   * The lane's first message (a drop notice before it aside) when it is one in parts that can
   * cross (within the gateway's budget for messages in parts) and is over maxQueuedBytes alone.
   */
  private leadingLarge(lane: Lane): QueuedFrame | undefined {
    for (let i = lane.head; i < lane.queue.length; i++) {
      const f = lane.queue[i];
      if (f === undefined || f === 'notice') continue;
      return !Buffer.isBuffer(f.frame) && f.frame.remainingWireBytes > this.maxQueued && f.frame.total <= this.maxPartial ? f : undefined;
    }
    return undefined;
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.sock && this.sock.open && this.sock.bufferedAmount < this.hwm) {
        const lane = this.pickLane();
        if (!lane) break;
        const sock = this.sock;
        const frame = this.take(lane);
        if (!frame) continue;
        lane.credit -= Buffer.isBuffer(frame) ? frame.length : frame.reduce((n, b) => n + b.length, 0);
        sock.send(frame, () => this.pump());
      }
    } finally {
      this.pumping = false;
    }
  }

  private pickLane(): Lane | undefined {
    const n = this.ring.length;
    for (let i = 0; i < n; i++) {
      const lane = this.ring[(this.next + i) % n] as Lane;
      if (lane.head < lane.queue.length && lane.credit > 0 && this.ready(lane) && !this.overBudget(lane)) {
        this.next = (this.next + i + 1) % n;
        return lane;
      }
    }
    return undefined;
  }

  /** False while the lane's head is a held message with only its last part (or itself whole) left to send. */
  private ready(lane: Lane): boolean {
    const item = lane.queue[lane.head];
    if (item === undefined || item === 'notice' || Buffer.isBuffer(item.frame)) return true;
    return this.partAbortAccepted ? item.frame.partReady : !item.frame.held;
  }

  /** The message at the head of the lane when it is one in parts not begun yet. */
  private unbegun(lane: Lane): PartedMessage | undefined {
    const item = lane.queue[lane.head];
    return item === undefined || item === 'notice' || Buffer.isBuffer(item.frame) || item.frame.started ? undefined : item.frame;
  }

  /**
   * The lane's next message would begin in parts past the gateway's budget, or take room
   * that an earlier waiting lane needs: it waits. (A message over the whole budget is not
   * held here; take() drops it.)
   */
  private overBudget(lane: Lane): boolean {
    const m = this.partsAccepted ? this.unbegun(lane) : undefined;
    if (!m || m.total > this.maxPartial) return false;
    let reserved = 0;
    if (this.waiting && this.waiting !== lane) {
      const w = this.unbegun(this.waiting);
      if (w) reserved = w.total;
      else this.waiting = undefined; // its message was shed or began meanwhile
    }
    if (this.unfinished + reserved + m.total <= this.maxPartial) return false;
    this.waiting ??= lane;
    return true;
  }

  private take(lane: Lane): Buffer | Buffer[] | undefined {
    const item = lane.queue[lane.head];
    if (item !== undefined && item !== 'notice' && !Buffer.isBuffer(item.frame)) {
      // A message in parts stays at the head of its lane until its last part is out.
      const m = item.frame;
      const before = m.remainingWireBytes;
      if (!m.started && !this.partsAccepted) {
        lane.queuedBytes -= before;
        this.advance(lane);
        return m.whole();
      }
      if (!m.started && m.total > this.maxPartial) {
        // Over the gateway's budget it can never begin in parts, and whole it would be over
        // the gateway's frame limit (never above the budget): it is lost like one too large.
        lane.queuedBytes -= before;
        this.dropAtHead(lane, before, item.parent);
        return undefined;
      }
      const began = m.started;
      if (this.waiting === lane) this.waiting = undefined;
      const part = m.next();
      lane.queuedBytes -= m.done ? before : before - m.remainingWireBytes;
      if (!began && !m.done) this.unfinished += m.total;
      else if (began && m.done) this.unfinished -= m.total;
      if (m.done) this.advance(lane);
      return part;
    }
    this.advance(lane);
    if (item === undefined) return undefined;
    if (item === 'notice') {
      const notice = this.o.dropNotice?.(lane.id, lane.dropped, lane.droppedBytes, lane.lastDroppedParent, lane.droppedLarge);
      lane.droppedLarge = 0;
      lane.dropped = 0;
      lane.droppedBytes = 0;
      lane.noticeQueued = false;
      return notice;
    }
    lane.queuedBytes -= sizeOf(item.frame);
    return item.frame as Buffer;
  }

  /**
   * A message in parts whose first parts went out on a previous connection starts over: the
   * gateway on the next one rejects a part that does not continue a message it saw begin
   * (1007, docs/protocols.md), and the old one already cut off the clients that had its start.
   */
  private restartParts(lane: Lane): void {
    const item = lane.queue[lane.head];
    if (item === undefined || item === 'notice' || Buffer.isBuffer(item.frame) || !item.frame.started) return;
    const before = item.frame.remainingWireBytes;
    item.frame.rewind();
    lane.queuedBytes += item.frame.remainingWireBytes - before;
  }

  /** Drops the lane's head as too large; the drop notice takes its place unless one is queued. */
  private dropAtHead(lane: Lane, size: number, parent: Buffer | undefined): void {
    if (lane.dropped === 0) this.o.onDrop?.(lane.id, 'frame too large');
    lane.dropped++;
    lane.droppedTotal++;
    lane.droppedBytes += size;
    lane.droppedLarge++;
    lane.lastDroppedParent = parent;
    if (lane.noticeQueued) this.advance(lane);
    else {
      lane.queue[lane.head] = 'notice';
      lane.noticeQueued = true;
    }
  }

  private advance(lane: Lane): void {
    lane.queue[lane.head] = undefined as unknown as QueuedFrame; // release the buffer now
    lane.head++;
    if (lane.head > 1024 && lane.head * 2 > lane.queue.length) {
      lane.queue.splice(0, lane.head);
      lane.head = 0;
    }
  }
}

function sizeOf(f: Buffer | PartedMessage): number {
  return Buffer.isBuffer(f) ? f.length : f.remainingWireBytes;
}
