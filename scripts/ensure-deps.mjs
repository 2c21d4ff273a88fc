#!/usr/bin/env node
// Makes `npm start`, `npm test` and `npm run bench` work on a fresh machine of this kind:
// installs npm dependencies when they are missing or stale, and Debian packages that the
// real neighbours need (ipykernel for kernels, jupyter-server for compatibility tests,
// chromium for browser tests). Without root it stops with the exact command to run.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const log = (m) => process.stderr.write(`[kinesis setup] ${m}\n`);

// --- npm ---------------------------------------------------------------
const lock = join(root, 'package-lock.json');
const marker = join(root, 'node_modules', '.package-lock.json');
const stale = !existsSync(marker) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs + 1000);
if (stale) {
  log('installing npm dependencies (npm ci)…');
  const cmd = existsSync(lock) ? ['ci', '--no-audit', '--no-fund'] : ['install', '--no-audit', '--no-fund'];
  const r = spawnSync('npm', cmd, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) { log('npm install failed'); process.exit(r.status ?? 1); }
}

// --- Debian packages -----------------------------------------------------
// Each entry: the package, and a check that says whether it is usable already.
const needs = [
  ['python3-ipykernel', () => ok('/usr/bin/python3', ['-c', 'import ipykernel'])],
  ['python3-numpy', () => ok('/usr/bin/python3', ['-c', 'import numpy'])],
  ['python3-matplotlib', () => ok('/usr/bin/python3', ['-c', 'import matplotlib'])],
  ['python3-jupyter-server', () => ok('/usr/bin/python3', ['-c', 'import jupyter_server'])],
  ['chromium', () => existsSync('/usr/bin/chromium')],
  ['gcc', () => ok('gcc', ['--version'])],
];
if (process.env.KINESIS_SKIP_APT !== '1') {
  const missing = needs.filter(([, check]) => !check()).map(([name]) => name);
  if (missing.length > 0) {
    const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    if (!isRoot) {
      log(`missing Debian packages: ${missing.join(' ')}`);
      log(`install them with:  sudo apt-get update && sudo apt-get install -y ${missing.join(' ')}`);
      process.exit(1);
    }
    log(`installing Debian packages: ${missing.join(' ')}…`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('apt-get', ['update', '-q'], { stdio: 'inherit', env });
    execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing, 'fonts-dejavu-core'], { stdio: 'inherit', env });
  }
}

function ok(cmd, args) {
  try { return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0; } catch { return false; }
}
