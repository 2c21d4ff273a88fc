// The baseline: talk ZMQ straight to an ipykernel (the same Debian kernel the provider
// runs), with the provider's own wire code, no gateway and no tunnel in between.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeMessage } from '@kinesis/protocol';
import { newConnectionInfo, writeConnectionFile } from '../../provider-kernel/src/connection.ts';
import { silentLogger } from '../../provider-kernel/src/logger.ts';
import { fromZmqFrames, peekHeader, toZmqFrames } from '../../provider-kernel/src/wire.ts';
import { KernelChannels } from '../../provider-kernel/src/zmq-channels.ts';

export interface DirectKernel {
  execute(code: string): Promise<{ ms: number; streamBytes: number }>;
  stop(): Promise<void>;
}

export async function startDirectKernel(argv: readonly string[] = ['/usr/bin/python3', '-m', 'ipykernel_launcher', '-f', '{connection_file}']): Promise<DirectKernel> {
  const dir = mkdtempSync(join(tmpdir(), 'kinesis-direct-'));
  const info = await newConnectionInfo('python3');
  const file = await writeConnectionFile(dir, 'direct', info);
  const proc: ChildProcess = spawn(argv[0]!, argv.slice(1).map((a) => a.replace('{connection_file}', file)), { stdio: 'ignore' });
  const key = Buffer.from(info.key, 'latin1');
  const session = crypto.randomUUID();
  const waiters = new Map<string, { reply: boolean; idle: boolean; stream: number; t0: number; done: (r: { ms: number; streamBytes: number }) => void }>();
  const channels = new KernelChannels(
    info,
    (channel, frames) => {
      const p = fromZmqFrames(key, frames);
      const parent = peekHeader(p.parent);
      const w = parent ? waiters.get(parent.msgId) : undefined;
      if (!w || !parent) return;
      const h = peekHeader(p.header);
      if (h?.msgType === 'stream') w.stream += String((JSON.parse(p.content.toString()) as { text?: string }).text ?? '').length;
      if (channel === 'shell') w.reply = true;
      if (h?.msgType === 'status' && p.content.includes('"idle"')) w.idle = true;
      if (w.reply && w.idle) {
        waiters.delete(parent.msgId);
        w.done({ ms: performance.now() - w.t0, streamBytes: w.stream });
      }
    },
    silentLogger,
  );
  const request = (msgType: string, content: Record<string, unknown>): Promise<{ ms: number; streamBytes: number }> => {
    const m = makeMessage({ channel: 'shell', msgType, session, content });
    const parts = [m.header, m.parent_header, m.metadata, m.content].map((x) => Buffer.from(JSON.stringify(x)));
    return new Promise((done) => {
      waiters.set(m.header.msg_id, { reply: false, idle: false, stream: 0, t0: performance.now(), done });
      void channels.send('shell', toZmqFrames(key, { header: parts[0]!, parent: parts[1]!, metadata: parts[2]!, content: parts[3]!, buffers: [] }));
    });
  };
  // Ready once a kernel_info round trip completes on shell AND iopub: a SUB socket misses
  // what is published before its subscription reaches the kernel, so ask until both arrive.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await Promise.race([request('kernel_info_request', {}).then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 1000))]);
    if (ok) break;
    if (Date.now() > deadline) throw new Error('direct kernel did not start');
  }
  return {
    execute: (code) => request('execute_request', { code, silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true }),
    async stop() {
      channels.close();
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r(undefined) : proc.once('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
