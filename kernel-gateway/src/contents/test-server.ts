// In-process HTTP server mounting the contents routes, for this folder's tests.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Router, sendError } from '../http/router.ts';
import { contentsRoutes } from './index.ts';
import type { ContentsOptions } from './index.ts';

export interface TestServer {
  readonly url: string;
  readonly root: string;
  close(): Promise<void>;
}

export async function startContentsServer(opts: Partial<ContentsOptions> = {}): Promise<TestServer> {
  const root = await mkdtemp(path.join(tmpdir(), 'kinesis-contents-'));
  const router = new Router({ maxBodyBytes: 1024 * 1024 }).add(...contentsRoutes({ rootDir: root, ...opts }));
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    // Router.handle can reject (it decodes params before its own try), so errors are
    // mapped here too, as the gateway's app does.
    router.handle(req, res, url).then(
      (handled) => {
        if (!handled) res.writeHead(404).end();
      },
      (err: unknown) => sendError(res, err),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    root,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await rm(root, { recursive: true, force: true });
    },
  };
}
