// A stock Jupyter Server (Debian's 1.23) configured with --gateway-url runs its kernels on
// the Kinesis gateway: a notebook session created through that server executes on the
// provider.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startJupyterServer, type JupyterServer } from '../bench/lib/jupyter-server.ts';
import { startStack, type Stack } from '../bench/lib/stack.ts';
import { WsKernelClient, rest } from '../bench/lib/ws-kernel-client.ts';

let stack: Stack;
let js: JupyterServer;

beforeAll(async () => {
  stack = await startStack();
  js = await startJupyterServer([`--gateway-url=${stack.url}`, `--GatewayClient.auth_token=${stack.token}`, '--GatewayClient.request_timeout=60']);
}, 90_000);

afterAll(async () => {
  await js?.stop();
  await stack?.stop();
}, 60_000);

it('creates a notebook session through Jupyter Server whose kernel runs on the provider', async () => {
  const specs = await rest<{ default: string; kernelspecs: Record<string, unknown> }>(js.url, js.token, 'GET', '/api/kernelspecs');
  const ours = await rest<{ default: string }>(stack.url, stack.token, 'GET', '/api/kernelspecs');
  // Jupyter Server shows the gateway's kernelspecs, not its own.
  expect(specs.default).toBe(ours.default);
  expect(Object.keys(specs.kernelspecs)).toContain(ours.default);

  const session = await rest<{ id: string; kernel: { id: string; name: string } }>(js.url, js.token, 'POST', '/api/sessions', {
    path: 'analysis.ipynb',
    name: 'analysis.ipynb',
    type: 'notebook',
    kernel: { name: ours.default },
  });
  // The kernel lives on the gateway.
  const onGateway = await rest<{ id: string }[]>(stack.url, stack.token, 'GET', '/api/kernels');
  expect(onGateway.map((k) => k.id)).toContain(session.kernel.id);

  const c = await WsKernelClient.connect(js.url, js.token, session.kernel.id, 'legacy');
  let out = '';
  c.onMessage = (m) => {
    if (m.header.msg_type === 'stream') out += String(m.content['text']);
  };
  try {
    // As Jupyter clients do (JupyterLab waits for kernel_info_reply; Jupyter Server itself
    // "nudges" with kernel_info_request until the kernel answers), handshake before the
    // first execute: Jupyter Server 1.23's gateway client can lose a message a client sends
    // while its own connection to the gateway is still opening (seen with session 1's
    // gateway as well, under load), so the request is repeated until a reply comes.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ok = await Promise.race([c.request('kernel_info_request', {}).then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 2000))]);
      if (ok) break;
      if (Date.now() > deadline) throw new Error('no kernel_info_reply through Jupyter Server in 30 s');
    }
    const r = await c.execute("import os\nprint('ran on provider', os.environ.get('KINESIS_KERNEL_ID', 'no-id'))");
    expect(r.reply.content['status']).toBe('ok');
    expect(out).toContain('ran on provider');
  } finally {
    c.close();
  }
  await rest(js.url, js.token, 'DELETE', `/api/sessions/${session.id}`);
  const after = await rest<{ id: string }[]>(stack.url, stack.token, 'GET', '/api/kernels');
  expect(after.map((k) => k.id)).not.toContain(session.kernel.id);
}, 90_000);
