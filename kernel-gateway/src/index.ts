// @kinesis/kernel-gateway: startGateway() listens; createGateway() is the same gateway as
// plain handlers, for in-process tests and embedding.
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { createGateway, type Gateway, type GatewayDeps } from './app.ts';
import type { Tuning } from './config.ts';
import type { CullOptions } from './kernels/culler.ts';
import { consoleLogger, type Logger } from './logger.ts';

export { createGateway, type Gateway, type GatewayDeps } from './app.ts';
export type { Tuning } from './config.ts';
export type { CullOptions } from './kernels/culler.ts';
export type { KernelModel } from './kernels/kernel.ts';
export { consoleLogger, silentLogger, type Logger } from './logger.ts';

export interface StartGatewayOptions {
  /** TCP port; 0 or omitted picks a free one. */
  readonly port?: number;
  /** Default 127.0.0.1. */
  readonly host?: string;
  readonly token: string;
  readonly dataDir: string;
  readonly ideDistDir?: string;
  readonly notebookDir?: string;
  readonly bufferBytes?: number;
  readonly cull?: CullOptions;
  readonly logger?: Logger;
  readonly tuning?: Partial<Tuning>;
  readonly extraRoutes?: GatewayDeps['extraRoutes'];
  /** The local chain (from `npm start`); the ledger uses it where present. */
  readonly chain?: { readonly rpcUrl: string; readonly chainId: number; readonly escrow: string; readonly token: string };
}

export interface RunningGateway {
  /** `http://host:port` (no token in it). */
  readonly url: string;
  readonly port: number;
  readonly token: string;
  readonly gateway: Gateway;
  /** Ends every socket and timer; safe to call twice. */
  close(): Promise<void>;
}

export async function startGateway(opts: StartGatewayOptions): Promise<RunningGateway> {
  const logger = opts.logger ?? consoleLogger();
  const gateway = createGateway({
    token: opts.token,
    dataDir: opts.dataDir,
    logger,
    ...(opts.ideDistDir !== undefined ? { ideDistDir: opts.ideDistDir } : {}),
    ...(opts.notebookDir !== undefined ? { notebookDir: opts.notebookDir } : {}),
    ...(opts.bufferBytes !== undefined ? { bufferBytes: opts.bufferBytes } : {}),
    ...(opts.cull !== undefined ? { cull: opts.cull } : {}),
    ...(opts.tuning !== undefined ? { tuning: opts.tuning } : {}),
    ...(opts.extraRoutes !== undefined ? { extraRoutes: opts.extraRoutes } : {}),
    ...(opts.chain !== undefined ? { chainId: opts.chain.chainId } : {}),
  });
  const server: Server = createServer({ noDelay: true, keepAlive: true }, gateway.handleRequest);
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    s.setNoDelay(true);
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('upgrade', gateway.handleUpgrade);
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  const host = opts.host ?? '127.0.0.1';
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await gateway.close();
    throw err;
  }
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : (opts.port ?? 0);
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const url = `http://${shownHost}:${port}`;
  logger.info('gateway listening', { url, gatewayId: gateway.gatewayId });
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    token: opts.token,
    gateway,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((r) => server.close(() => r()));
        await gateway.close();
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
        await stopped;
      })();
      return closing;
    },
  };
}
