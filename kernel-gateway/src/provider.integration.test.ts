// The gateway with the REAL provider (provider-kernel's startProvider, in-process) and a REAL
// ipykernel (/usr/bin/python3, Debian python3-ipykernel), driven by @jupyterlab/services 7 from
// Node as JupyterLab drives a Jupyter Server.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { KernelManager, ServerConnection, type Kernel, type KernelMessage } from '@jupyterlab/services';
import { startProvider, type RunningProvider } from '@kinesis/provider-kernel';
import { silentLogger } from './logger.ts';
import { startTestGateway, TestClient, until, type TestGateway } from './testing/harness.ts';
import type { JupyterMessage } from '@kinesis/protocol';

let gw: TestGateway;
let provider: RunningProvider;
let providerDir: string;
let manager: KernelManager;
let kernel: Kernel.IKernelConnection;

beforeAll(async () => {
  gw = await startTestGateway();
  providerDir = mkdtempSync(join(tmpdir(), 'kinesis-gw-provider-'));
  provider = await startProvider({
    gatewayUrl: gw.url,
    dataDir: providerDir,
    name: 'integration',
    pricePerKwh: 250_000n,
    nvidiaSmi: false,
    kernelspecDirs: ['/usr/share/jupyter/kernels'],
    logger: silentLogger,
    waitForConnection: true,
    // Every kernel message HMAC-checked: the tests of forged output below have the kernel sign
    // with another key, which only such a check notices. By default ('peer') the kernel's own
    // iopub connection is trusted instead (provider-kernel/src/e2e.test.ts).
    iopubAuth: 'hmac',
  });
  const serverSettings = ServerConnection.makeSettings({
    baseUrl: gw.url + '/',
    wsUrl: gw.url.replace('http', 'ws') + '/',
    token: gw.token,
    appendToken: true,
    WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
  });
  manager = new KernelManager({ serverSettings });
  await manager.ready;
  kernel = await manager.startNew({ name: 'python3-cpu' });
  await kernel.info;
}, 90_000);

afterAll(async () => {
  try {
    await kernel?.shutdown();
  } catch {
    // already gone
  }
  manager?.dispose();
  await provider?.close();
  await gw?.stop();
  rmSync(providerDir, { recursive: true, force: true });
}, 60_000);

async function run(code: string): Promise<{ reply: KernelMessage.IExecuteReplyMsg; iopub: KernelMessage.IIOPubMessage[] }> {
  const iopub: KernelMessage.IIOPubMessage[] = [];
  const future = kernel.requestExecute({ code });
  future.onIOPub = (m) => {
    iopub.push(m);
  };
  const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
  return { reply, iopub };
}

