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
import { decodeV1, encodeV1, makeMessage, V1_SUBPROTOCOL, type JupyterMessage } from '@kinesis/protocol';
import { startProvider, type RunningProvider } from './index.ts';
import { silentLogger } from './logger.ts';
import { detachedLauncher, MIXED_SIGNATURES, relayLauncher } from './testing/away-kernels.ts';

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

  it('a kernel killed while its large output is arriving: the streamed client is cut off, the kernel is dead, the provider goes on', async () => {
    const specs = await KernelSpecAPI.getSpecs(settings);
    const rest = async <T>(method: string, p: string, body?: unknown): Promise<T> => {
      const res = await fetch(`${gateway.url}${p}`, { method, headers: { Authorization: `token ${TOKEN}`, 'Content-Type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
      return (await res.json()) as T;
    };
    // A v1 client on a raw socket, so it can see the frame's bytes arrive before the frame is whole.
    const connect = async (kernelId: string, session: string) => {
      const ws = new WebSocket(`${gateway.url.replace(/^http/, 'ws')}/api/kernels/${kernelId}/channels?session_id=${session}&token=${TOKEN}`, [V1_SUBPROTOCOL], { perMessageDeflate: false, maxPayload: 1 << 30 });
      const messages: JupyterMessage[] = [];
      let rawBytes = 0;
      ws.on('message', (d: Buffer) => messages.push(decodeV1(d)));
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      (ws as unknown as { _socket: NodeJS.EventEmitter })._socket.on('data', (b: Buffer) => (rawBytes += b.length));
      const closed = new Promise<number>((resolve) => ws.once('close', resolve));
      const execute = (code: string): string => {
        const m = makeMessage({ channel: 'shell', msgType: 'execute_request', session, content: { code, silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true } });
        ws.send(encodeV1(m));
        return m.header.msg_id;
      };
      const reply = async (msgId: string): Promise<JupyterMessage> => {
        for (let i = 0; i < 300; i++) {
          const r = messages.find((m) => m.channel === 'shell' && m.parent_header.msg_id === msgId);
          if (r) return r;
          await new Promise((res) => setTimeout(res, 50));
        }
        throw new Error(`no reply to ${msgId}`);
      };
      return { ws, messages, closed, execute, reply, raw: () => rawBytes };
    };
    const bystander = await rest<{ id: string }>('POST', '/api/kernels', { name: specs.default });
    const other = await connect(bystander.id, 'bystander');
    // 48 MiB in one message: over the provider's 32 MiB queue bound, under the tunnel's 64 MiB
    // limit for one message, so it crosses whole (streamed while it arrives).
    const BIG = "import sys\nsys.stdout.write(('y' * 1023 + '\\n') * 49152)\nsys.stdout.flush()";
    const bigReply = await other.reply(other.execute(BIG));
    expect(bigReply.content['status']).toBe('ok');
    const bigOut = other.messages.filter((m) => m.header.msg_type === 'stream' && m.parent_header.msg_id === bigReply.parent_header.msg_id).map((m) => String(m.content['text']));
    expect(bigOut.join('').length, bigOut.join('').slice(0, 300)).toBe(1024 * 49152);
    expect(bigOut.join('').replaceAll('y'.repeat(1023) + '\n', '')).toBe('');
    // 70 MiB in one message can never cross: the reader skips it unread and the user is told why.
    const hugeReply = await other.reply(other.execute("import sys\nsys.stdout.write('q' * (70 * 1024 * 1024))\nsys.stdout.flush()"));
    expect(hugeReply.content['status']).toBe('ok');
    const hugeOut = other.messages.filter((m) => m.header.msg_type === 'stream' && m.parent_header.msg_id === hugeReply.parent_header.msg_id).map((m) => String(m.content['text']));
    expect(hugeOut.join('')).toMatch(/^\n\[kinesis\] 1 output message\(s\), \d+ bytes, were dropped: too large for the gateway to take \(over its limit of 64 MiB for one message\)\.\n$/);
    // Skipped by the reader, the notice counts the content frame alone (the queue would count the whole message's wire bytes).
    expect(Number(/(\d+) bytes/.exec(hugeOut.join(''))?.[1]) - 70 * 1024 * 1024).toBeLessThan(100);
    other.messages.length = 0;
    // Up to three tries: the kill must land while the 64 MB message is on its way through (almost always the first).
    let cutOff = false;
    for (let attempt = 0; attempt < 3 && !cutOff; attempt++) {
      const k = await rest<{ id: string }>('POST', '/api/kernels', { name: specs.default });
      const c = await connect(k.id, `victim-${attempt}`);
      const pidReply = await c.reply(c.execute('import os; os.getpid()'));
      expect(pidReply.content['status']).toBe('ok');
      await new Promise((r) => setTimeout(r, 200));
      const pidMsg = c.messages.find((m) => m.header.msg_type === 'execute_result' && m.parent_header.msg_id === pidReply.parent_header.msg_id);
      const pid = Number((pidMsg?.content['data'] as Record<string, string> | undefined)?.['text/plain']);
      expect(pid).toBeGreaterThan(1);
      const before = c.raw();
      c.execute(BIG);
      // Kill it as soon as the first 2 MB of the frame have reached the client.
      for (const end = Date.now() + 20_000; Date.now() < end && c.raw() - before < 2 * 1024 * 1024; ) await new Promise((r) => setTimeout(r, 1));
      process.kill(pid, 'SIGKILL');
      const code = await Promise.race([c.closed, new Promise<number>((r) => setTimeout(() => r(-1), 15_000))]);
      const whole = c.messages.some((m) => m.header.msg_type === 'stream' && String(m.content['text']).length > 60_000_000);
      cutOff = code !== -1 && !whole;
      if (!cutOff) c.ws.terminate();
      // Either way the kernel is dead within 10 s, and says so to a client that comes back.
      let state = '';
      for (let i = 0; i < 100 && state !== 'dead'; i++) {
        state = (await rest<{ execution_state: string }>('GET', `/api/kernels/${k.id}`)).execution_state;
        if (state !== 'dead') await new Promise((r) => setTimeout(r, 100));
      }
      expect(state).toBe('dead');
      const back = await connect(k.id, `victim-${attempt}`);
      for (let i = 0; i < 100 && !back.messages.some((m) => m.header.msg_type === 'status' && m.content['execution_state'] === 'dead'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(back.messages.some((m) => m.header.msg_type === 'status' && m.content['execution_state'] === 'dead')).toBe(true);
      back.ws.close();
      await rest('DELETE', `/api/kernels/${k.id}`).catch(() => undefined);
    }
    expect(cutOff).toBe(true);
    // The provider and its other kernel go on as before.
    const r = await other.reply(other.execute('6*7'));
    expect(r.content['status']).toBe('ok');
    other.ws.close();
    await rest('DELETE', `/api/kernels/${bystander.id}`).catch(() => undefined);
    expect(provider.provider.kernelStates().some((s) => s.kernelId === bystander.id)).toBe(false);
  }, 90_000);

  it('authenticates a kernel\'s iopub by who holds its far end: the kernel\'s own connection needs no per-message HMAC check, one the kernel process does not hold gets it', async () => {
    // A kernelspec whose launcher starts ipykernel in a process that is re-parented away (a
    // double fork): the process the provider launched, and its descendants, hold none of the
    // kernel's sockets, as with an impostor on the kernel's port. The launcher stays up (the
    // provider watches it) and takes the kernel down with it.
    const specDir = path.join(dir, 'detached-specs');
    await fs.mkdir(path.join(specDir, 'detached'), { recursive: true });
    const launcher = path.join(specDir, 'detached', 'launch.py');
    await fs.writeFile(launcher,
      detachedLauncher(),
    );
    await fs.writeFile(path.join(specDir, 'detached', 'kernel.json'), JSON.stringify({ argv: ['/usr/bin/python3', launcher, '{connection_file}'], display_name: 'Python 3 (detached)', language: 'python', interrupt_mode: 'message' }));
    // A kernelspec whose launched process holds the kernel's ports itself but only relays
    // them (as `ssh -L` or a port forward would) to an ipykernel double-forked away on other
    // ports: the process holding the kernel's end is in the tree, the bytes are not its own.
    await fs.mkdir(path.join(specDir, 'relayed'), { recursive: true });
    const relay = path.join(specDir, 'relayed', 'relay.py');
    await fs.writeFile(
      relay,
      relayLauncher(),
    );
    await fs.writeFile(path.join(specDir, 'relayed', 'kernel.json'), JSON.stringify({ argv: ['/usr/bin/python3', relay, '{connection_file}'], display_name: 'Python 3 (relayed)', language: 'python', interrupt_mode: 'message' }));
    const detached = await startProvider({ gatewayUrl: gateway.url, dataDir: path.join(dir, 'provider-detached'), name: 'detached', kernelspecDirs: [specDir], logger: silentLogger, waitForConnection: true });
    // The kernel sends one stream message signed with another key, then one signed right.
    const code = MIXED_SIGNATURES;
    try {
      const specs = await KernelSpecAPI.getSpecs(settings);
      const detachedSpec = Object.keys(specs!.kernelspecs).find((n) => n.startsWith('detached'));
      expect(detachedSpec, Object.keys(specs!.kernelspecs).join()).toBeTruthy();
      const relayedSpec = Object.keys(specs!.kernelspecs).find((n) => n.startsWith('relayed'));
      expect(relayedSpec, Object.keys(specs!.kernelspecs).join()).toBeTruthy();
      for (const [p, name, expected] of [
        [provider, specs!.default, 'signed with another key\nsigned right\n'], // verified: the kernel holds the key anyway
        [detached, detachedSpec!, 'signed right\n'], // not verified: checked, and the other key is dropped
        [detached, relayedSpec!, 'signed right\n'], // held by the tree, but relayed from outside it: checked too
      ] as const) {
        const res = await fetch(`${gateway.url}/api/kernels`, { method: 'POST', headers: { Authorization: `token ${TOKEN}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ name, kinesis: { provider: p.address } }) });
        expect(res.status).toBe(201);
        const kernel = manager.connectTo({ model: (await res.json()) as Kernel.IModel });
        try {
          const r = await run(kernel, code);
          expect(r.reply).toBe('ok');
          // Both messages precede the reply's idle on iopub; give stragglers a moment anyway.
          await new Promise((res) => setTimeout(res, 200));
          expect(r.out, name).toBe(expected);
          expect(await run(kernel, '6*7')).toMatchObject({ reply: 'ok', result: '42' });
        } finally {
          await kernel.shutdown();
        }
      }
    } finally {
      await detached.close();
    }
  }, 60_000);
});
