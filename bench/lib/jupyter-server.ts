// The reference: Debian's Jupyter Server (1.23 here), started on a free port with a
// throwaway root dir, stopped with its kernels.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface JupyterServer {
  readonly url: string;
  readonly token: string;
  readonly proc: ChildProcess;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

export async function startJupyterServer(extraArgs: readonly string[] = []): Promise<JupyterServer> {
  const port = await freePort();
  const token = 'ref-' + Math.random().toString(36).slice(2);
  const dir = mkdtempSync(join(tmpdir(), 'kinesis-js-'));
  const proc = spawn(
    '/usr/bin/python3',
    ['-m', 'jupyter_server', '--no-browser', `--port=${port}`, '--ip=127.0.0.1', `--ServerApp.token=${token}`, `--ServerApp.root_dir=${dir}`, '--ServerApp.port_retries=0', '--ServerApp.iopub_data_rate_limit=1e12', '--ServerApp.iopub_msg_rate_limit=1e12', ...(process.getuid?.() === 0 ? ['--allow-root'] : []), ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, JUPYTER_RUNTIME_DIR: join(dir, '.rt'), JUPYTER_DATA_DIR: join(dir, '.data'), JUPYTER_CONFIG_DIR: join(dir, '.cfg') } },
  );
  let log = '';
  proc.stdout?.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`jupyter_server exited: ${log}`);
    try {
      const r = await fetch(`${url}/api/status?token=${token}`);
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error(`jupyter_server did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    token,
    proc,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise<void>((r) => {
          const t = setTimeout(() => {
            proc.kill('SIGKILL');
            r();
          }, 5000);
          proc.once('exit', () => {
            clearTimeout(t);
            r();
          });
        });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
