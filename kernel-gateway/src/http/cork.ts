// Coalesces every write to a socket made during one turn of the event loop into one writev:
// a burst of kernel messages (a reply between busy and idle, a flood of stdout) costs one
// system call per socket instead of one per message. ws's own per-frame cork/uncork nests
// inside ours (Node counts cork levels), so nothing leaves before the turn ends.
import type { Duplex } from 'node:stream';

const corked = new WeakSet<Duplex>();

export function corkForTick(socket: Duplex | undefined): void {
  if (!socket || corked.has(socket) || socket.destroyed) return;
  corked.add(socket);
  socket.cork();
  process.nextTick(() => {
    corked.delete(socket);
    socket.uncork();
  });
}
