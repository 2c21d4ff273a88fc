import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateControl } from '@kinesis/protocol/tunnel';
import { defaultKernelspecDirs, discoverKernelspecs, toAd } from './kernelspecs.ts';
import type { Logger } from './logger.ts';

let root: string;
beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'kinesis-specs-'));
});
afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

const good = { argv: ['/usr/bin/python3', '-m', 'ipykernel_launcher', '-f', '{connection_file}'], display_name: 'Py', language: 'python' };

async function spec(dir: string, name: string, body: unknown): Promise<void> {
  await fs.mkdir(path.join(dir, name), { recursive: true });
  await fs.writeFile(path.join(dir, name, 'kernel.json'), typeof body === 'string' ? body : JSON.stringify(body));
}

function recordingLogger(): Logger & { warnings: Array<Record<string, unknown>> } {
  const warnings: Array<Record<string, unknown>> = [];
  return { warnings, debug() {}, info() {}, error() {}, warn: (_m, f) => warnings.push(f ?? {}) };
}

describe('kernelspec discovery', () => {
  it('finds the Debian python3 kernelspec in the standard folders', async () => {
    expect(defaultKernelspecDirs({ HOME: '/home/u', JUPYTER_PATH: '/opt/a:/opt/b' })).toEqual([
      '/opt/a/kernels',
      '/opt/b/kernels',
      '/home/u/.local/share/jupyter/kernels',
      '/usr/local/share/jupyter/kernels',
      '/usr/share/jupyter/kernels',
    ]);
    const specs = await discoverKernelspecs();
    const py = specs.find((s) => s.name === 'python3');
    expect(py?.spec.argv[0]).toBe('/usr/bin/python3');
    expect(py?.dir).toBe('/usr/share/jupyter/kernels/python3');
  });

  it('skips bad kernel.json files with a logged reason and keeps the good ones', async () => {
    const d = path.join(root, 'kernels');
    await spec(d, 'good', { ...good, interrupt_mode: 'message', env: { A: '1' }, metadata: { debugger: true } });
    await spec(d, 'notjson', '{ "argv": [');
    await spec(d, 'noargv', { display_name: 'x', language: 'python' });
    await spec(d, 'emptyargv', { ...good, argv: [] });
    await spec(d, 'noconn', { ...good, argv: ['/usr/bin/python3', '-m', 'ipykernel_launcher'] });
    await spec(d, 'badinterrupt', { ...good, interrupt_mode: 'sometimes' });
    await spec(d, 'badenv', { ...good, env: { A: 1 } });
    await spec(d, 'nodisplay', { ...good, display_name: '' });
    await spec(d, 'missingexe', { ...good, argv: ['/nonexistent/python', '-f', '{connection_file}'] });
    await spec(d, 'array', [1, 2]);
    await spec(d, 'bad name!', good);
    await spec(d, 'huge', { ...good, metadata: { pad: 'x'.repeat(70_000) } });
    await fs.mkdir(path.join(d, 'nofile'));
    const log = recordingLogger();
    const specs = await discoverKernelspecs({ dirs: [d], logger: log });
    expect(specs.map((s) => s.name)).toEqual(['good']);
    expect(specs[0]?.spec.interrupt_mode).toBe('message');
    const reasons = Object.fromEntries(log.warnings.map((w) => [path.basename(String(w['dir'])), String(w['reason'])]));
    expect(Object.keys(reasons).sort()).toEqual(
      ['array', 'bad name!', 'badenv', 'badinterrupt', 'emptyargv', 'huge', 'missingexe', 'noargv', 'noconn', 'nodisplay', 'nofile', 'notjson'].sort(),
    );
    expect(reasons['noconn']).toMatch(/connection_file/);
    expect(reasons['missingexe']).toMatch(/not an executable/);
    expect(reasons['notjson']).toMatch(/not valid JSON/);
    // What we advertise passes the tunnel's own validator.
    validateControl({ type: 'advertise', name: 'n', pricePerKwh: '1', hardware: { devices: [], cpu: { model: 'x', cores: 1 }, memoryMiB: 1, os: 'Linux', arch: 'x64' }, kernelspecs: specs.map(toAd) });
  });

  it('first directory wins for a name; logos travel as resources', async () => {
    const a = path.join(root, 'a');
    const b = path.join(root, 'b');
    await spec(a, 'py', { ...good, display_name: 'from a' });
    await spec(b, 'py', { ...good, display_name: 'from b' });
    await fs.writeFile(path.join(a, 'py', 'logo-64x64.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    await fs.writeFile(path.join(a, 'py', 'kernel.js'), 'alert(1)');
    const specs = await discoverKernelspecs({ dirs: [a, b] });
    expect(specs).toHaveLength(1);
    expect(specs[0]?.spec.display_name).toBe('from a');
    expect(Object.keys(specs[0]?.resources ?? {})).toEqual(['logo-64x64.png']);
  });
});
