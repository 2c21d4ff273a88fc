// Jupyter messaging protocol 5.3, the parts every package shares.
// Spec: https://jupyter-client.readthedocs.io/en/stable/messaging.html
import { malformed } from '../errors.ts';
import { arr, isRecord, optStr, record, str } from '../validate.ts';

export const PROTOCOL_VERSION = '5.3';
export const CHANNELS = ['shell', 'iopub', 'stdin', 'control'] as const;
export type Channel = (typeof CHANNELS)[number];

export interface MessageHeader {
  readonly msg_id: string;
  readonly msg_type: string;
  readonly session: string;
  readonly username: string;
  readonly date: string;
  readonly version: string;
  readonly subshell_id?: string | null;
}

export interface JupyterMessage {
  readonly channel: Channel;
  readonly header: MessageHeader;
  /** `{}` when the message answers nothing. */
  readonly parent_header: Partial<MessageHeader>;
  readonly metadata: Record<string, unknown>;
  readonly content: Record<string, unknown>;
  readonly buffers: readonly Uint8Array[];
}

export type ExecutionState = 'starting' | 'idle' | 'busy' | 'restarting' | 'dead' | 'terminating' | 'autorestarting';

export interface MakeMessageOptions {
  readonly channel: Channel;
  readonly msgType: string;
  readonly session: string;
  readonly username?: string;
  readonly content?: Record<string, unknown>;
  readonly metadata?: Record<string, unknown>;
  readonly parent?: Partial<MessageHeader>;
  readonly buffers?: readonly Uint8Array[];
}

export function makeMessage(o: MakeMessageOptions): JupyterMessage {
  return {
    channel: o.channel,
    header: {
      msg_id: globalThis.crypto.randomUUID(),
      msg_type: o.msgType,
      session: o.session,
      username: o.username ?? 'kinesis',
      date: new Date().toISOString(),
      version: PROTOCOL_VERSION,
    },
    parent_header: o.parent ?? {},
    metadata: o.metadata ?? {},
    content: o.content ?? {},
    buffers: o.buffers ?? [],
  };
}

export function isChannel(v: unknown): v is Channel {
  return typeof v === 'string' && (CHANNELS as readonly string[]).includes(v);
}

/** Checks a header from an untrusted peer. Kernels and clients in the wild omit `username`/`date` at times; those default. */
export function validateHeader(v: unknown, field = 'header'): MessageHeader {
  const h = record(v, field);
  const subshell = h['subshell_id'];
  return {
    ...(h as object),
    msg_id: str(h['msg_id'], `${field}.msg_id`, { max: 256, min: 1 }),
    msg_type: str(h['msg_type'], `${field}.msg_type`, { max: 128, min: 1 }),
    session: str(h['session'] ?? '', `${field}.session`, { max: 256 }),
    username: optStr(h['username'], `${field}.username`, { max: 256 }) ?? '',
    date: optStr(h['date'], `${field}.date`, { max: 64 }) ?? '',
    version: optStr(h['version'], `${field}.version`, { max: 16 }) ?? PROTOCOL_VERSION,
    ...(subshell === undefined ? {} : { subshell_id: subshell === null ? null : str(subshell, `${field}.subshell_id`, { max: 256 }) }),
  };
}

/** A parent header is `{}` or a header. */
export function validateParentHeader(v: unknown, field = 'parent_header'): Partial<MessageHeader> {
  if (v === null || v === undefined) return {};
  const r = record(v, field);
  return Object.keys(r).length === 0 ? {} : validateHeader(r, field);
}

export function validateMessage(v: unknown, buffers: readonly Uint8Array[] = []): JupyterMessage {
  const m = record(v, 'message');
  const channel = m['channel'];
  if (!isChannel(channel)) throw malformed('message.channel must be shell, iopub, stdin or control');
  const metadata = m['metadata'] ?? {};
  const content = m['content'] ?? {};
  if (!isRecord(metadata)) throw malformed('message.metadata must be an object');
  if (!isRecord(content)) throw malformed('message.content must be an object');
  if (m['buffers'] !== undefined) arr(m['buffers'], 'message.buffers');
  return {
    channel,
    header: validateHeader(m['header']),
    parent_header: validateParentHeader(m['parent_header']),
    metadata,
    content,
    buffers,
  };
}