describe('real provider + ipykernel through the gateway', () => {
  it('offers the provider\'s python3 as python3-cpu with its price', async () => {
    const { body } = await gw.api('/api/kernelspecs');
    expect(body.kernelspecs['python3-cpu'].spec.display_name).toMatch(/CPU, \d+ GB RAM · 250,000 per kWh$/);
    expect((await gw.api('/api/providers')).body[0]).toMatchObject({ id: provider.address, kernels: 1 });
  });

  it('executes 1+1 and streams output', async () => {
    const { reply, iopub } = await run('print("hi from the provider")\n1+1');
    expect(reply.content.status).toBe('ok');
    const result = iopub.find((m) => m.header.msg_type === 'execute_result');
    expect((result?.content as { data: Record<string, string> }).data['text/plain']).toBe('2');
    expect(iopub.some((m) => m.header.msg_type === 'stream' && (m.content as { text: string }).text.includes('hi from the provider'))).toBe(true);
    expect((await gw.api(`/api/kernels/${kernel.id}`)).body).toMatchObject({ execution_state: 'idle', connections: 1 });
  });

  it('records the provider\'s usage receipts in the ledger', async () => {
    await run('sum(range(100000))');
    await until(async () => ((await gw.api(`/api/usage?kernel_id=${kernel.id}`)).body?.records?.length ?? 0) > 0, 10_000, 'a recorded receipt');
    const { body } = await gw.api(`/api/usage?kernel_id=${kernel.id}`);
    expect(body.records[0]).toMatchObject({ kernelId: kernel.id, provider: provider.address, pricePerKwh: '250000' });
  });

  it('interrupts a time.sleep(60)', async () => {
    const future = kernel.requestExecute({ code: 'import time; time.sleep(60)' });
    await until(async () => (await gw.api(`/api/kernels/${kernel.id}`)).body.execution_state === 'busy', 10_000, 'busy');
    const t0 = Date.now();
    await kernel.interrupt();
    const reply = (await future.done.catch((e: unknown) => e)) as KernelMessage.IExecuteReplyMsg;
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(reply.content.status).toBe('error');
  });

  it('loses no output when a client drops mid-stream and reconnects with its session', async () => {
    const c = await TestClient.connect(gw.url, kernel.id, { sessionId: 'resume-me' });
    const ex = c.request('shell', 'execute_request', {
      // ipykernel needs every execute_request field (messaging 5.3), `silent` above all.
      code: 'import time\nfor i in range(20):\n    print(i, flush=True)\n    time.sleep(0.05)',
      silent: false,
      store_history: true,
      user_expressions: {},
      allow_stdin: false,
      stop_on_error: true,
    });
    await c.waitFor((m) => m.header.msg_type === 'stream' && m.parent_header.msg_id === ex.header.msg_id, 10_000);
    c.ws.terminate();
    await new Promise((r) => setTimeout(r, 300));
    const back = await TestClient.connect(gw.url, kernel.id, { sessionId: 'resume-me' });
    await back.reply(ex, 10_000);
    const text = [...c.messages, ...back.messages]
      .filter((m) => m.header.msg_type === 'stream' && m.parent_header.msg_id === ex.header.msg_id)
      .map((m) => String(m.content['text']))
      .join('');
    expect(text.split('\n').filter(Boolean).map(Number)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    back.ws.terminate();
  });

  it('restarts: state is gone and the kernel answers', async () => {
    await run('x = 41');
    await kernel.restart();
    const { reply, iopub } = await run('print("x" in dir())');
    expect(reply.content.status).toBe('ok');
    expect(iopub.some((m) => m.header.msg_type === 'stream' && (m.content as { text: string }).text.includes('False'))).toBe(true);
  });

  it('large output that fails its signature check is taken back mid-stream: the streamed client is cut off, nothing of it is delivered, the tunnel and the other kernel carry on', async () => {
    // The provider sends large output on while it checks the kernel's signature on it
    // (docs/protocols.md, "Large output in parts"). A kernel that signs one message with
    // another key stands in for a message forged on the kernel's socket; what it sends after
    // (reply, idle) is signed right and waits behind it at the provider.
    const victim = await manager.startNew({ name: 'python3-cpu' });
    try {
      await victim.info;
      const since = (await gw.api('/api/providers')).body[0].connectedSince;
      const streamed = await TestClient.connect(gw.url, victim.id, { v1: true });
      const legacy = await TestClient.connect(gw.url, victim.id, { v1: false });
      const ex = legacy.request('shell', 'execute_request', {
        code: "import sys\ns = get_ipython().kernel.session\nkey = s.key\ns.key = b'not the key'\nprint('x' * 5_000_000)\nsys.stdout.flush()\ns.key = key\nprint('after')",
        silent: false,
        store_history: false,
        user_expressions: {},
        allow_stdin: false,
        stop_on_error: true,
      });
      expect((await streamed.closed).code).toBe(1006); // cut off mid-frame
      // The abort reached the gateway before the reply and idle behind it: the tunnel stayed
      // up (a frame of the kernel's in the middle of its message in parts would close it, 1007).
      expect((await legacy.reply(ex, 10_000)).content['status']).toBe('ok');
      await legacy.waitFor((m) => m.header.msg_type === 'stream' && m.content['text'] === 'after\n', 10_000);
      await legacy.waitFor((m) => m.header.msg_type === 'status' && m.content['execution_state'] === 'idle' && m.parent_header.msg_id === ex.header.msg_id, 10_000);
      const forged = (m: JupyterMessage): boolean => m.header.msg_type === 'stream' && String(m.content['text']).startsWith('xxxx');
      expect([...streamed.messages, ...legacy.messages].some(forged)).toBe(false);
      expect((await gw.api('/api/providers')).body[0]).toMatchObject({ id: provider.address, kernels: 2, connectedSince: since });
      const { reply } = await run('1+1');
      expect(reply.content.status).toBe('ok');
      legacy.ws.terminate();
    } finally {
      await victim.shutdown();
    }
  }, 30_000);

  it('large output with a header over 64 KiB is checked before any of it goes out: a forged one is dropped without cutting anyone off, a genuine one arrives whole', async () => {
    // The provider reads a message's header and parent before its signature is checked only
    // when they are small (provider-kernel/src/kernel.ts). Both messages here have a 70 KB
    // header; the first is signed with another key.
    const victim = await manager.startNew({ name: 'python3-cpu' });
    try {
      await victim.info;
      const streamed = await TestClient.connect(gw.url, victim.id, { v1: true });
      const code = [
        'k = get_ipython().kernel',
        's = k.session',
        "def big(text, pad):",
        "    h = s.msg_header('stream')",
        "    h['pad'] = pad * 70_000",
        "    s.send(k.iopub_socket, 'stream', content={'name': 'stdout', 'text': text * 2_000_000}, parent=k.get_parent(), header=h)",
        'key = s.key',
        "s.key = b'not the key'",
        "big('y', 'p')",
        's.key = key',
        "big('z', 'q')",
        "print('after')",
      ].join('\n');
      const ex = streamed.request('shell', 'execute_request', { code, silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true });
      expect((await streamed.reply(ex, 20_000)).content['status']).toBe('ok');
      await streamed.waitFor((m) => m.header.msg_type === 'status' && m.content['execution_state'] === 'idle' && m.parent_header.msg_id === ex.header.msg_id, 10_000);
      const stdout = streamed.messages.filter((m) => m.header.msg_type === 'stream' && m.parent_header.msg_id === ex.header.msg_id);
      expect(stdout.map((m) => String(m.content['text']).slice(0, 5))).toEqual(['zzzzz', 'after']);
      expect(String(stdout[0]!.content['text'])).toHaveLength(2_000_000);
      expect((stdout[0]!.header as unknown as Record<string, unknown>)['pad']).toHaveLength(70_000);
      expect(streamed.ws.readyState).toBe(streamed.ws.OPEN); // never cut off: nothing of the forged one went out
      streamed.ws.terminate();
    } finally {
      await victim.shutdown();
    }
  }, 40_000);
});
