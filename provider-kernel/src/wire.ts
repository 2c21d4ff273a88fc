// The Jupyter ZMQ wire protocol, and its conversion to and from the v1 WebSocket framing
// that the tunnel carries.
// Spec: https://jupyter-client.readthedocs.io/en/stable/messaging.html#the-wire-protocol
//
//   [routing ids / iopub topic ...] b'<IDS|MSG>' signature header parent_header metadata content [buffers ...]
//
// signature = hex HMAC-SHA256(key, header ‖ parent_header ‖ metadata ‖ content). Parts travel
// as the raw JSON bytes the sender wrote: we never re-serialize a message we only relay, so
// the kernel's bytes reach the client unchanged and the signature covers exactly them.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { isRecord } from '@kinesis/protocol/validate';
import { KernelError } from './errors.ts';

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
  const h = createHmac('sha256', key);
  h.update(header);
  h.update(parent);
  h.update(metadata);
  h.update(content);
  return h.digest('hex');
}

/** Frames to send on a DEALER socket (the kernel's ROUTER adds our routing id). */
export function toZmqFrames(key: Buffer, p: WireParts): Buffer[] {
  return [DELIMITER, Buffer.from(sign(key, p.header, p.parent, p.metadata, p.content), 'latin1'), p.header, p.parent, p.metadata, p.content, ...p.buffers];
}

/**
 * Parses frames received from a kernel and verifies their signature in constant time.
 * Throws KernelError for a malformed message or a bad signature (the caller drops and logs it).
 */
export function fromZmqFrames(key: Buffer, frames: readonly Buffer[]): WireParts {
  let d = -1;
  for (let i = 0; i < frames.length && i < 64; i++) {
    if ((frames[i] as Buffer).equals(DELIMITER)) {
      d = i;
      break;
    }
  }
  if (d < 0) throw new KernelError('kernel message has no <IDS|MSG> delimiter');
  if (frames.length < d + 6) throw new KernelError('kernel message has fewer than four JSON parts');
  if (frames.length - d - 6 > MAX_BUFFERS) throw new KernelError('kernel message has too many buffers');
  const sig = frames[d + 1] as Buffer;
  const [header, parent, metadata, content] = frames.slice(d + 2, d + 6) as [Buffer, Buffer, Buffer, Buffer];
  if (key.length > 0) {
    const want = Buffer.from(sign(key, header, parent, metadata, content), 'latin1');
    if (sig.length !== want.length || !timingSafeEqual(sig, want)) throw new KernelError('kernel message has a bad HMAC signature');
  }
  return { header, parent, metadata, content, buffers: frames.slice(d + 6) };
}

/** The fields of a header we route on; everything else stays bytes. */
export interface HeaderPeek {
  readonly msgId: string;
  readonly msgType: string;
  readonly session: string;
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
  if (typeof msgId !== 'string' || typeof msgType !== 'string') return undefined;
  return { msgId, msgType, session: typeof session === 'string' ? session : '' };
}

/** `true` when bytes are UTF-8 JSON for an object (metadata and content must be). */
export function isJsonObject(bytes: Uint8Array): boolean {
  try {
    return isRecord(JSON.parse(dec.decode(bytes)));
  } catch {
    return false;
  }
}
