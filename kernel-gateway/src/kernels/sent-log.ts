// What the gateway last sent to one client connection, for a client that can say where it
// lost the thread. Jupyter's kernel protocol has no acknowledgements: frames written to a
// socket whose TCP connection then dies are gone, and the gateway cannot know which ones the
// client read. A client that names the last message it did read (the `kinesis_last_msg_id`
// query parameter on the channels URL, docs/protocols.md) gets exactly the frames after it
// again. Only connections that asked for it keep a log (the parameter present, even empty),
// so plain Jupyter clients pay nothing.
import { own } from './replay-buffer.ts';

interface Entry {
  readonly msgId: string;
  readonly frame: Buffer;
}

export class SentLog {
  #entries: Entry[] = [];
  #head = 0;
  #bytes = 0;

  constructor(
    readonly maxFrames: number,
    readonly maxBytes: number,
  ) {}

  push(msgId: string, frame: Buffer): void {
    if (frame.length > this.maxBytes) {
      this.clear();
      return;
    }
    this.#entries.push({ msgId, frame: own(frame) });
    this.#bytes += frame.length;
    while (this.length > this.maxFrames || this.#bytes > this.maxBytes) {
      const e = this.#entries[this.#head];
      if (!e) break;
      this.#entries[this.#head++] = undefined as unknown as Entry;
      this.#bytes -= e.frame.length;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Forgets everything (a message too big to keep went out): a resume across it must not skip it silently. */
  clear(): void {
    this.#entries = [];
    this.#head = 0;
    this.#bytes = 0;
  }

  get length(): number {
    return this.#entries.length - this.#head;
  }

  /**
   * The frames sent after the one with `msgId`, in order; all of them for '' (the client read
   * nothing); undefined when `msgId` is not in the log (older than what it keeps, or never
   * sent on this connection): then the client cannot be told exactly what it missed.
   */
  after(msgId: string): Buffer[] | undefined {
    const live = this.#entries.slice(this.#head);
    if (msgId === '') return live.map((e) => e.frame);
    for (let i = live.length - 1; i >= 0; i--) if (live[i]!.msgId === msgId) return live.slice(i + 1).map((e) => e.frame);
    return undefined;
  }
}
