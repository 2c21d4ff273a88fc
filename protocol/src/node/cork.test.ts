// cork.ts against real TCP sockets: writes of one loop pass leave together, a held flush
// waits for its release (or its time limit), and nothing is ever lost.
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { corkForTick, holdFlush, releaseFlush } from './cork.ts';

const sockets: net.Socket[] = [];
let server: net.Server | undefined;

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A connected pair; `chunks` records each read on the receiving side with its time. */
async function pair(): Promise<{ tx: net.Socket; chunks: Array<{ at: number; data: string }> }> {
  const chunks: Array<{ at: number; data: string }> = [];
  server = net.createServer((rx) => {
    sockets.push(rx);
    rx.on('data', (d: Buffer) => chunks.push({ at: performance.now(), data: d.toString() }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const tx = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  tx.setNoDelay(true);
  sockets.push(tx);
  await once(tx, 'connect');
  return { tx, chunks };
}

const until = async (ok: () => boolean, ms = 2000): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 1));
  }
};

describe('cork', () => {
  it('sends the writes of one pass in one write', async () => {
    const { tx, chunks } = await pair();
    // Count system-call batches: net.Socket sends through _write (one chunk) or _writev.
    let writes = 0;
    const one = tx._write.bind(tx);
    const many = tx._writev!.bind(tx);
    tx._write = (c, e, cb) => {
      writes++;
      one(c, e, cb);
    };
    tx._writev = (c, cb) => {
      writes++;
      many(c, cb);
    };
    for (const part of ['a', 'b', 'c']) {
      corkForTick(tx);
      tx.write(part);
    }
    await until(() => chunks.map((c) => c.data).join('') === 'abc');
    expect(writes).toBe(1);
  });

  it('holds a flush until released, then sends everything at once', async () => {
    const { tx, chunks } = await pair();
    corkForTick(tx);
    tx.write('reply;');
    holdFlush(tx, 5000);
    await new Promise((r) => setTimeout(r, 50)); // several loop passes: still held
    expect(chunks).toEqual([]);
    tx.write('idle;');
    releaseFlush(tx);
    await until(() => chunks.map((c) => c.data).join('') === 'reply;idle;');
  });

  it('lets a held flush go after its time limit', async () => {
    const { tx, chunks } = await pair();
    const t0 = performance.now();
    corkForTick(tx);
    tx.write('reply;');
    holdFlush(tx, 30);
    await until(() => chunks.length > 0);
    expect(chunks[0]!.data).toBe('reply;');
    expect(chunks[0]!.at - t0).toBeGreaterThanOrEqual(25);
    releaseFlush(tx); // late release: harmless
    corkForTick(tx);
    tx.write('next;');
    await until(() => chunks.map((c) => c.data).join('') === 'reply;next;');
  });
});
