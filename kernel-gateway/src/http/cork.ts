// Coalesces writes to a socket into one writev per event-loop pass: a burst of kernel
// messages (a reply and the `idle` after it, a flood of stdout, requests from many clients
// for one tunnel) costs one system call per socket instead of one per message. System
// calls that wake a peer process are the largest cost of a small round trip here
// (~100-200 µs each under a sandboxing kernel), far more than the JS work per message.
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
  for (const s of sockets) if (!s.destroyed) s.uncork();
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
