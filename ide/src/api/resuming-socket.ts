// A WebSocket for @jupyterlab/services that resumes a kernel connection exactly where it
// broke. Jupyter's kernel protocol has no acknowledgements: when Wi-Fi drops, what the
// gateway had already written to the dead connection is lost, and a plain client shows a
// cell's output with a hole in it. The gateway's Kinesis extension (docs/protocols.md,
// "Resuming a dropped connection") resends what followed the last message the client read,
// if the channels URL says which: `kinesis_last_msg_id` (empty on a first connection, which
// asks the gateway to keep a log). KernelConnection reconnects with the same URL
// (same kernel, same session_id), so this class only has to remember, per kernel and
// session, the msg_id of the last message that arrived, and add it to the URL.

const CHANNELS = /\/api\/kernels\/[^/]+\/channels$/;
const dec = new TextDecoder();

/** The header's msg_id of one kernel message as the gateway frames it (v1 binary or legacy JSON text). */
export function messageId(data: unknown): string | undefined {
  if (typeof data === 'string') {
    // Legacy framing: the header object is flat, so its msg_id is the first one inside it.
    return /"header"\s*:\s*\{[^{}]*?"msg_id"\s*:\s*"([^"\\]{1,256})"/.exec(data)?.[1];
  }
  if (!(data instanceof ArrayBuffer)) return undefined;
  // v1.kernel.websocket.jupyter.org: u64le k, k × u64le offsets; offsets[1]..offsets[2] is the header.
  if (data.byteLength < 32) return undefined;
  const v = new DataView(data);
  const k = Number(v.getBigUint64(0, true));
  if (k < 3 || 8 * (k + 1) > data.byteLength) return undefined;
  const start = Number(v.getBigUint64(16, true));
  const end = Number(v.getBigUint64(24, true));
  if (!(start <= end && end <= data.byteLength && end - start <= 65536)) return undefined;
  try {
    const h = JSON.parse(dec.decode(new Uint8Array(data, start, end - start))) as { msg_id?: unknown };
    return typeof h.msg_id === 'string' && h.msg_id.length <= 256 ? h.msg_id : undefined;
  } catch {
    return undefined;
  }
}

/** A WebSocket class (for ServerConnection settings) that resumes kernel channels connections. */
export function resumingWebSocket(Base: typeof WebSocket = WebSocket): typeof WebSocket {
  const lastRead = new Map<string, string>();
  class ResumingWebSocket extends Base {
    constructor(url: string | URL, protocols?: string | string[]) {
      const u = new URL(String(url));
      const session = u.searchParams.get('session_id');
      const key = CHANNELS.test(u.pathname) && session ? `${u.pathname} ${session}` : undefined;
      if (key !== undefined) u.searchParams.set('kinesis_last_msg_id', lastRead.get(key) ?? '');
      super(key === undefined ? url : u.toString(), protocols);
      if (key !== undefined) {
        // Registered before KernelConnection sets onmessage, so it sees each message first.
        this.addEventListener('message', (ev: MessageEvent) => {
          const id = messageId(ev.data);
          if (id === undefined) return;
          if (lastRead.size >= 256 && !lastRead.has(key)) lastRead.clear(); // kernels come and go
          lastRead.set(key, id);
        });
      }
    }
  }
  return ResumingWebSocket;
}
