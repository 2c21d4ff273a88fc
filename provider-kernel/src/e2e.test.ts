// End to end: the real gateway (kernel-gateway's startGateway), this provider, and a real
// ipykernel, driven by @jupyterlab/services 7 from Node as a Jupyter client would.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KernelManager, ServerConnection, KernelSpecAPI, type Kernel } from '@jupyterlab/services';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, silentLogger as gatewayLogger, type RunningGateway } from '@kinesis/kernel-gateway';
import { startProvider, type RunningProvider } from './index.ts';
import { silentLogger } from './logger.ts';

const TOKEN = 'e2e-token-0123456789';
let dir: string;
let gateway: RunningGateway;
let provider: RunningProvider;
let settings: ServerConnection.ISettings;
let manager: KernelManager;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kinesis-e2e-'));
  gateway = await startGateway({ port: 0, token: TOKEN, dataDir: path.join(dir, 'gateway'), logger: gatewayLogger });
  provider = await startProvider({ gatewayUrl: gateway.url, dataDir: path.join(dir, 'provider'), kernelspecDirs: ['/usr/share/jupyter/kernels'], logger: silentLogger, waitForConnection: true });
  settings = ServerConnection.makeSettings({ baseUrl: `${gateway.url}/`, wsUrl: gateway.url.replace(/^http/, 'ws') + '/', token: TOKEN, WebSocket: WebSocket as unknown as typeof globalThis.WebSocket, appendToken: true });
  manager = new KernelManager({ serverSettings: settings });
  await manager.ready;
});

afterAll(async () => {
  manager?.dispose();
  await provider?.close();
  await gateway?.close();
  await fs.rm(dir, { recursive: true, force: true });
});

async function run(kernel: Kernel.IKernelConnection, code: string): Promise<{ reply: string; out: string; result: string | undefined }> {
  let out = '';
  let result: string | undefined;
  const future = kernel.requestExecute({ code });
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === 'stream') out += (msg.content as { text: string }).text;
    if (msg.header.msg_type === 'execute_result') result = (msg.content as { data: Record<string, string> }).data['text/plain'];
  };
  const reply = await future.done;
  return { reply: reply.content.status, out, result };
}

describe('gateway + provider + ipykernel', () => {
  it('lists the provider and its kernelspec; runs, interrupts, restarts and shuts down a kernel', async () => {
    const res = await fetch(`${gateway.url}/api/providers`, { headers: { Authorization: `token ${TOKEN}` } });
    const providers = (await res.json()) as Array<{ id: string }> | { providers: Array<{ id: string }> };
    const list = Array.isArray(providers) ? providers : providers.providers;
    expect(list.map((p) => p.id.toLowerCase())).toContain(provider.address.toLowerCase());
    const specs = await KernelSpecAPI.getSpecs(settings);
    expect(specs.default && specs.kernelspecs[specs.default]).toBeTruthy();

    const kernel = manager.connectTo({ model: await manager.startNew({ name: specs.default }) });
    try {
      expect(await run(kernel, '1+1')).toMatchObject({ reply: 'ok', result: '2' });
      expect((await run(kernel, 'print("hi from the provider")')).out).toBe('hi from the provider\n');

      const sleeping = kernel.requestExecute({ code: 'import time; time.sleep(60)' });
      await new Promise((r) => setTimeout(r, 1000));
      await kernel.interrupt();
      const r = await sleeping.done.catch((e: { content?: { ename?: string } }) => ({ content: e.content }));
      expect((r.content as { ename?: string }).ename).toBe('KeyboardInterrupt');

      await run(kernel, 'x = 5');
      await kernel.restart();
      expect((await run(kernel, 'x')).reply).toBe('error');
      expect((await run(kernel, '6*7')).result).toBe('42');
    } finally {
      await kernel.shutdown();
    }
    expect(provider.provider.kernelStates()).toEqual([]);
  });

  it('delivers large output exactly, whichever reads iopub: our ZMTP reader (streamed while it arrives) or libzmq', async () => {
    const other = await startProvider({ gatewayUrl: gateway.url, dataDir: path.join(dir, 'provider-libzmq'), name: 'libzmq', iopubReader: 'libzmq', kernelspecDirs: ['/usr/share/jupyter/kernels'], logger: silentLogger, waitForConnection: true });
    // A third provider whose reader skips output with a part over 2 MiB: the user sees a notice instead.
    const small = await startProvider({ gatewayUrl: gateway.url, dataDir: path.join(dir, 'provider-small'), name: 'small', maxIopubFrameBytes: 2 * 1024 * 1024, kernelspecDirs: ['/usr/share/jupyter/kernels'], logger: silentLogger, waitForConnection: true });
    try {
      const specs = await KernelSpecAPI.getSpecs(settings);
      // 3.2 MB in one stream message (one write), then 1+1: content, order and reply intact.
      const code = "import hashlib, sys\ns = ''.join(hashlib.sha256(str(i).encode()).hexdigest() + '\\n' for i in range(50_000))\nsys.stdout.write(s)\nsys.stdout.flush()\nhashlib.md5(s.encode()).hexdigest()";
      for (const p of [provider, other, small]) {
        const res = await fetch(`${gateway.url}/api/kernels`, { method: 'POST', headers: { Authorization: `token ${TOKEN}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ name: specs!.default, kinesis: { provider: p.address } }) });
        expect(res.status).toBe(201);
        const kernel = manager.connectTo({ model: (await res.json()) as Kernel.IModel });
        try {
          const big = await run(kernel, code);
          expect(big.reply).toBe('ok');
          if (p === small) {
            const notice = /^\n\[kinesis\] 1 output message\(s\), (\d+) bytes, were dropped/.exec(big.out);
            expect(Number(notice?.[1]), big.out.slice(0, 300)).toBeGreaterThan(3_250_000); // the content frame, JSON-escaped
            expect(big.out).toContain(`larger than this provider's limit of ${2 * 1024 * 1024} bytes per message part`);
            expect(await run(kernel, 'print("still here")')).toMatchObject({ reply: 'ok', out: 'still here\n' });
            continue;
          }
          expect(big.out.length).toBe(50_000 * 65);
          expect(big.result).toBe(`'${createHash('md5').update(big.out).digest('hex')}'`);
          expect(await run(kernel, '1+1')).toMatchObject({ reply: 'ok', result: '2' });
        } finally {
          await kernel.shutdown();
        }
      }
    } finally {
      await other.close();
      await small.close();
    }
  }, 60_000);
});
