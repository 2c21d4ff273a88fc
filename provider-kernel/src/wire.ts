// The Jupyter ZMQ wire protocol, and its conversion to and from the v1 WebSocket framing
// that the tunnel carries.
// Spec: https://jupyter-client.readthedocs.io/en/stable/messaging.html#the-wire-protocol
//
//   [routing ids / iopub topic ...] b'<IDS|MSG>' signature header parent_header metadata content [buffers ...]
//
// signature = hex HMAC-SHA256(key, header ‖ parent_header ‖ metadata ‖ content). Parts travel
// as the raw JSON bytes the sender wrote: we never re-serialize a message we only relay, so
// the kernel's bytes reach the client unchanged and the signature covers exactly them.
import { createHmac, timingSafeEqual, type Hmac } from 'node:crypto';
import { isRecord } from '@kinesis/protocol/validate';
import { validateHeader, type Channel } from '@kinesis/protocol/jupyter/messages';
import { splitV1 } from '@kinesis/protocol/jupyter/ws-framing';
import { errorText, KernelError } from './errors.ts';

export const DELIMITER = Buffer.from('<IDS|MSG>', 'latin1');
const MAX_BUFFERS = 1024;

/** The four JSON parts and the binary buffers of one message, as byte views. */
export interface WireParts {
  readonly header: Buffer;
  readonly parent: Buffer;
  readonly metadata: Buffer;
  readonly content: Buffer;
  readonly buffers: readonly Buffer[];
}

export function sign(key: Buffer, header: Uint8Array, parent: Uint8Array, metadata: Uint8Array, content: Uint8Array): string {
  if (key.length === 0) return ''; // Jupyter: an empty key disables signing
  return hmacOfHead(key, header, parent, metadata).update(content).digest('hex');
}

/** The message HMAC after the three parts before the content (sign, DeferredSignature). */
function hmacOfHead(key: Buffer, header: Uint8Array, parent: Uint8Array, metadata: Uint8Array): Hmac {
  return createHmac('sha256', key).update(header).update(parent).update(metadata);
}

/** Frames to send on a DEALER socket (the kernel's ROUTER adds our routing id). */
export function toZmqFrames(key: Buffer, p: WireParts): Buffer[] {
  return [DELIMITER, Buffer.from(sign(key, p.header, p.parent, p.metadata, p.content), 'latin1'), p.header, p.parent, p.metadata, p.content, ...p.buffers];
}

/** A kernel message's parts and the signature it came with, not yet checked. */
export interface SignedParts {
  readonly parts: WireParts;
  readonly signature: Buffer;
}

/**
 * Splits frames received from a kernel into their parts, checking their structure only.
 * Throws KernelError for a malformed message (the caller drops and logs it).
 */
export function splitZmqFrames(frames: readonly Buffer[]): SignedParts {
  const d = delimiterIndex(frames);
  if (d < 0) throw new KernelError('kernel message has no <IDS|MSG> delimiter');
  if (frames.length < d + 6) throw new KernelError('kernel message has fewer than four JSON parts');
  if (frames.length - d - 6 > MAX_BUFFERS) throw new KernelError('kernel message has too many buffers');
  const [header, parent, metadata, content] = frames.slice(d + 2, d + 6) as [Buffer, Buffer, Buffer, Buffer];
  return { parts: { header, parent, metadata, content, buffers: frames.slice(d + 6) }, signature: frames[d + 1] as Buffer };
}

/** Where `<IDS|MSG>` is among a kernel message's first 64 frames (routing ids before it); -1: nowhere. */
export function delimiterIndex(frames: readonly Buffer[]): number {
  for (let i = 0; i < frames.length && i < 64; i++) if ((frames[i] as Buffer).equals(DELIMITER)) return i;
  return -1;
}

/** Constant-time check of a message's signature (an empty key: Jupyter's signing is off). */
export function signatureMatches(key: Buffer, m: SignedParts): boolean {
  if (key.length === 0) return true;
  const p = m.parts;
  return digestMatches(Buffer.from(sign(key, p.header, p.parent, p.metadata, p.content), 'latin1'), m.signature);
}

