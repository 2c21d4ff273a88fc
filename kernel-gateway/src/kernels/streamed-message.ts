// An iopub message arriving from the provider in parts (tunnel KERNEL PART frames,
// docs/protocols.md): streamed to the v1 clients that can take it as it arrives, and kept
// (referenced, not copied) for whoever needs the whole frame once it is complete: legacy
// clients, clients that attached meanwhile, replay buffers, resume logs. The kernel decides
// who that is (client-router.ts); this holds the bytes and the streamed clients.
import { peekV1Head, type V1Peek } from '@kinesis/protocol';
import type { Pieces } from '../providers/tunnel-socket.ts';
import type { ClientConnection } from './client.ts';
import type { KernelPart } from './kernel.ts';

export interface StreamEnd {
  /** Streamed clients that got the frame whole and are still connected. */
  readonly done: ReadonlySet<ClientConnection>;
  /** What was routed to a streamed client mid-frame and never sent, because it closed on the way. */
  readonly unsent: ReadonlyArray<readonly [ClientConnection, Buffer]>;
}

/** How much of a first part is joined (when its first piece is shorter) to read the message's head from. */
const HEAD_BYTES = 64 * 1024;

/**
 * Reads a message's head (offset table, channel, header, parent header) from its first part,
 * joining the part's pieces only as far as needed: the first 64 KiB, or all of the part for a
 * head longer than that.
 */
export function peekPart(part: KernelPart, maxBytes: number): V1Peek {
  const first = part.pieces[0] ?? Buffer.alloc(0);
  const n = Math.min(part.length, HEAD_BYTES);
  const head = first.length >= n ? first : Buffer.concat(part.pieces, n);
  try {
    return peekV1Head(head, part.total, { maxBytes });
  } catch (err) {
    if (head.length >= part.length) throw err;
    return peekV1Head(Buffer.concat(part.pieces, part.length), part.total, { maxBytes });
  }
}

export class StreamedMessage {
  #received: number;
  readonly #parts: Buffer[];
  readonly #streamed: ClientConnection[] = [];
  #whole: Buffer | undefined;

  /** Starts the frame on every client in `clients` that can take it streamed. */
  constructor(
    readonly peek: V1Peek,
    readonly total: number,
    first: Pieces,
    firstLength: number,
    clients: Iterable<ClientConnection>,
  ) {
    this.#received = firstLength;
    this.#parts = [...first];
    for (const c of clients) {
      if (!c.canStream) continue;
      c.beginStream(total, first);
      this.#streamed.push(c);
    }
  }

  get received(): number {
    return this.#received;
  }

  get complete(): boolean {
    return this.#received >= this.total;
  }

  /** The next part, `length` bytes in its pieces (the link has checked that it continues this message). */
  add(pieces: Pieces, length: number): void {
    this.#received += length;
    for (const p of pieces) this.#parts.push(p);
    for (const c of this.#streamed) c.streamBytes(pieces);
  }

  /** The whole v1 frame, joined once, on first need. */
  whole(): Buffer {
    return (this.#whole ??= this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.total));
  }

  /** The last part is in: ends the frame on every streamed client. */
  finish(): StreamEnd {
    const done = new Set<ClientConnection>();
    const unsent: [ClientConnection, Buffer][] = [];
    for (const c of this.#streamed) {
      if (!c.streaming) continue; // aborted on the way
      // Open before endStream: a close the client asked for mid-frame is answered there,
      // after the frame went out whole.
      const wasOpen = c.open;
      const waited = c.endStream(this.peek.header.msg_id, this.total, () => this.whole());
      if (wasOpen) done.add(c);
      else for (const f of waited) unsent.push([c, f]);
    }
    return { done, unsent };
  }

  /** The rest will never come: cuts the streamed clients off (their frame cannot be completed). Returns how many. */
  abort(): number {
    for (const c of this.#streamed) c.abortStream();
    return this.#streamed.length;
  }
}
