// The provider against a REAL ipykernel (Debian's /usr/share/jupyter/kernels/python3), with
// the gateway's side played by the tunnel test peer (testing/tunnel-peer.ts).
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeMessage } from '@kinesis/protocol/jupyter/messages';
import { validateHardware } from '@kinesis/protocol/tunnel';
import { startProvider, type RunningProvider } from './index.ts';
import { silentLogger } from './logger.ts';
import { collect, execute, executeRequest, resultText, SESSION } from './testing/jupyter-client.ts';
import { TunnelTestPeer } from './testing/tunnel-peer.ts';


function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(pred: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return pred();
}

let dataDir: string;
let peer: TunnelTestPeer;
let running: RunningProvider;

beforeAll(async () => {
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kinesis-provider-'));
  // A second kernelspec for the same ipykernel, interrupted by message instead of signal.
  const specs = path.join(dataDir, 'specs');
  await fs.mkdir(path.join(specs, 'python3-msg'), { recursive: true });
  const debian = JSON.parse(await fs.readFile('/usr/share/jupyter/kernels/python3/kernel.json', 'utf8')) as Record<string, unknown>;
  await fs.writeFile(path.join(specs, 'python3-msg', 'kernel.json'), JSON.stringify({ ...debian, display_name: 'Python 3 (message interrupt)', interrupt_mode: 'message' }));
  peer = await TunnelTestPeer.start();
  running = await startProvider({ gatewayUrl: peer.url, dataDir, kernelspecDirs: ['/usr/share/jupyter/kernels', specs], logger: silentLogger, pricePerKwh: 123n, name: 'test-rig', waitForConnection: true });
});

afterAll(async () => {
  const pids = running.provider.kernelStates().map((k) => k.pid);
  await running.close();
  await running.close(); // safe twice
  for (const pid of pids) if (pid) expect(groupAlive(pid)).toBe(false);
  await peer.close();
  await fs.rm(dataDir, { recursive: true, force: true });
});

async function startKernel(env: Record<string, string> = {}, specName = 'python3'): Promise<string> {
  const kernelId = randomUUID();
  const r = await peer.request({ type: 'start_kernel', kernelId, specName, env });
  expect(r).toEqual({ type: 'reply', id: expect.any(Number), ok: true });
  return kernelId;
}

