// A TCP proxy that makes a loopback connection behave like a wide-area link: each direction
// carries at most `bytesPerSecond` and delivers every byte `delayMs` after it was sent.
// Benchmarks put one between a provider and the gateway (a home uplink) and one between a
// client and the gateway, where store-and-forward and cut-through relaying differ most.
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface ThrottleProxy {
  readonly port: number;
  close(): Promise<void>;
}

export interface LinkShape {
  readonly bytesPerSecond: number;
  readonly delayMs: number;
}

/** Most bytes in flight inside the proxy per direction before it stops reading (TCP backpressure takes over). */
const MAX_QUEUED = 256 * 1024;
const SLICE = 16 * 1024;

function pipeShaped(from: Socket, to: Socket, shape: LinkShape): void {
  // One FIFO per direction, released by one timer: separate timers per slice could fire out
  // of order (Node rounds their delays to whole milliseconds).
  const queue: { due: number; bytes: Buffer }[] = [];
  let head = 0;
  let linkFreeAt = 0;
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const pump = (): void => {
    timer = undefined;
    const now = performance.now();
    while (head < queue.length && queue[head]!.due <= now) {
      const { bytes } = queue[head++]!;
      queued -= bytes.length;
      if (!to.destroyed) to.write(bytes);
    }
    if (head > 1024) {
      queue.splice(0, head);
      head = 0;
    }
    if (queued < MAX_QUEUED && from.isPaused()) from.resume();
    if (head < queue.length) timer = setTimeout(pump, Math.max(0, queue[head]!.due - now));
    else if (ended) to.end();
  };
  from.on('data', (chunk: Buffer) => {
    for (let at = 0; at < chunk.length; at += SLICE) {
      const bytes = chunk.subarray(at, at + SLICE);
      // Serialization at the link's rate, then propagation delay.
      linkFreeAt = Math.max(performance.now(), linkFreeAt) + (bytes.length / shape.bytesPerSecond) * 1000;
      queue.push({ due: linkFreeAt + shape.delayMs, bytes });
      queued += bytes.length;
    }
    if (queued >= MAX_QUEUED) from.pause();
    timer ??= setTimeout(pump, Math.max(0, queue[head]!.due - performance.now()));
  });
  from.on('end', () => {
    ended = true;
    timer ??= setTimeout(pump, 0);
  });
  from.on('error', () => to.destroy());
}

export async function startThrottleProxy(targetPort: number, shape: LinkShape): Promise<ThrottleProxy> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = connect(targetPort, '127.0.0.1');
    for (const s of [inbound, outbound]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    pipeShaped(inbound, outbound, shape);
    pipeShaped(outbound, inbound, shape);
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
