// JupyterLab's client library across a gateway crash: its SessionManager polls /api/sessions
// and disposes any session no longer listed, so a gateway that forgot its sessions made every
// client start a new kernel and lose its state. With the gateway's state file the session is
// listed again as soon as the gateway is back, and the same kernel, still running on its
// provider, answers once the provider has reconnected.
import { afterAll, expect, it } from 'vitest';
import { KernelManager, SessionManager, type KernelMessage, type Session } from '@jupyterlab/services';
import { nodeServerSettings } from '../bench/lib/services-settings.ts';
import { startStack, type Stack } from '../bench/lib/stack.ts';

let stack: Stack | undefined;
let sessions: SessionManager | undefined;

afterAll(async () => {
  sessions?.dispose();
  await stack?.stop();
}, 60_000);

async function stdout(session: Session.ISessionConnection, code: string): Promise<string> {
  let out = '';
  const future = session.kernel!.requestExecute({ code });
  future.onIOPub = (m: KernelMessage.IIOPubMessage) => {
    if (m.header.msg_type === 'stream') out += (m.content as { text: string }).text;
  };
  await future.done;
  return out;
}

it('a session survives a gateway crash: still listed while the provider reconnects, same kernel, same state', async () => {
  stack = await startStack();
  const serverSettings = nodeServerSettings(stack.url, stack.token);
  const kernels = new KernelManager({ serverSettings });
  sessions = new SessionManager({ serverSettings, kernelManager: kernels });
  await sessions.ready;
  const specs = (await (await fetch(`${stack.url}/api/kernelspecs`, { headers: { Authorization: `token ${stack.token}` } })).json()) as { default: string };
  const session = await sessions.startNew({ path: 'survive.ipynb', name: 'survive.ipynb', type: 'notebook', kernel: { name: specs.default } });
  await session.kernel!.info;
  const kernelId = session.kernel!.id;
  await stdout(session, 'x = 41');

  await stack.restartGateway(); // SIGKILL, then a new gateway process on the same data dir
  // Poll the way the library does on its own timer, at once and while the provider is away.
  for (let i = 0; i < 5; i++) {
    await sessions.refreshRunning();
    expect(session.isDisposed).toBe(false);
    expect([...sessions.running()].map((m) => [m.id, m.kernel?.id])).toEqual([[session.id, kernelId]]);
    await new Promise((r) => setTimeout(r, 200));
  }
  // The same kernel, with its state. (Left alone, the library would reconnect too, but a
  // WebSocket that failed while the gateway was down makes it wait a random 10-30 s before it
  // asks again; a client that knows the gateway is back asks at once, as here.)
  await session.kernel!.reconnect();
  const deadline = Date.now() + 30_000;
  let out = '';
  while (Date.now() < deadline) {
    try {
      out = await Promise.race([stdout(session, 'print(x + 1)'), new Promise<string>((_, reject) => setTimeout(() => reject(new Error('timeout')), 5000))]);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  expect(out.trim()).toBe('42');
  expect(session.kernel!.id).toBe(kernelId);
  await session.shutdown();
}, 120_000);
