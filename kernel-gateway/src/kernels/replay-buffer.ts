// Bounded FIFO of v1 frames kept for a client that is not connected, replayed when it comes
// back (as Jupyter Server's `start_buffering`/`get_buffer`, but bounded). Oldest frames are
// dropped first; what was dropped is counted so the replay can say so.
import type { MessageHeader } from '@kinesis/protocol';
import type { SentLog } from './sent-log.ts';

export interface DropReport {
  readonly count: number;
  readonly bytes: number;
  /** Parent header of the newest dropped message, so a marker lands in that cell. */
  readonly parent: Partial<MessageHeader>;
}

interface Entry {
  readonly frame: Buffer;
  readonly parent: Partial<MessageHeader>;
}

export class ReplayBuffer {
  #entries: Entry[] = [];
  #head = 0;
  #bytes = 0;
  #droppedCount = 0;
  #droppedBytes = 0;
  #droppedParent: Partial<MessageHeader> = {};
  readonly createdAt = Date.now();

  constructor(
    readonly maxBytes: number,
    /** What the dropped connection had been sent, when its client can resume (sent-log.ts). */
    readonly sentBefore?: SentLog,
  ) {}

  get bytes(): number {
    return this.#bytes;
  }

  get length(): number {
    return this.#entries.length - this.#head;
  }

  get empty(): boolean {
    return this.length === 0 && this.#droppedCount === 0;
  }

  push(frame: Buffer, parent: Partial<MessageHeader>): void {
    if (frame.length > this.maxBytes) {
      this.#drop(frame.length, parent);
      return;
    }
    this.#entries.push({ frame: own(frame), parent });
    this.#bytes += frame.length;
    while (this.#bytes > this.maxBytes) {
      const e = this.#entries[this.#head];
      if (!e) break;
      this.#entries[this.#head++] = undefined as unknown as Entry; // let the frame be collected
      this.#bytes -= e.frame.length;
      this.#drop(e.frame.length, e.parent);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Takes everything out: the frames in order and, if any were dropped, a report. */
  drain(): { frames: Buffer[]; dropped: DropReport | undefined } {
    const frames = this.#entries.slice(this.#head).map((e) => e.frame);
    const dropped = this.#droppedCount > 0 ? { count: this.#droppedCount, bytes: this.#droppedBytes, parent: this.#droppedParent } : undefined;
    this.#entries = [];
    this.#head = 0;
    this.#bytes = 0;
    this.#droppedCount = 0;
    this.#droppedBytes = 0;
    this.#droppedParent = {};
    return { frames, dropped };
  }

  #drop(bytes: number, parent: Partial<MessageHeader>): void {
    this.#droppedCount++;
    this.#droppedBytes += bytes;
    this.#droppedParent = parent;
  }
}

/**
 * A frame from ws may be a view into a larger socket read (64 KiB for a 200-byte message):
 * keeping the view would keep the whole read alive and make the byte bound meaningless.
 * Copy such views; keep frames that own (most of) their memory.
 */
export function own(frame: Buffer): Buffer {
  return frame.buffer.byteLength > frame.length * 2 + 1024 ? Buffer.from(frame) : frame;
}
