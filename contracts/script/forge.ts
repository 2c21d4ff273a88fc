// Runs forge (the binary from @foundry-rs/forge) in contracts/, offline: foundry.toml points
// its `solc` at scripts/solc-shim, which answers through solc-js. Node only.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CONTRACTS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function forgeBinaryPath(): string {
  const require = createRequire(import.meta.url);
  const pkg = `@foundry-rs/forge-${process.platform === 'darwin' ? 'darwin' : 'linux'}-${process.arch === 'arm64' ? 'arm64' : 'amd64'}`;
  const bin = join(dirname(require.resolve(`${pkg}/package.json`)), 'bin', 'forge');
  if (!existsSync(bin)) throw new Error(`forge binary missing at ${bin}; run npm install`);
  return bin;
}

export interface ForgeResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runForge(args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<ForgeResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(forgeBinaryPath(), [...args], {
      cwd: CONTRACTS_DIR,
      // No colour codes in captured output; never phone home.
      env: { ...process.env, NO_COLOR: '1', FOUNDRY_OFFLINE: 'true', FOUNDRY_DISABLE_NIGHTLY_WARNING: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}