function digestMatches(want: Buffer, got: Buffer): boolean {
  return got.length === want.length && timingSafeEqual(got, want);
}

/**
 * Parses frames received from a kernel and verifies their signature in constant time.
 * Throws KernelError for a malformed message or a bad signature (the caller drops and logs it).
 */
export function fromZmqFrames(key: Buffer, frames: readonly Buffer[]): WireParts {
  const m = splitZmqFrames(frames);
  if (!signatureMatches(key, m)) throw new KernelError('kernel message has a bad HMAC signature');
  return m.parts;
}

/**
 * A message's signature left to be checked after the message was handed on: large output
 * starts crossing the tunnel while it is checked, and its last part waits for the verdict
 * (docs/protocols.md, "Large output in parts").
 */
export class DeferredSignature {
  constructor(
    private readonly key: Buffer,
    private readonly m: SignedParts,
  ) {}

  /** The verdict, all at once. */
  now(): boolean {
    return signatureMatches(this.key, this.m);
  }

  /**
   * The verdict to `done`, hashing `step` bytes of content per event-loop turn (the first at
   * once). Between steps the event loop hands the parts already sent on to the socket, so the
   * gateway and its clients work on them while the rest is hashed. Once `waiting()` says
   * nothing else is left to do but wait for the verdict, the rest is hashed in one go.
   */
  inSteps(step: number, done: (ok: boolean) => void, waiting: () => boolean = () => false): void {
    if (!Number.isSafeInteger(step) || step < 1) throw new RangeError(`step must be a positive integer, not ${step}`);
    if (this.key.length === 0) {
      done(true);
      return;
    }
    const p = this.m.parts;
    const h = hmacOfHead(this.key, p.header, p.parent, p.metadata);
    const go = (at: number): void => {
      const end = waiting() ? p.content.length : at + step;
      h.update(p.content.subarray(at, end));
      if (end < p.content.length) setImmediate(go, end);
      else done(digestMatches(Buffer.from(h.digest('hex'), 'latin1'), this.m.signature));
    };
    go(0);
  }
}

/**
 * The content of a large iopub message that is still arriving from the kernel (zmtp-sub.ts
 * writes it into `buffer`), hashed as it comes: the message is handed on, and its first
 * parts cross the tunnel, while the kernel is still sending the rest. Like DeferredSignature,
 * the verdict comes once all of it is in; a message cut off (its connection broke, the kernel
 * was restarted) fails.
 */
export class ArrivingContent {
  readonly buffer: Buffer;
  #filled = 0;
  #hmac: Hmac | undefined;
  #verdict: boolean | undefined;
  #reason = '';
  #onProgress: ((filled: number) => void) | undefined;
  #onVerdict: ((ok: boolean, reason: string) => void) | undefined;

  constructor(
    key: Buffer,
    head: { readonly header: Uint8Array; readonly parent: Uint8Array; readonly metadata: Uint8Array },
    private readonly signature: Buffer,
    size: number,
  ) {
    this.buffer = Buffer.allocUnsafe(size);
    if (key.length > 0) this.#hmac = hmacOfHead(key, head.header, head.parent, head.metadata);
  }

  /** Bytes of `buffer` in so far. */
  get filled(): number {
    return this.#filled;
  }

  /** true or false once all of it is in (or it was cut off); undefined until then. */
  get verdict(): boolean | undefined {
    return this.#verdict;
  }