describe('provider ↔ real ipykernel through the tunnel', () => {
  it('says hello with a verified signature, its hardware, price and kernelspecs', () => {
    const hello = peer.hellos[0];
    expect(hello?.address).toBe(running.address);
    expect(hello?.name).toBe('test-rig');
    expect(hello?.pricePerKwh).toBe('123');
    expect(hello?.kernelspecs.map((k) => k.name)).toEqual(['python3', 'python3-msg']);
    expect(validateHardware(hello?.hardware)).toEqual(hello?.hardware);
    expect(hello?.kernels).toEqual([]);
  });

  it('starts a kernel, executes 1+1, streams stdout and stderr', async () => {
    const id = await startKernel();
    const r = await execute(peer, id, '1+1');
    expect(r.reply.content['status']).toBe('ok');
    expect(resultText(r)).toBe('2');
    const s = await execute(peer, id, 'import sys\nprint("hello out")\nprint("hello err", file=sys.stderr)');
    expect(s.stdout).toBe('hello out\n');
    expect(s.iopub.some((m) => m.header.msg_type === 'stream' && m.content['name'] === 'stderr' && String(m.content['text']).includes('hello err'))).toBe(true);
    // The provider's own kernel_info handshake never reaches clients.
    expect(peer.messages.filter((m) => m.kernelId === id && m.msg.header.msg_type === 'kernel_info_reply')).toEqual([]);
  });

  it('runs the kernel with a minimal environment, in its own working dir', async () => {
    process.env['KINESIS_TEST_SECRET'] = 'do-not-leak';
    try {
      const id = await startKernel({ KERNEL_FLAVOUR: 'mint', LD_PRELOAD: '/evil.so', AWS_SECRET_ACCESS_KEY: 'x' });
      const r = await execute(peer, id, 'import os, json\nprint(json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "pgid": os.getpgid(0), "pid": os.getpid()}))');
      const out = JSON.parse(r.stdout) as { env: Record<string, string>; cwd: string; pgid: number; pid: number };
      expect(out.env['KERNEL_FLAVOUR']).toBe('mint');
      expect(out.env['KINESIS_TEST_SECRET']).toBeUndefined();
      expect(out.env['LD_PRELOAD']).toBeUndefined();
      expect(out.env['AWS_SECRET_ACCESS_KEY']).toBeUndefined();
      expect(out.cwd).toBe(path.join(dataDir, 'kernels', id));
      expect(out.env['HOME']).toBe(out.cwd);
      expect(out.pgid).toBe(out.pid); // its own process group
      expect((await fs.stat(path.join(dataDir, 'runtime'))).mode & 0o777).toBe(0o700);
      expect((await fs.stat(path.join(dataDir, 'runtime', `kernel-${id}.json`))).mode & 0o777).toBe(0o600);
    } finally {
      delete process.env['KINESIS_TEST_SECRET'];
    }
  });

  it('carries binary buffers through a comm, both ways', async () => {
    const id = await startKernel();
    await execute(
      peer,
      id,
      [
        'def _target(comm, open_msg):',
        '    @comm.on_msg',
        '    def _recv(msg):',
        '        comm.send({"n": len(msg["buffers"])}, buffers=[bytes(b)[::-1] for b in msg["buffers"]])',
        'get_ipython().kernel.comm_manager.register_target("echo", _target)',
      ].join('\n'),
    );
    const commId = randomUUID();
    peer.sendKernel(id, makeMessage({ channel: 'shell', msgType: 'comm_open', session: SESSION, content: { comm_id: commId, target_name: 'echo', data: {} } }));
    const payload = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251));
    const msg = makeMessage({ channel: 'shell', msgType: 'comm_msg', session: SESSION, content: { comm_id: commId, data: {} }, buffers: [payload, Buffer.from([0, 1, 2, 255])] });
    peer.sendKernel(id, msg);
    const echo = await peer.until(() => peer.replies_(id, msg.header.msg_id).find((m) => m.header.msg_type === 'comm_msg'), 20_000, 'comm echo');
    expect(echo.content['data']).toEqual({ n: 2 });
    expect(echo.buffers).toHaveLength(2);
    expect(Buffer.from(echo.buffers[0] as Uint8Array).equals(Buffer.from(payload).reverse())).toBe(true);
    expect([...(echo.buffers[1] as Uint8Array)]).toEqual([255, 2, 1, 0]);
  });

  it('answers input() through the stdin channel', async () => {
    const id = await startKernel();
    const req = executeRequest('name = input("who? ")\nprint("hello", name)', { allow_stdin: true });
    peer.sendKernel(id, req);
    const ask = await peer.until(() => peer.replies_(id, req.header.msg_id).find((m) => m.header.msg_type === 'input_request'), 10_000, 'input_request');
    expect(ask.channel).toBe('stdin');
    expect(ask.content['prompt']).toBe('who? ');
    peer.sendKernel(id, makeMessage({ channel: 'stdin', msgType: 'input_reply', session: SESSION, parent: ask.header, content: { value: 'kinesis' } }));
    expect((await collect(peer, id, req.header.msg_id)).stdout).toBe('hello kinesis\n');
  });

  it.each(['python3', 'python3-msg'])('interrupts time.sleep(60) (%s: by signal / by interrupt_request)', async (specName) => {
    const id = await startKernel({}, specName);
    // stop_on_error: false, or ipykernel aborts requests that arrive just after the error.
    const req = executeRequest('import time; time.sleep(60)', { stop_on_error: false });
    peer.sendKernel(id, req);
    await peer.until(() => peer.replies_(id, req.header.msg_id).some((m) => m.content['execution_state'] === 'busy'), 10_000, 'busy');
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    expect((await peer.request({ type: 'interrupt_kernel', kernelId: id })).ok).toBe(true);
    const r = await collect(peer, id, req.header.msg_id, 10_000);
    expect(r.reply.content['status']).toBe('error');
    expect(r.reply.content['ename']).toBe('KeyboardInterrupt');
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(resultText(await execute(peer, id, '2+3'))).toBe('5');
  });

  it('restarts with the same id (state gone, kernel answers), and notices a kill -9 at once', async () => {
    const id = await startKernel();
    await execute(peer, id, 'x = 41');
    const before = running.provider.kernelStates().find((k) => k.kernelId === id)?.pid as number;
    expect((await peer.request({ type: 'restart_kernel', kernelId: id })).ok).toBe(true);
    expect(peer.statuses.some((s) => s.kernelId === id && s.status === 'restarting')).toBe(true);
    const after = running.provider.kernelStates().find((k) => k.kernelId === id)?.pid as number;
    expect(after).not.toBe(before);
    expect(groupAlive(before)).toBe(false);
    const r = await execute(peer, id, 'x');
    expect(r.reply.content['ename']).toBe('NameError');
    // Start a child in the kernel's group, then kill the kernel: dead at once, the child reaped.
    await execute(peer, id, 'import subprocess; p = subprocess.Popen(["sleep", "300"])');
    const t0 = Date.now();
    process.kill(after, 'SIGKILL');
    const dead = await peer.until(() => peer.statuses.find((s) => s.kernelId === id && s.status === 'dead'), 5000, 'dead');
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(dead.reason).toMatch(/SIGKILL/);
    expect(await waitFor(() => !groupAlive(after), 2000)).toBe(true);
    await expect(fs.stat(path.join(dataDir, 'runtime', `kernel-${id}.json`))).rejects.toThrow();
    // A dead kernel can be restarted by the gateway.
    expect((await peer.request({ type: 'restart_kernel', kernelId: id })).ok).toBe(true);
    expect(resultText(await execute(peer, id, '6*7'))).toBe('42');
  });

  it('shuts a kernel down: process group gone, connection file and working dir removed', async () => {
    const id = await startKernel();
    const pid = running.provider.kernelStates().find((k) => k.kernelId === id)?.pid as number;
    expect(groupAlive(pid)).toBe(true);
    expect((await peer.request({ type: 'shutdown_kernel', kernelId: id })).ok).toBe(true);
    expect(groupAlive(pid)).toBe(false);
    await expect(fs.stat(path.join(dataDir, 'runtime', `kernel-${id}.json`))).rejects.toThrow();
    await expect(fs.stat(path.join(dataDir, 'kernels', id))).rejects.toThrow();
    expect(running.provider.kernelStates().some((k) => k.kernelId === id)).toBe(false);
    const again = await peer.request({ type: 'shutdown_kernel', kernelId: id });
    expect(again).toMatchObject({ ok: false, error: expect.stringMatching(/unknown kernel/) });
  });

  it('answers a retried start_kernel for the same kernel once it is up, without a second process', async () => {
    const kernelId = randomUUID();
    const [a, b] = await Promise.all([
      peer.request({ type: 'start_kernel', kernelId, specName: 'python3', env: {} }),
      peer.request({ type: 'start_kernel', kernelId, specName: 'python3', env: {} }),
    ]);
    expect([a.ok, b.ok]).toEqual([true, true]);
    expect(running.provider.kernelStates().filter((k) => k.kernelId === kernelId)).toHaveLength(1);
    expect(resultText(await execute(peer, kernelId, '3*3'))).toBe('9');
  });

  it('answers bad requests with errors and drops malformed kernel frames without losing the tunnel', async () => {
    expect(await peer.request({ type: 'start_kernel', kernelId: randomUUID(), specName: 'nope', env: {} })).toMatchObject({ ok: false, error: expect.stringMatching(/no kernelspec/) });
    expect(await peer.request({ type: 'interrupt_kernel', kernelId: randomUUID() })).toMatchObject({ ok: false });
    const id = await startKernel();
    const idBytes = Buffer.from(id.replace(/-/g, ''), 'hex');
    peer.sendRaw(Buffer.concat([Buffer.from([2]), idBytes, Buffer.from('garbage that is not a v1 frame')]));
    const conns = peer.connectTimes.length;
    expect(resultText(await execute(peer, id, '10+1'))).toBe('11');
    expect(peer.connectTimes.length).toBe(conns);
  });
});
