// Starts the real stack for benchmarks and end-to-end tests: `kinesis-gateway` and
// `kinesis-provider` as separate processes through their command lines, exactly as a
// user runs them, on free ports and throwaway data dirs.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './jupyter-server.ts';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Stack {
  readonly url: string;
  readonly token: string;
  readonly dataDir: string;
  readonly gateway: ChildProcess;
  provider: ChildProcess | undefined;
  /** Starts a provider; `dir` names its data dir (and so its key): a second provider needs another. */
  startProvider(extraArgs?: readonly string[], dir?: string): Promise<ChildProcess>;
  stopProvider(signal?: NodeJS.Signals): Promise<void>;
  restartGateway(): Promise<void>;
  stop(): Promise<void>;
}

export interface StackOptions {
  /** Extra kernelspecs for the provider: name → kernel.json contents. */
  readonly kernelspecs?: Record<string, object>;
  readonly gatewayArgs?: readonly string[];
  readonly gatewayEnv?: Record<string, string>;
  readonly providerEnv?: Record<string, string>;
  readonly provider?: boolean;
  readonly log?: boolean;
  /** Node flags for the processes (e.g. `--cpu-prof`, which NODE_OPTIONS does not take). */
  readonly gatewayNodeArgs?: readonly string[];
  readonly providerNodeArgs?: readonly string[];
  /** false: start node without the flags the bins' shebang lines give it (for A/B runs). */
  readonly binFlags?: boolean;
}

/** The node flags a bin's `#!/usr/bin/env -S node …` line gives it, as it runs when executed directly. */
function shebangFlags(bin: string): string[] {
  const first = readFileSync(join(repoRoot, bin), 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\/usr\/bin\/env -S node (.*)$/.exec(first);
  return m ? m[1]!.split(' ').filter(Boolean) : [];
}

/**
 * Gateways and providers still running. A harness that dies of an exception would leave them
 * (and the providers' kernels) running, holding CPU and ports for every later benchmark:
 * they get SIGTERM when this process exits.
 */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGTERM');
});

function spawnTs(bin: string, args: readonly string[], env: Record<string, string>, log: boolean, tag: string, nodeArgs: readonly string[] = [], binFlags = true): ChildProcess {
  const p = spawn(process.execPath, [...(binFlags ? shebangFlags(bin) : []), ...nodeArgs, join(repoRoot, bin), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  live.add(p);
  p.once('exit', () => live.delete(p));
  const sink = (d: Buffer): void => {
    if (log) process.stderr.write(`[${tag}] ${d.toString()}`);
  };
  p.stdout?.on('data', sink);
  p.stderr?.on('data', sink);
  return p;
}

async function waitFor(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stopProc(p: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
    p.once('exit', () => {
      clearTimeout(t);
      r();
    });
    p.kill(signal);
  });
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kinesis-stack-'));
  const port = await freePort();
  const token = 'tok-' + Math.random().toString(36).slice(2);
  const url = `http://127.0.0.1:${port}`;
  const log = opts.log ?? process.env['KINESIS_STACK_LOG'] === '1';

  // Kernelspecs for the provider: Debian's python3 is found in /usr/share/jupyter; extra
  // ones (the load kernel) go in a JUPYTER_PATH of our own.
  const jupyterPath = join(dataDir, 'jupyter');
  for (const [name, spec] of Object.entries(opts.kernelspecs ?? {})) {
    mkdirSync(join(jupyterPath, 'kernels', name), { recursive: true });
    writeFileSync(join(jupyterPath, 'kernels', name, 'kernel.json'), JSON.stringify(spec));
  }

  const gwArgs = ['--port', String(port), '--token', token, '--data-dir', join(dataDir, 'gateway'), ...(opts.gatewayArgs ?? [])];
  const startGw = async (): Promise<ChildProcess> => {
    const g = spawnTs('kernel-gateway/bin/kinesis-gateway.mjs', gwArgs, opts.gatewayEnv ?? {}, log, 'gateway', opts.gatewayNodeArgs, opts.binFlags);
    await waitFor(async () => (await fetch(`${url}/api/status`, { headers: { Authorization: `token ${token}` } })).ok, 30_000, 'the gateway');
    return g;
  };
  let gateway = await startGw();
  const providers: ChildProcess[] = []; // every provider started, so stop() ends them all

  const stack: Stack = {
    url,
    token,
    dataDir,
    get gateway() {
      return gateway;
    },
    provider: undefined,
    async startProvider(extraArgs = [], dir = 'provider') {
      const before = await providerCount(url, token);
      const p = spawnTs(
        'provider-kernel/bin/kinesis-provider.mjs',
        ['--gateway', url, '--data-dir', join(dataDir, dir), ...extraArgs],
        { JUPYTER_PATH: jupyterPath, ...(opts.providerEnv ?? {}) },
        log,
        'provider',
        opts.providerNodeArgs,
        opts.binFlags,
      );
      stack.provider = p;
      providers.push(p);
      await waitFor(async () => (await providerCount(url, token)) > before, 30_000, 'the provider to connect');
      return p;
    },
    async stopProvider(signal = 'SIGTERM') {
      await stopProc(stack.provider, signal);
      stack.provider = undefined;
    },
    async restartGateway() {
      await stopProc(gateway, 'SIGKILL');
      gateway = await startGw();
    },
    async stop() {
      await Promise.all(providers.map((p) => stopProc(p)));
      await stopProc(gateway);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  if (opts.provider !== false) await stack.startProvider();
  return stack;
}

async function providerCount(url: string, token: string): Promise<number> {
  const r = await fetch(`${url}/api/providers`, { headers: { Authorization: `token ${token}` } });
  if (!r.ok) return 0;
  const body = (await r.json()) as unknown;
  const list = Array.isArray(body) ? body : ((body as { providers?: unknown[] }).providers ?? []);
  return list.length;
}

/** A kernelspec that runs the benchmark's load-generating kernel. */
export function loadKernelSpec(): object {
  return {
    argv: [process.execPath, '--import', join(repoRoot, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs'), join(repoRoot, 'bench', 'lib', 'load-kernel.ts'), '-f', '{connection_file}'],
    display_name: 'Load generator',
    language: 'json',
    interrupt_mode: 'message',
  };
}
