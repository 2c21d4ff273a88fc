// Kernels as a separate Unix user. This machine runs the tests as root, so the real thing is
// exercised: a kernel running as `nobody` cannot read the provider's key.
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProvider, type RunningProvider } from './index.ts';
import { checkNoAmbientCapabilities, resolveKernelUser } from './kernel-user.ts';
import { silentLogger } from './logger.ts';
import { execute, resultText } from './testing/jupyter-client.ts';
import { TunnelTestPeer } from './testing/tunnel-peer.ts';

const isRoot = process.getuid?.() === 0;

describe('kernels as a separate Unix user', () => {
  let dataDir: string;
  let peer: TunnelTestPeer;
  let running: RunningProvider;
  beforeAll(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kinesis-kuser-'));
    peer = await TunnelTestPeer.start();
    running = await startProvider({ gatewayUrl: peer.url, dataDir, kernelspecDirs: ['/usr/share/jupyter/kernels'], logger: silentLogger, metering: false, kernelUser: 'nobody', waitForConnection: true });
  });
  afterAll(async () => {
    await running?.close();
    await peer?.close();
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('resolves users and refuses root or unknown ones', async () => {
    expect(await resolveKernelUser('nobody')).toEqual({ uid: 65534, gid: 65534 });
    await expect(resolveKernelUser('root')).rejects.toThrow(/must not run as root/);
    await expect(resolveKernelUser('no-such-user-kinesis')).rejects.toThrow(/no Unix user/);
    await expect(resolveKernelUser('../etc')).rejects.toThrow(/not a user name/);
    // A non-root provider with ambient capabilities would hand them to every kernel.
    expect(() => checkNoAmbientCapabilities('Name:\tnode\nCapAmb:\t00000000000000c0\n', 1000)).toThrow(/needs the provider to run as root/);
    expect(() => checkNoAmbientCapabilities('CapAmb:\t0000000000000000\n', 1000)).not.toThrow();
    expect(() => checkNoAmbientCapabilities('CapAmb:\t00000000000000c0\n', 0)).not.toThrow();
  });

  it(isRoot ? 'runs the kernel as nobody: it works, but cannot read the provider key' : 'without root, says why the kernel cannot start', async () => {
    const id = randomUUID();
    const reply = await peer.request({ type: 'start_kernel', kernelId: id, specName: 'python3', env: {} });
    if (!isRoot) {
      expect(reply).toMatchObject({ ok: false, error: expect.stringMatching(/EPERM|exited while starting/) });
      return;
    }
    expect(reply.ok).toBe(true);
    expect(resultText(await execute(peer, id, '1+1'))).toBe('2');
    const probe = [
      'import os',
      'print(os.getuid())',
      // No capabilities survive the switch from root.
      'caps = {l.split(":")[0]: int(l.split()[1], 16) for l in open("/proc/self/status") if l.startswith("Cap")}',
      'print(caps["CapEff"], caps["CapPrm"], caps["CapAmb"])',
      `try:\n    open(${JSON.stringify(path.join(dataDir, 'provider-key.json'))}).read()\n    print("READ")\nexcept PermissionError:\n    print("denied")`,
      `try:\n    os.listdir(${JSON.stringify(dataDir)})\n    print("LISTED")\nexcept PermissionError:\n    print("denied")`,
    ].join('\n');
    expect((await execute(peer, id, probe)).stdout).toBe('65534\n0 0 0\ndenied\ndenied\n');
    expect((await peer.request({ type: 'shutdown_kernel', kernelId: id })).ok).toBe(true);
    await expect(fs.stat(path.join(dataDir, 'kernels', id))).rejects.toThrow();
  });
});
