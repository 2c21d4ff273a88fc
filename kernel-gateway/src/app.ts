// createGateway(deps): the whole gateway as request and upgrade handlers, apart from the
// Node entry that listens (index.ts), so tests can drive it in-process.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { TUNNEL_PATH, TUNNEL_SUBPROTOCOL, V1_SUBPROTOCOL } from '@kinesis/protocol';
import { apiRoutes } from './api/routes.ts';
import { needsToken, presentedToken, tokenMatches } from './auth.ts';
import { DEFAULT_BUFFER_BYTES, DEFAULT_TUNING, type Tuning } from './config.ts';
import { contentsRoutes } from './contents/index.ts';
import { Router, sendJson, type Route } from './http/router.ts';
import { acceptChannel } from './kernels/channels.ts';
import { Culler, type CullOptions } from './kernels/culler.ts';
import { CLOSE_RESTARTING, KernelManager } from './kernels/manager.ts';
import { kernelRoutes } from './kernels/routes.ts';
import { kernelspecRoutes } from './kernelspecs/routes.ts';
import { openLedger, usageRoutes, type Ledger } from './ledger/index.ts';
import { closingReceiptRecorder, receiptRecorder } from './receipts.ts';
import { consoleLogger, errorText, type Logger } from './logger.ts';
import { closeSockets, ProviderRegistry } from './providers/registry.ts';
import { providerRoutes } from './providers/routes.ts';
import { acceptTunnel, TunnelSocket } from './providers/tunnel-socket.ts';
import { sessionRoutes } from './sessions/routes.ts';
import { SessionStore } from './sessions/store.ts';
import { loadState, saveState } from './state-file.ts';
import { staticRoutes } from './static/index.ts';

export interface GatewayDeps {
  readonly token: string;
  readonly dataDir: string;
  /** Built IDE to serve at `/` (ide/dist); omitted: no IDE. */
  readonly ideDistDir?: string;
  /** Root of /api/contents; default `<dataDir>/notebooks`. */
  readonly notebookDir?: string;
  /** Bytes of kernel output kept per disconnected client session (default 16 MiB). */
  readonly bufferBytes?: number;
  readonly cull?: CullOptions;
  readonly logger?: Logger;
  readonly tuning?: Partial<Tuning>;
  /** More routes (behind the token when under /api), mounted before the IDE's. */
  readonly extraRoutes?: readonly Route[];
  /** Chain id of the receipts' EIP-712 domain (default 31337, the local anvil chain). */
  readonly chainId?: number | bigint;
}

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer, url: URL) => void;

export interface Gateway {
  readonly gatewayId: string;
  readonly manager: KernelManager;
  readonly providers: ProviderRegistry;
  readonly sessions: SessionStore;
  readonly culler: Culler;
  readonly ledger: Ledger;
  readonly tuning: Tuning;
  handleRequest(req: IncomingMessage, res: ServerResponse): void;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Serves WebSocket upgrades on `pathPrefix` (token checked first when under /api). */
  addUpgrade(pathPrefix: string, handler: UpgradeHandler): void;
  close(): Promise<void>;
}

const CHANNELS_RE = /^\/api\/kernels\/([^/]+)\/channels\/?$/;