  /** The reader: bytes 0..filled are in. */
  progress(filled: number): void {
    if (this.#verdict !== undefined || filled <= this.#filled) return;
    this.#hmac?.update(this.buffer.subarray(this.#filled, filled));
    this.#filled = filled;
    if (filled < this.buffer.length) {
      this.#onProgress?.(filled);
      return;
    }
    const ok = this.#hmac === undefined || digestMatches(Buffer.from(this.#hmac.digest('hex'), 'latin1'), this.signature);
    this.#decide(ok, ok ? '' : 'kernel message has a bad HMAC signature (found while it was being sent)');
  }

  /** The reader: the rest will not come. */
  abort(reason: string): void {
    if (this.#verdict === undefined) this.#decide(false, reason);
  }

  /** Whoever sends the message on: told of each step, and of the verdict (at once if known). */
  listen(onProgress: (filled: number) => void, onVerdict: (ok: boolean, reason: string) => void): void {
    if (this.#verdict !== undefined) return onVerdict(this.#verdict, this.#reason);
    this.#onProgress = onProgress;
    this.#onVerdict = onVerdict;
  }

  #decide(ok: boolean, reason: string): void {
    this.#verdict = ok;
    this.#reason = reason;
    this.#hmac = undefined;
    const cb = this.#onVerdict;
    this.#onProgress = this.#onVerdict = undefined;
    cb?.(ok, reason);
  }
}

/** The fields of a header we route on; everything else stays bytes. */
export interface HeaderPeek {
  readonly msgId: string;
  readonly msgType: string;
  readonly session: string;
  /** The header's `date` when it is a string (the sender's clock; unchecked). */
  readonly date: string | undefined;
}

const dec = new TextDecoder('utf-8', { fatal: true });

export function peekHeader(bytes: Uint8Array): HeaderPeek | undefined {
  let v: unknown;
  try {
    v = JSON.parse(dec.decode(bytes));
  } catch {
    return undefined;
  }
  if (!isRecord(v)) return undefined;
  const msgId = v['msg_id'];
  const msgType = v['msg_type'];
  const session = v['session'];
  const date = v['date'];
  if (typeof msgId !== 'string' || typeof msgType !== 'string') return undefined;
  return { msgId, msgType, session: typeof session === 'string' ? session : '', date: typeof date === 'string' ? date : undefined };
}

/** `true` when bytes are UTF-8 JSON for an object (metadata and content must be). */
export function isJsonObject(bytes: Uint8Array): boolean {
  try {
    return isRecord(JSON.parse(dec.decode(bytes)));
  } catch {
    return false;
  }
}

/** Bytes of a message's parts and buffers together. */
export function wireLength(p: WireParts): number {
  let n = p.header.length + p.parent.length + p.metadata.length + p.content.length;
  for (const b of p.buffers) n += b.byteLength;
  return n;
}

/** busy/idle of an iopub status message's content (the first bytes are enough). */
export function executionState(content: Buffer): string | undefined {
  return /"execution_state"\s*:\s*"(busy|idle)"/.exec(content.toString('utf8', 0, Math.min(content.length, 256)))?.[1];
}

/**
 * A client's message for a kernel, from a tunnel KERNEL frame's v1 payload: checked before
 * it goes to the kernel (a valid header; parent_header, metadata and content JSON objects; not
 * on iopub, which only kernels send on). Throws KernelError saying what is wrong.
 */
export function clientMessage(payload: Uint8Array): { channel: Exclude<Channel, 'iopub'>; parts: WireParts } {
  let channel: Channel;
  let p: Buffer[];
  try {
    ({ channel, parts: p } = splitV1(payload));
  } catch (e) {
    throw new KernelError(errorText(e));
  }
  if (channel === 'iopub') throw new KernelError('clients cannot send on iopub');
  const [header, parent, metadata, content, ...buffers] = p;
  if (!header || !parent || !metadata || !content) throw new KernelError('message lacks a JSON part');
  try {
    validateHeader(JSON.parse(header.toString('utf8')));
  } catch (e) {
    throw new KernelError(`bad header: ${errorText(e)}`);
  }
  if (!isJsonObject(parent) || !isJsonObject(metadata) || !isJsonObject(content)) throw new KernelError('parent_header, metadata and content must be JSON objects');
  return { channel, parts: { header, parent, metadata, content, buffers } };
}
