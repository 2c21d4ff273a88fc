// What the IDE's browser tests and benchmark stand on: the built app served by the
// gateway's own static routes, /api proxied (HTTP and WebSocket) to a real Jupyter
// Server with real ipykernel (the API the Kinesis gateway implements), and Debian's
// Chromium driven by playwright-core. Every process and server started here is
// owned by the returned handle and stopped by its close().
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import { connect, createServer as createNetServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { Router, sendError } from '../../kernel-gateway/src/http/router.ts';
import { staticRoutes } from '../../kernel-gateway/src/static/index.ts';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DIST = path.join(REPO, 'ide/dist');
export const PYTHON = '/usr/bin/python3';
export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'];

function newestMtime(dir: string): number {
  let max = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    max = Math.max(max, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return max;
}

const sleepSync = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};

/**
 * Builds ide/dist with vite unless it is newer than every source file. Test files run
 * in parallel workers, so one builds (holding a lock directory) while others wait.
 */
export function ensureBuilt(): void {
  const index = path.join(DIST, 'index.html');
  const fresh = (): boolean => {
    const srcTime = Math.max(newestMtime(path.join(REPO, 'ide/src')), statSync(path.join(REPO, 'ide/index.html')).mtimeMs, statSync(path.join(REPO, 'vite.config.ts')).mtimeMs);
    return existsSync(index) && statSync(index).mtimeMs > srcTime;
  };
  if (fresh()) return;
  const lock = path.join(tmpdir(), `kinesis-ide-build-${Buffer.from(REPO).toString('hex').slice(-24)}.lock`);
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock left by a killed run (a build takes well under a minute) is stale.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 300_000) rmdirSync(lock);
      } catch {
        // released meanwhile
      }
      if (Date.now() > deadline) throw new Error(`waited 180 s for another IDE build (lock ${lock})`);
      sleepSync(250);
      if (!existsSync(lock) && fresh()) return;
    }
  }
  try {
    if (fresh()) return;
    const r = spawnSync(process.execPath, [path.join(REPO, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'warn'], { cwd: REPO, stdio: 'pipe', encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`vite build failed:\n${r.stdout}\n${r.stderr}`);
  } finally {
    rmdirSync(lock);
  }
}

export async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface Proc {
  readonly url: string;
  readonly root: string;
  close(): Promise<void>;
  /** Stops the gateway as a deploy would, and `downMs` later starts it again on the same port and data dir. */
  restartGateway?(downMs?: number): Promise<void>;
}

/** True when Debian's jupyter_server and ipykernel are importable by /usr/bin/python3. */
export function hasJupyter(): boolean {
  return spawnSync(PYTHON, ['-c', 'import jupyter_server, ipykernel'], { stdio: 'ignore' }).status === 0;
}

/** Starts a real Jupyter Server on a free port over a fresh temp dir. */
export async function startJupyter(token: string): Promise<Proc> {
  const root = await mkdtemp(path.join(tmpdir(), 'kinesis-ide-e2e-'));
  const port = await freePort();
  const args = ['-m', 'jupyter_server', '--no-browser', `--port=${port}`, '--port-retries=0', '--ServerApp.ip=127.0.0.1', `--ServerApp.token=${token}`, `--ServerApp.root_dir=${root}`, '--ServerApp.disable_check_xsrf=True'];
  if (process.getuid?.() === 0) args.push('--allow-root');
  const child: ChildProcess = spawn(PYTHON, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, JUPYTER_RUNTIME_DIR: path.join(root, '.runtime'), JUPYTER_CONFIG_DIR: path.join(root, '.config'), JUPYTER_DATA_DIR: '/usr/share/jupyter' } });
  let log = '';
  child.stdout?.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`jupyter_server exited:\n${log}`);
    try {
      const r = await fetch(`${url}/api/status`, { headers: { Authorization: `token ${token}` } });
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`jupyter_server did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return {
    url,
    root,
    async close() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      await rm(root, { recursive: true, force: true });
    },
  };
}

export interface IdeServer {
  readonly url: string;
  /** Requests seen on /probe/* (path and Referer), for leak tests. */
  readonly probes: { url: string; referer: string | undefined }[];
  close(): Promise<void>;
}

/**
 * Serves ide/dist with the gateway's static routes and forwards /api (and the
 * kernel WebSocket upgrades) to `upstream`, as the gateway will serve both.
 */
export async function startIdeServer(upstream: string): Promise<IdeServer> {
  const router = new Router().add(...staticRoutes({ distDir: DIST }));
  const up = new URL(upstream);
  const probes: { url: string; referer: string | undefined }[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname.startsWith('/probe/')) {
      probes.push({ url: req.url ?? '', referer: req.headers.referer });
      res.writeHead(200, { 'Content-Type': 'image/gif' }).end(Buffer.from('R0lGODlhAQABAAAAACw=', 'base64'));
      return;
    }
    if (url.pathname.startsWith('/api/')) {
      const p = request({ host: up.hostname, port: up.port, path: req.url, method: req.method, headers: { ...req.headers, host: up.host } }, (r: IncomingMessage) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      // The upstream going away (at shutdown) is a 502 for this one request, not a crash.
      p.on('error', () => {
        if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'application/json' }).end('{"message":"upstream unavailable"}');
        else res.destroy();
      });
      req.pipe(p);
      return;
    }
    router.handle(req, res, url).then((h) => h || res.writeHead(404).end(), (e: unknown) => sendError(res, e));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req, socket, head) => {
    sockets.add(socket as Socket);
    const target = connect(Number(up.port), up.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const k = req.rawHeaders[i] as string;
        lines.push(`${k}: ${k.toLowerCase() === 'host' ? up.host : k.toLowerCase() === 'origin' ? up.origin : req.rawHeaders[i + 1]}`);
      }
      target.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) target.write(head);
      target.pipe(socket);
      socket.pipe(target);
    });
    sockets.add(target);
    const end = (): void => {
      target.destroy();
      socket.destroy();
    };
    target.on('error', end);
    socket.on('error', end);
    target.on('close', end);
    socket.on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    probes,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * The Kinesis stack as `npm start` runs it, minus the chain: the gateway (serving the
 * built IDE and the contents API over `root`) and one provider on this machine,
 * metering and signing receipts. `root` is the notebook directory.
 */
export async function startKinesis(token: string, pricePerKwh = 300_000n): Promise<Proc> {
  const base = await mkdtemp(path.join(tmpdir(), 'kinesis-ide-stack-'));
  const root = path.join(base, 'notebooks');
  const { startGateway, silentLogger } = await import('@kinesis/kernel-gateway');
  const { startProvider } = await import('@kinesis/provider-kernel');
  const gwOpts = { token, dataDir: path.join(base, 'gateway'), notebookDir: root, ideDistDir: DIST, logger: silentLogger };
  let gw = await startGateway({ port: 0, ...gwOpts });
  let provider: { close(): Promise<void> } | undefined;
  try {
    provider = await startProvider({ gatewayUrl: gw.url, dataDir: path.join(base, 'provider'), name: 'ide-e2e', pricePerKwh, waitForConnection: true, logger: silentLogger, nvidiaSmi: false });
    // the provider's kernelspecs reach the gateway right after the handshake
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await fetch(`${gw.url}/api/kernelspecs`, { headers: { Authorization: `token ${token}` } });
      const specs = (await r.json()) as { kernelspecs?: Record<string, unknown> };
      if (Object.keys(specs.kernelspecs ?? {}).length) break;
      if (Date.now() > deadline) throw new Error('the provider offered no kernelspecs');
      await new Promise((res) => setTimeout(res, 100));
    }
  } catch (err) {
    await provider?.close();
    await gw.close();
    await rm(base, { recursive: true, force: true });
    throw err;
  }
  const port = Number(new URL(gw.url).port);
  return {
    url: gw.url,
    root,
    async close() {
      await provider?.close();
      await gw.close();
      await rm(base, { recursive: true, force: true });
    },
    async restartGateway(downMs = 0) {
      await gw.close();
      await new Promise((r) => setTimeout(r, downMs));
      gw = await startGateway({ port, ...gwOpts });
    },
  };
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

export const ARTIFACTS = path.join(REPO, 'test-artifacts/ide');
