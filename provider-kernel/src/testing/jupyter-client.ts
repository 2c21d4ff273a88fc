// Test helpers: a few Jupyter requests sent through the tunnel test peer.
import { makeMessage, type JupyterMessage } from '@kinesis/protocol/jupyter/messages';
import type { TunnelTestPeer } from './tunnel-peer.ts';

export const SESSION = 'test-client-session';

export function executeRequest(code: string, extra: Record<string, unknown> = {}): JupyterMessage {
  return makeMessage({
    channel: 'shell',
    msgType: 'execute_request',
    session: SESSION,
    content: { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true, ...extra },
  });
}

export interface ExecResult {
  readonly reply: JupyterMessage;
  readonly iopub: JupyterMessage[];
  readonly stdout: string;
}

/** Sends an execute_request and waits for its execute_reply and the iopub idle that ends it. */
export async function execute(peer: TunnelTestPeer, kernelId: string, code: string, timeoutMs = 20_000): Promise<ExecResult> {
  const req = executeRequest(code);
  peer.sendKernel(kernelId, req);
  return collect(peer, kernelId, req.header.msg_id, timeoutMs);
}

export async function collect(peer: TunnelTestPeer, kernelId: string, msgId: string, timeoutMs = 20_000): Promise<ExecResult> {
  const done = await peer.until(
    () => {
      const msgs = peer.replies_(kernelId, msgId);
      const reply = msgs.find((m) => m.channel === 'shell');
      const idle = msgs.some((m) => m.header.msg_type === 'status' && m.content['execution_state'] === 'idle');
      return reply && idle ? { reply, msgs } : undefined;
    },
    timeoutMs,
    `reply to ${msgId}`,
  );
  const iopub = done.msgs.filter((m) => m.channel === 'iopub');
  const stdout = iopub
    .filter((m) => m.header.msg_type === 'stream' && m.content['name'] === 'stdout')
    .map((m) => String(m.content['text']))
    .join('');
  return { reply: done.reply, iopub, stdout };
}

export function resultText(r: ExecResult): string | undefined {
  const res = r.iopub.find((m) => m.header.msg_type === 'execute_result');
  return (res?.content['data'] as Record<string, unknown> | undefined)?.['text/plain'] as string | undefined;
}
