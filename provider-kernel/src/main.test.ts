// The `kinesis-provider` command as a GPU owner runs it: a real process, real signals.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { TunnelTestPeer } from './testing/tunnel-peer.ts';
import { execute, resultText } from './testing/jupyter-client.ts';

const BIN = fileURLToPath(new URL('../bin/kinesis-provider.mjs', import.meta.url));
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function run(args: string[]): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  cleanups.push(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
  });
  return { child, output: () => out, exited };
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('kinesis-provider command', () => {
  it('prints help, and rejects bad flags with a clear message and exit code 2', async () => {
    const help = run(['--help']);
    expect(await help.exited).toBe(0);
    expect(help.output()).toMatch(/Usage: kinesis-provider --gateway <url> --data-dir <dir>/);
    const bad = run(['--gateway', 'http://127.0.0.1:1', '--data-dir', '/tmp/x', '--price', 'cheap']);
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toMatch(/--price must be a whole number/);
  });

  it('serves kernels and, on SIGTERM, shuts every kernel down and exits 0', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kinesis-cli-'));
    cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
    const peer = await TunnelTestPeer.start();
    cleanups.push(() => peer.close());
    const p = run(['--gateway', peer.url, '--data-dir', dir, '--price', '5000', '--name', 'cli-rig', '--kernelspec-dir', '/usr/share/jupyter/kernels', '--kernelspec-dir', path.join(dir, 'specs'), '--no-metering']);
    const hello = await peer.until(() => peer.hellos[0], 30_000, 'hello');
    expect(hello).toMatchObject({ name: 'cli-rig', pricePerKwh: '5000' });
    // The owner installs another kernel and sends SIGHUP: it is advertised.
    const extra = path.join(dir, 'specs');
    await fs.mkdir(path.join(extra, 'py-extra'), { recursive: true });
    await fs.copyFile('/usr/share/jupyter/kernels/python3/kernel.json', path.join(extra, 'py-extra', 'kernel.json'));
    p.child.kill('SIGHUP');
    const ad = await peer.until(() => peer.adverts[0], 10_000, 'advertise');
    expect(ad.kernelspecs.map((k) => k.name)).toEqual(['python3', 'py-extra']);
    const id = randomUUID();
    expect((await peer.request({ type: 'start_kernel', kernelId: id, specName: 'python3', env: {} })).ok).toBe(true);
    const r = await execute(peer, id, 'import os; print(os.getpid()); 40+2');
    expect(resultText(r)).toBe('42');
    const kernelPid = Number(r.stdout.trim());
    expect(groupAlive(kernelPid)).toBe(true);
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(groupAlive(kernelPid)).toBe(false);
    expect(p.output()).toMatch(/stopping: shutting kernels down/);
    expect((await fs.stat(path.join(dir, 'provider-key.json'))).mode & 0o777).toBe(0o600);
  });

  it('leaves no ipykernel behind when the provider itself is killed with SIGKILL', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kinesis-cli-'));
    cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
    const peer = await TunnelTestPeer.start();
    cleanups.push(() => peer.close());
    const p = run(['--gateway', peer.url, '--data-dir', dir, '--kernelspec-dir', '/usr/share/jupyter/kernels', '--no-metering']);
    await peer.until(() => peer.hellos[0], 30_000, 'hello');
    const id = randomUUID();
    expect((await peer.request({ type: 'start_kernel', kernelId: id, specName: 'python3', env: {} })).ok).toBe(true);
    const kernelPid = Number((await execute(peer, id, 'import os; print(os.getpid())')).stdout.trim());
    cleanups.push(async () => {
      if (groupAlive(kernelPid)) process.kill(-kernelPid, 'SIGKILL');
    });
    p.child.kill('SIGKILL');
    await p.exited;
    // ipykernel's parent poller (JPY_PARENT_PID) notices within about a second.
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && groupAlive(kernelPid)) await new Promise((r) => setTimeout(r, 100));
    expect(groupAlive(kernelPid)).toBe(false);
  });
});