export function createGateway(deps: GatewayDeps): Gateway {
  if (!deps.token) throw new Error('a token is required');
  const logger = deps.logger ?? consoleLogger();
  const tuning: Tuning = { ...DEFAULT_TUNING, ...deps.tuning };
  mkdirSync(deps.dataDir, { recursive: true, mode: 0o700 });
  const gatewayId = loadGatewayId(deps.dataDir);
  const started = new Date();
  const ledger = openLedger({ dataDir: deps.dataDir, chainId: deps.chainId ?? 31337 });

  const providers = new ProviderRegistry({
    gatewayId,
    initialCredit: tuning.initialCredit,
    creditBatchBytes: tuning.creditBatchBytes,
    maxFrameBytes: tuning.maxTunnelFrameBytes,
    // A message may be as large as a frame, so the budget always takes at least one; and it
    // stays within what a provider accepts in welcome (1 MiB to 1 TiB).
    maxPartialBytes: Math.min(2 ** 40, Math.max(tuning.maxPartialBytes, tuning.maxTunnelFrameBytes, 1024 * 1024)),
    requestTimeoutMs: tuning.requestTimeoutMs,
    handshakeTimeoutMs: tuning.handshakeTimeoutMs,
    pingIntervalMs: tuning.providerPingIntervalMs,
    pingTimeoutMs: tuning.providerPingTimeoutMs,
    logger,
  });
  const manager = new KernelManager(providers, {
    bufferBytes: deps.bufferBytes ?? DEFAULT_BUFFER_BYTES,
    pendingMaxBytes: tuning.pendingMaxBytes,
    maxDetachedSessions: tuning.maxDetachedSessions,
    clientHighWaterBytes: tuning.clientHighWaterBytes,
    clientMaxBufferedBytes: tuning.clientMaxBufferedBytes,
    startTimeoutMs: tuning.startTimeoutMs,
    restartTimeoutMs: tuning.restartTimeoutMs,
    requestTimeoutMs: tuning.requestTimeoutMs,
    graceMs: tuning.graceMs,
    maxFrameBytes: tuning.maxClientFrameBytes,
    clientPingIntervalMs: tuning.clientPingIntervalMs,
    detachedTtlMs: tuning.detachedTtlMs,
    logger,
    onExecuteReply: receiptRecorder(ledger, logger),
    onClosingReceipt: closingReceiptRecorder(ledger, logger),
  });
  providers.setEvents(manager);
  const sessions = new SessionStore(manager);
  // Kernels and sessions from before a restart (state-file.ts), then every change written back.
  const stateFile = join(deps.dataDir, 'state.json');
  const saved = loadState(stateFile, logger);
  manager.restore(saved.kernels, saved.tombstones, tuning.restoreGraceMs);
  sessions.restore(saved.sessions);
  let saveQueued = false;
  const saveNow = (): void => {
    saveQueued = false;
    try {
      saveState(stateFile, { kernels: manager.records(), sessions: sessions.records(), tombstones: manager.tombstoneRecords() });
    } catch (e) {
      logger.warn('cannot write the gateway state file', { file: stateFile, error: errorText(e) });
    }
  };
  // One write per event-loop turn however many changes it made (a session and its kernel).
  const save = (): void => {
    if (saveQueued) return;
    saveQueued = true;
    setImmediate(saveNow);
  };
  manager.onChanged(save);
  sessions.onChanged(save);
  const culler = new Culler(manager, deps.cull ?? {}, logger);

  const notebookDir = deps.notebookDir ?? join(deps.dataDir, 'notebooks');
  mkdirSync(notebookDir, { recursive: true });
  const api = new Router({ maxBodyBytes: tuning.maxBodyBytes });
  api.add(
    ...apiRoutes(manager, started),
    ...kernelspecRoutes(manager),
    ...kernelRoutes(manager, tuning.maxRestWaitMs),
    ...sessionRoutes(sessions, logger),
    ...providerRoutes(manager),
    ...contentsRoutes({ rootDir: notebookDir }),
    ...usageRoutes(ledger),
    ...(deps.extraRoutes ?? []),
  );
  const site = new Router();
  if (deps.ideDistDir) site.add(...staticRoutes({ distDir: deps.ideDistDir }));

  // perMessageDeflate off: compression costs latency and memory per socket for payloads that
  // are mostly small JSON or already-compressed images.
  const channelsWss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    clientTracking: false,
    maxPayload: tuning.maxClientFrameBytes,
    // Pongs are sent by ClientConnection.pong, which holds one back while a frame is being
    // streamed to that client (kernels/client.ts).
    autoPong: false,
    handleProtocols: (offered) => (offered.has(V1_SUBPROTOCOL) ? V1_SUBPROTOCOL : false),
  });
  const clientSockets = new Set<WebSocket>();
  const upgrades: { prefix: string; handler: UpgradeHandler }[] = [];
  let closed = false;

  const authorized = (req: IncomingMessage, url: URL): boolean => !needsToken(url.pathname) || tokenMatches(presentedToken(req, url), deps.token);

  const handleRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const url = parseUrl(req);
    if (!url) return sendJson(res, 400, { message: 'malformed request URL', reason: 'Bad Request' });
    if (!authorized(req, url)) return sendJson(res, 403, { message: 'Forbidden: missing or invalid token', reason: 'Forbidden' });
    manager.flushReceipts(); // receipts wait for their kernel's idle; a reader of the ledger sees them all
    void (async () => {
      try {
        if (await api.handle(req, res, url)) return;
        if (!url.pathname.startsWith('/api/') && url.pathname !== '/api' && (await site.handle(req, res, url))) return;
        sendJson(res, 404, { message: `no route for ${req.method ?? '?'} ${url.pathname.slice(0, 200)}`, reason: 'Not Found' });
      } catch (err) {
        logger.error('request failed', { path: url.pathname, error: errorText(err) });
        if (!res.headersSent) sendJson(res, 500, { message: 'internal server error', reason: 'Internal Server Error' });
        else res.destroy();
      }
    })();
  };

  const handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    setNoDelay(socket);
    socket.on('error', () => socket.destroy());
    const url = parseUrl(req);
    if (closed) return rejectUpgrade(socket, 503, 'the gateway is shutting down');
    if (!url) return rejectUpgrade(socket, 400, 'malformed request URL');
    if (url.pathname === TUNNEL_PATH) {
      const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
      if (!offered.includes(TUNNEL_SUBPROTOCOL)) return rejectUpgrade(socket, 400, `the tunnel needs the ${TUNNEL_SUBPROTOCOL} subprotocol`);
      // Anyone may open a tunnel; only so many may be proving their key at once.
      if (providers.handshaking >= tuning.maxPendingTunnels) return rejectUpgrade(socket, 503, 'too many tunnels are being set up; try again shortly');
      // Our own WebSocket endpoint, not ws's: it hands large output on without copying it
      // (providers/tunnel-socket.ts).
      const ws = acceptTunnel(req, socket, head, TUNNEL_SUBPROTOCOL, {
        maxPayload: tuning.maxTunnelFrameBytes,
        onListenerError: (err) => logger.error('error handling a tunnel message; closing that tunnel', { error: errorText(err) }),
      });
      if (!(ws instanceof TunnelSocket)) return rejectUpgrade(socket, ws.status, ws.message, ws.headers);
      providers.accept(ws).catch((err: unknown) => {
        logger.error('tunnel setup failed', { error: errorText(err) });
        ws.terminate();
      });
      return;
    }
    if (!authorized(req, url)) return rejectUpgrade(socket, 403, 'Forbidden: missing or invalid token');
    const m = CHANNELS_RE.exec(url.pathname);
    if (m) {
      const id = safeDecode(m[1] ?? '');
      const kernel = id === undefined ? undefined : manager.get(id);
      if (!kernel) return rejectUpgrade(socket, 404, `kernel ${(id ?? '').slice(0, 64)} not found`);
      const sessionId = url.searchParams.get('session_id') ?? '';
      if (sessionId.length > 256) return rejectUpgrade(socket, 400, 'session_id is too long');
      // Kinesis extension (docs/protocols.md): the last message the client read, to resume after.
      const lastMsgId = url.searchParams.get('kinesis_last_msg_id') ?? undefined;
      if (lastMsgId !== undefined && (lastMsgId.length > 256 || !/^[\x21-\x7e]*$/.test(lastMsgId))) return rejectUpgrade(socket, 400, 'kinesis_last_msg_id must be at most 256 printable ASCII characters');
      if (lastMsgId !== undefined && sessionId === '') return rejectUpgrade(socket, 400, 'kinesis_last_msg_id needs a session_id');
      channelsWss.handleUpgrade(req, socket, head, (ws) => {
        if (closed || manager.get(kernel.id) !== kernel) {
          ws.close(1001, 'kernel is gone');
          return;
        }
        clientSockets.add(ws);
        ws.once('close', () => clientSockets.delete(ws));
        acceptChannel(ws, kernel, sessionId, ws.protocol === V1_SUBPROTOCOL, { maxFrameBytes: tuning.maxClientFrameBytes, logger }, socket, lastMsgId);
      });
      return;
    }
    for (const u of upgrades) {
      if (url.pathname === u.prefix || url.pathname.startsWith(u.prefix.endsWith('/') ? u.prefix : `${u.prefix}/`)) {
        u.handler(req, socket, head, url);
        return;
      }
    }
    rejectUpgrade(socket, 404, `no WebSocket endpoint at ${url.pathname.slice(0, 200)}`);
  };

  return {
    gatewayId,
    manager,
    providers,
    sessions,
    culler,
    ledger,
    tuning,
    handleRequest,
    handleUpgrade,
    addUpgrade(prefix, handler) {
      upgrades.push({ prefix, handler });
    },
    async close() {
      if (closed) return;
      closed = true;
      culler.dispose();
      // Kernels first: their clients close through ClientConnection, which never writes a
      // close frame into the middle of a frame being streamed (kernels/client.ts).
      await manager.dispose();
      if (saveQueued) saveNow();
      await closeSockets([...clientSockets], CLOSE_RESTARTING, 'gateway restarting', 500);
      await providers.close();
      ledger.close();
    },
  };
}

function loadGatewayId(dataDir: string): string {
  const file = join(dataDir, 'gateway-id');
  try {
    const id = readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f]{32}$/.test(id)) return id;
  } catch {
    // first run
  }
  const id = randomBytes(16).toString('hex');
  writeFileSync(file, id + '\n', { mode: 0o600 });
  return id;
}

function parseUrl(req: IncomingMessage): URL | undefined {
  try {
    return new URL(req.url ?? '/', 'http://gateway.invalid');
  } catch {
    return undefined;
  }
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

function setNoDelay(socket: Duplex): void {
  const s = socket as Duplex & { setNoDelay?: (v: boolean) => void };
  s.setNoDelay?.(true);
}

/** Answers an upgrade request with a plain HTTP error (JSON body, as the REST API). */
function rejectUpgrade(socket: Duplex, status: number, message: string, headers: Readonly<Record<string, string>> = {}): void {
  const reason = { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 426: 'Upgrade Required', 503: 'Service Unavailable' }[status] ?? 'Error';
  const body = JSON.stringify({ message, reason });
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
    );
  }
  setTimeout(() => socket.destroy(), 1000).unref();
}
