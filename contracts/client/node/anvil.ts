// Starts and stops a local anvil chain (the binary from @foundry-rs/anvil). Node only.
// The child is owned by the returned handle: stop() is idempotent, and a process-exit hook
// kills it if the owner forgets, so no anvil outlives the process that started it.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { getAddress } from 'ethers';
import { InvalidArgumentError, LocalChainError } from '../errors.ts';

export interface AnvilOptions {
  /** 0 (default) picks a free port. */
  readonly port?: number;
  readonly chainId?: number;
  readonly accounts?: number;
  /** Load the chain from this file if it exists, and save it there on stop (anvil --state). */
  readonly statePath?: string;
  readonly log?: (line: string) => void;
  readonly startTimeoutMs?: number;
}

export interface DevAccount {
  readonly address: string;
  readonly privateKey: string;
}

export interface Anvil {
  readonly rpcUrl: string;
  readonly chainId: number;
  readonly accounts: readonly DevAccount[];
  readonly pid: number;
  stop(): Promise<void>;
}

export function anvilBinaryPath(): string {
  const require = createRequire(import.meta.url);
  const platformPkg = `@foundry-rs/anvil-${process.platform === 'darwin' ? 'darwin' : 'linux'}-${process.arch === 'arm64' ? 'arm64' : 'amd64'}`;
  try {
    const bin = join(dirname(require.resolve(`${platformPkg}/package.json`)), 'bin', 'anvil');
    if (existsSync(bin)) return bin;
  } catch {
    // fall through
  }
  throw new LocalChainError(`anvil binary not found (npm package ${platformPkg}); run npm install`);
}

export async function startAnvil(opts: AnvilOptions = {}): Promise<Anvil> {
  const port = opts.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('port', 'expected 0-65535');
  const chainId = opts.chainId ?? 31337;
  if (!Number.isSafeInteger(chainId) || chainId <= 0) throw new InvalidArgumentError('chainId', 'expected a positive integer');
  const accounts = opts.accounts ?? 10;
  if (!Number.isInteger(accounts) || accounts < 1 || accounts > 100) throw new InvalidArgumentError('accounts', 'expected 1-100');
  const log = opts.log ?? (() => {});
  const configDir = mkdtempSync(join(tmpdir(), 'kinesis-anvil-'));
  const configOut = join(configDir, 'config.json');
  const args = ['--host', '127.0.0.1', '--port', String(port), '--chain-id', String(chainId), '--accounts', String(accounts), '--config-out', configOut];
  // Cancun or later: the escrow's reentrancy guard uses transient storage.
  args.push('--hardfork', 'prague');
  if (opts.statePath) args.push('--state', opts.statePath);

  const child = spawn(anvilBinaryPath(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const cleanup = (): void => {
    process.removeListener('exit', killOnExit);
    rmSync(configDir, { recursive: true, force: true });
  };

  let output = '';
  let rpcUrl: string;
  try {
    rpcUrl = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new LocalChainError(`anvil did not start within ${opts.startTimeoutMs ?? 20_000} ms`, { details: output.slice(-2000) })), opts.startTimeoutMs ?? 20_000);
      const onData = (chunk: Buffer): void => {
        const text = chunk.toString('utf8');
        output += text;
        for (const line of text.split('\n')) if (line.trim()) log(`[anvil] ${line.trim()}`);
        const m = /Listening on (\d+\.\d+\.\d+\.\d+):(\d+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolve(`http://${m[1]}:${m[2]}`);
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new LocalChainError('could not spawn anvil', { cause: err }));
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new LocalChainError(`anvil exited during start-up (code ${code}, signal ${signal})`, { details: output.slice(-2000) }));
      });
    });
  } catch (err) {
    await terminate(child);
    cleanup();
    throw err;
  }

  let devAccounts: DevAccount[];
  try {
    const cfg = JSON.parse(readFileSync(configOut, 'utf8')) as { available_accounts?: unknown; private_keys?: unknown };
    const addrs = cfg.available_accounts;
    const keys = cfg.private_keys;
    if (!Array.isArray(addrs) || !Array.isArray(keys) || addrs.length !== keys.length) throw new Error('unexpected --config-out shape');
    devAccounts = addrs.map((a, i) => ({ address: getAddress(String(a)), privateKey: String(keys[i]) }));
  } catch (err) {
    await terminate(child);
    cleanup();
    throw new LocalChainError('could not read anvil dev accounts', { cause: err });
  }

  let stopping: Promise<void> | undefined;
  return {
    rpcUrl,
    chainId,
    accounts: devAccounts,
    pid: child.pid ?? -1,
    stop() {
      stopping ??= terminate(child).finally(cleanup);
      return stopping;
    },
  };
}

/** SIGTERM (anvil saves --state on a clean exit), then SIGKILL after 5 s. */
function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
