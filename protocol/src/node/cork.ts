// Coalesces writes to a socket into one writev per event-loop pass: a burst of kernel
// messages (a reply and the `idle` after it, a flood of stdout, requests from many clients
// for one tunnel) costs one system call per socket instead of one per message, and the
// peer process wakes once per burst instead of once per message: on a 2-core machine that
// runs the kernel, provider, gateway and client together, each wake-up competes with the
// kernel for a core. Used by the gateway and the provider (Node only).
//
// When the flush is due, it waits one more loop pass: setImmediate, then setImmediate
// again. Because an immediate is pending, the pass in between polls for I/O without
// blocking, so messages that arrived while we were busy with the first ones (ipykernel
// publishes `idle` ~0.1 ms after its reply) join the same writev. A lone message waits only
// for that non-blocking poll, never for a timer. ws's own per-frame cork/uncork nests
// inside ours (Node counts cork levels), so nothing leaves before the flush.
import type { Duplex } from 'node:stream';

let corked = new Set<Duplex>();
let scheduled = false;

function flush(): void {
  scheduled = false;
  const sockets = corked;
  corked = new Set();
  for (const s of sockets) {
    if (held.has(s)) corked.add(s); // stays corked until releaseFlush or its hold times out
    else if (!s.destroyed) s.uncork();
  }
}

export function corkForTick(socket: Duplex | undefined): void {
  if (!socket || socket.destroyed || corked.has(socket)) return;
  corked.add(socket);
  socket.cork();
  if (!scheduled) {
    scheduled = true;
    setImmediate(() => setImmediate(flush));
  }
}

// ---- holding a flush for a message known to follow ------------------------------------

const held = new Map<Duplex, NodeJS.Timeout>();

/**
 * Keeps `socket` corked past its next flush, until releaseFlush() or `maxMs` elapse. For a
 * message that is known to come right behind what was just written: a kernel publishes
 * `status: idle` just after each reply, and a client waits for both, so sending them in one
 * writev costs that client nothing and saves a system call and a wake-up on every hop.
 */
export function holdFlush(socket: Duplex | undefined, maxMs: number): void {
  if (!socket || socket.destroyed || held.has(socket)) return;
  corkForTick(socket);
  const t = setTimeout(() => releaseFlush(socket), maxMs);
  t.unref();
  held.set(socket, t);
}

/** Ends a hold: the socket's writes leave now (in one writev). */
export function releaseFlush(socket: Duplex | undefined): void {
  if (!socket) return;
  const t = held.get(socket);
  if (t === undefined) return;
  clearTimeout(t);
  held.delete(socket);
  if (corked.delete(socket) && !socket.destroyed) socket.uncork();
}
