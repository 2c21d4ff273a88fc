// How a Kernel authenticates its iopub (kernel.ts, 'peer' mode) when the lookup's verdict
// comes late: a verdict for a connection or a kernel process that has since been replaced
// must change nothing. The lookup is injected here to control its timing; the kernel is a
// real ipykernel (/usr/bin/python3, Debian python3-ipykernel).
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeMessage } from '@kinesis/protocol';
import { Kernel } from './kernel.ts';
import { loadKernelSpec } from './kernelspecs.ts';
import { silentLogger } from './logger.ts';
import type { PeerVerdict, TcpEnds } from './peer-check.ts';
import { MIXED_SIGNATURES } from './testing/away-kernels.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});


async function kernelWith(verifyPeer: (ends: TcpEnds, pid: number) => Promise<PeerVerdict>): Promise<{ kernel: Kernel; run: (code: string) => Promise<string> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kinesis-kauth-'));
  const spec = await loadKernelSpec('/usr/share/jupyter/kernels/python3', 'python3', process.env['PATH'] ?? '');
  const waiting = new Map<string, { out: string; done: (out: string) => void }>();
  const kernel = new Kernel({
    kernelId: crypto.randomUUID(),
    spec,
    clientEnv: {},
    dataDir: dir,
    logger: silentLogger,
    verifyPeer,
    hooks: {
      onMessage: (_k, channel, parts, header, parent, unchecked) => {
        const w = parent ? waiting.get(parent.msgId) : undefined;
        if (!w || (unchecked && !('now' in unchecked && unchecked.now()))) return;
        const content = JSON.parse(parts.content.toString('utf8')) as Record<string, unknown>;
        if (header.msgType === 'stream') w.out += String(content['text']);
        if (channel === 'iopub' && header.msgType === 'status' && content['execution_state'] === 'idle') w.done(w.out);
      },
      onStatus: () => undefined,
    },
  });
  cleanups.push(async () => {
    await kernel.shutdown();
    await fs.rm(dir, { recursive: true, force: true });
  });
  await kernel.start();
  const run = (code: string): Promise<string> => {
    const m = makeMessage({ channel: 'shell', msgType: 'execute_request', session: 'test', content: { code, silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true } });
    return new Promise((resolve) => {
      waiting.set(m.header.msg_id, { out: '', done: resolve });
      kernel.sendFromClient('shell', { header: Buffer.from(JSON.stringify(m.header)), parent: Buffer.from('{}'), metadata: Buffer.from('{}'), content: Buffer.from(JSON.stringify(m.content)), buffers: [] });
    });
  };
  return { kernel, run };
}

describe.runIf(process.platform === 'linux')('a kernel\'s iopub verdict', () => {
  it('applies to the connection it was asked for: said yes, the kernel\'s own mis-signed message is delivered', async () => {
    const { run } = await kernelWith(async () => ({ ok: true, pid: 1 }));
    expect(await run(MIXED_SIGNATURES)).toBe('signed with another key\nsigned right\n');
  }, 30_000);

  it('said no, or not yet said, every message is checked', async () => {
    const { run } = await kernelWith(async () => ({ ok: false, reason: 'test' }));
    expect(await run(MIXED_SIGNATURES)).toBe('signed right\n');
    const never = await kernelWith(() => new Promise<PeerVerdict>(() => undefined));
    expect(await never.run(MIXED_SIGNATURES)).toBe('signed right\n');
  }, 30_000);

  it('a yes that comes after the kernel was restarted changes nothing for the new process', async () => {
    const verdicts: Array<(v: PeerVerdict) => void> = [];
    const { kernel, run } = await kernelWith(() => new Promise<PeerVerdict>((resolve) => verdicts.push(resolve)));
    expect(verdicts.length).toBe(1);
    await kernel.restart();
    expect(verdicts.length).toBe(2);
    verdicts[0]!({ ok: true, pid: 1 }); // the first process's connection: stale
    await new Promise((r) => setTimeout(r, 50));
    expect(await run(MIXED_SIGNATURES)).toBe('signed right\n');
    verdicts[1]!({ ok: true, pid: 1 }); // the current one
    await new Promise((r) => setTimeout(r, 50));
    expect(await run(MIXED_SIGNATURES)).toBe('signed with another key\nsigned right\n');
  }, 60_000);
});
