import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import * as zmq from 'zeromq';
import { prng, randomBytes } from '@kinesis/protocol/testing/prng';
import { ZmtpSubDecoder, ZmtpSubscriber, type LargeFrameSink, type ZmtpSubHandlers } from './zmtp-sub.ts';

// ---- a PUB peer's side of ZMTP 3.0, written from RFC 23 for these tests -------------------

const PUB_GREETING = (() => {
  const g = Buffer.alloc(64);
  g[0] = 0xff;
  g[8] = 1;
  g[9] = 0x7f;
  g[10] = 3;
  g[11] = 1;
  g.write('NULL', 12, 'latin1');
  return g;
})();

function frame(body: Buffer, flags: number): Buffer {
  if (body.length < 256) return Buffer.concat([Buffer.from([flags, body.length]), body]);
  const head = Buffer.alloc(9);
  head[0] = flags | 2;
  head.writeBigUInt64BE(BigInt(body.length), 1);
  return Buffer.concat([head, body]);
}

function commandFrame(name: string, rest: Buffer = Buffer.alloc(0)): Buffer {
  return frame(Buffer.concat([Buffer.from([name.length]), Buffer.from(name, 'latin1'), rest]), 4);
}

function readyOf(socketType: string): Buffer {
  const v = Buffer.from(socketType, 'latin1');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(v.length);
  return commandFrame('READY', Buffer.concat([Buffer.from([11]), Buffer.from('Socket-Type', 'latin1'), len, v]));
}

function message(frames: readonly Buffer[]): Buffer {
  return Buffer.concat(frames.map((f, i) => frame(f, i < frames.length - 1 ? 1 : 0)));
}

/** Everything a PUB sends after its greeting has crossed: the rest of the stream a decoder sees. */
const HANDSHAKE = Buffer.concat([PUB_GREETING, readyOf('PUB')]);

interface Seen {
  messages: { frames: Buffer[]; streamed: boolean }[];
  large: { before: number; size: number; more: boolean }[];
  aborts: boolean[];
  oversize: number[];
  sent: Buffer[];
}

function decoder(o: { stream?: boolean; largeFrameBytes?: number; maxFrameBytes?: number; maxFrames?: number } = {}): { d: ZmtpSubDecoder; seen: Seen; sinks: { sink: LargeFrameSink; steps: number[] }[] } {
  const seen: Seen = { messages: [], large: [], aborts: [], oversize: [], sent: [] };
  const sinks: { sink: LargeFrameSink; steps: number[] }[] = [];
  const h: ZmtpSubHandlers = {
    onMessage: (frames, streamed) => seen.messages.push({ frames: frames.map((f) => Buffer.from(f)), streamed }),
    onLargeFrame: (before, size, more) => {
      seen.large.push({ before: before.length, size, more });
      if (!o.stream) return undefined;
      const steps: number[] = [];
      const sink = { buffer: Buffer.alloc(size), progress: (n: number) => steps.push(n) };
      sinks.push({ sink, steps });
      return sink;
    },
    onAbort: (streamed) => seen.aborts.push(streamed),
    onOversize: (_f, size) => seen.oversize.push(size),
  };
  const d = new ZmtpSubDecoder(h, (b) => seen.sent.push(Buffer.from(b)), { largeFrameBytes: o.largeFrameBytes ?? 1000, ...(o.maxFrameBytes ? { maxFrameBytes: o.maxFrameBytes } : {}), ...(o.maxFrames ? { maxFrames: o.maxFrames } : {}) });
  return { d, seen, sinks };
}

/** Feeds `bytes` in random pieces, through push() or, where the decoder offers it, straight into its buffer. */
function feed(d: ZmtpSubDecoder, bytes: Buffer, rand: () => number, direct: boolean): void {
  let at = 0;
  while (at < bytes.length) {
    const target = direct ? d.directTarget() : undefined;
    const want = 1 + Math.floor(rand() * (rand() < 0.2 ? 8 : 5000));
    if (target) {
      const n = Math.min(want, target.length, bytes.length - at);
      bytes.copy(target, 0, at, at + n);
      d.pushDirect(n);
      at += n;
    } else {
      // push() may keep views of what it is given only until it returns: reuse one buffer.
      const n = Math.min(want, bytes.length - at);
      const scratch = Buffer.alloc(n);
      bytes.copy(scratch, 0, at, at + n);
      d.push(scratch);
      scratch.fill(0xee);
      at += n;
    }
  }
}

describe('ZMTP 3.0 SUB decoder', () => {
  it('answers the greeting step by step: signature, rest of the greeting, then READY and a subscription to everything', () => {
    const { d, seen } = decoder();
    expect(ZmtpSubDecoder.hello().equals(PUB_GREETING.subarray(0, 10))).toBe(true);
    d.push(PUB_GREETING.subarray(0, 10));
    expect(seen.sent).toHaveLength(1);
    expect(seen.sent[0]!.length).toBe(54);
    expect(seen.sent[0]![0]).toBe(3); // version 3.0
    expect(seen.sent[0]!.toString('latin1', 2, 6)).toBe('NULL');
    d.push(PUB_GREETING.subarray(10));
    expect(seen.sent).toHaveLength(2);
    const ready = seen.sent[1]!;
    expect(ready[0]).toBe(4); // a command
    expect(ready.toString('latin1', 3, 8)).toBe('READY');
    expect(ready.includes(Buffer.from('Socket-Type\0\0\0\x03SUB', 'latin1'))).toBe(true);
    expect(ready.subarray(ready.length - 3).equals(Buffer.from([0, 1, 1]))).toBe(true); // subscribe to ''
  });

  it('decodes any split of a stream of multipart messages, short and long frames, with PINGs between (seeded, both read paths)', () => {
    for (const direct of [false, true]) {
      for (const stream of [false, true]) {
        const rand = prng(direct ? 7 : 8);
        const { d, seen, sinks } = decoder({ stream, largeFrameBytes: 1000 });
        const want: Buffer[][] = [];
        const chunks: Buffer[] = [HANDSHAKE];
        for (let i = 0; i < 150; i++) {
          const n = 1 + Math.floor(rand() * 7);
          const frames = Array.from({ length: n }, () => randomBytes(rand, rand() < 0.15 ? 1000 + Math.floor(rand() * 20000) : Math.floor(rand() * 300)));
          want.push(frames);
          chunks.push(message(frames));
          if (rand() < 0.2) chunks.push(commandFrame('PING', Buffer.from([0, 10, 1, 2, 3])));
        }
        feed(d, Buffer.concat(chunks), rand, direct);
        expect(seen.messages.map((m) => m.frames)).toEqual(want);
        // Large frames are offered with the number of frames before them; once one is
        // streamed, the rest of its message is not offered.
        const offers: { before: number; size: number; more: boolean }[] = [];
        let streamedMessages = 0;
        for (const frames of want) {
          const large = frames.flatMap((f, i) => (f.length >= 1000 ? [i] : []));
          for (const i of stream ? large.slice(0, 1) : large) offers.push({ before: i, size: frames[i]!.length, more: i < frames.length - 1 });
          if (large.length > 0) streamedMessages++;
        }
        expect(seen.large).toEqual(offers);
        expect(seen.messages.filter((m) => m.streamed)).toHaveLength(stream ? streamedMessages : 0);
        for (const { sink, steps } of sinks) {
          expect(steps.at(-1)).toBe(sink.buffer.length);
          expect(steps.every((s, i) => i === 0 || s > steps[i - 1]!)).toBe(true);
        }
        // Every PING got a PONG echoing its context.
        const pongs = seen.sent.slice(2);
        expect(pongs.length).toBeGreaterThan(0);
        for (const p of pongs) expect(p.equals(Buffer.from([4, 8, 4, ...Buffer.from("PONG"), 1, 2, 3]))).toBe(true);
      }
    }
  });

  it('rejects a peer that is not a NULL-mechanism ZMTP 3 PUB', () => {
    const cases: [string, Buffer][] = [
      ['bad signature', Buffer.concat([Buffer.from([0x01]), PUB_GREETING.subarray(1)])],
      ['ZMTP 2', Buffer.concat([PUB_GREETING.subarray(0, 10), Buffer.from([1]), PUB_GREETING.subarray(11)])],
      ['CURVE', Buffer.concat([PUB_GREETING.subarray(0, 12), Buffer.from('CURVE'.padEnd(20, '\0'), 'latin1'), PUB_GREETING.subarray(32)])],
      ['a ROUTER', Buffer.concat([PUB_GREETING, readyOf('ROUTER')])],
      ['a message before READY', Buffer.concat([PUB_GREETING, message([Buffer.from('x')])])],
      ['a huge command', Buffer.concat([HANDSHAKE, frame(Buffer.alloc(70_000), 4)])],
      ['a command with MORE', Buffer.concat([HANDSHAKE, frame(Buffer.from('\x04PING\0\0'), 5)])],
      ['a command mid-message', Buffer.concat([HANDSHAKE, frame(Buffer.from('a'), 1), commandFrame('PING', Buffer.from([0, 1]))])],
      ['ERROR', Buffer.concat([HANDSHAKE, commandFrame('ERROR', Buffer.from('\x05nope!'))])],
    ];
    for (const [name, bytes] of cases) {
      const { d } = decoder();
      expect(() => d.push(bytes), name).toThrow(/ZMTP|mechanism|PUB|READY|command|error/);
    }
  });

  it('skips a message with a frame over the limit (even one claiming 2^63 bytes) and reads on', () => {
    const { d, seen } = decoder({ maxFrameBytes: 5000 });
    const huge = Buffer.alloc(9);
    huge[0] = 2 | 1;
    huge.writeBigUInt64BE(2n ** 63n, 1);
    d.push(Buffer.concat([HANDSHAKE, message([Buffer.from('a'), Buffer.alloc(6000), Buffer.from('z')]), message([Buffer.from('ok')])]));
    expect(seen.oversize).toEqual([6000]);
    expect(seen.messages.map((m) => m.frames.map(String))).toEqual([['ok']]);
    // A frame that claims more than can ever be sent: skipped, and nothing is allocated for it.
    d.push(Buffer.concat([frame(Buffer.from('b'), 1), huge]));
    expect(seen.oversize).toHaveLength(2);
    expect(d.midMessage).toBe(true);
  });

  it('skips a message of too many frames', () => {
    const { d, seen } = decoder({ maxFrames: 4 });
    d.push(Buffer.concat([HANDSHAKE, message(Array.from({ length: 6 }, (_, i) => Buffer.from(String(i)))), message([Buffer.from('ok')])]));
    expect(seen.oversize).toHaveLength(1);
    expect(seen.messages.map((m) => m.frames.map(String))).toEqual([['ok']]);
  });

  it('reports a message cut off by the connection, saying whether a large frame of it was being streamed', () => {
    const { d, seen } = decoder({ stream: true });
    d.push(Buffer.concat([HANDSHAKE, message([Buffer.from('a')]), frame(Buffer.from('b'), 1)]));
    d.abort();
    expect(seen.aborts).toEqual([false]);
    d.push(Buffer.concat([frame(Buffer.from('c'), 1), message([Buffer.alloc(4000)]).subarray(0, 2500)]));
    d.abort();
    expect(seen.aborts).toEqual([false, true]);
    d.abort(); // nothing under way: nothing to report
    expect(seen.aborts).toEqual([false, true]);
  });
});

// ---- over real sockets ---------------------------------------------------------------

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

function until<T>(get: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      const v = get();
      if (v !== undefined) resolve(v);
      else if (Date.now() > end) reject(new Error('timed out'));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

describe('ZmtpSubscriber', () => {
  it("subscribes to libzmq's PUB (the zeromq package) and gets every frame of large and small messages, streaming the large one", async () => {
    const pub = new zmq.Publisher({ linger: 0 });
    await pub.bind('tcp://127.0.0.1:*');
    closers.push(() => pub.close());
    const port = Number(pub.lastEndpoint!.split(':').at(-1));
    const got: { frames: Buffer[]; streamed: boolean }[] = [];
    const progress: number[] = [];
    const sub = new ZmtpSubscriber(
      { host: '127.0.0.1', port, largeFrameBytes: 1 << 20 },
      {
        onMessage: (frames, streamed) => got.push({ frames, streamed }),
        onLargeFrame: (_before, size) => ({ buffer: Buffer.alloc(size), progress: (n) => progress.push(n) }),
      },
    );
    closers.push(() => sub.close());
    // A SUB gets only what is published after its subscription arrived: publish until one lands.
    await until(() => {
      void pub.send(['hello']);
      return got.length > 0 ? true : undefined;
    });
    const big = randomBytes(prng(3), 6 * 1024 * 1024);
    await pub.send(['topic', Buffer.from('<IDS|MSG>'), big]);
    await pub.send(['after']);
    const ours = (): typeof got => got.filter((m) => String(m.frames[0]) !== 'hello');
    const msgs = await until(() => (ours().length >= 2 ? ours() : undefined));
    expect(msgs[0]!.streamed).toBe(true);
    expect(msgs[0]!.frames.map(String).slice(0, 2)).toEqual(['topic', '<IDS|MSG>']);
    expect(msgs[0]!.frames[2]!.equals(big)).toBe(true);
    expect(progress.at(-1)).toBe(big.length);
    expect(msgs[1]).toEqual({ frames: [Buffer.from('after')], streamed: false });
  });

  it('connects again after the PUB goes away, and keeps trying while nothing listens (as libzmq does)', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const got: string[] = [];
    const aborts: boolean[] = [];
    const conns: net.Socket[] = [];
    server.on('connection', (c) => {
      conns.push(c);
      c.once('data', () => c.write(PUB_GREETING)); // our greeting's signature arrived: answer all at once
    });
    // Each connection's two ends are announced once its handshake is done, and its end after.
    const events: string[] = [];
    const sub = new ZmtpSubscriber(
      { host: '127.0.0.1', port, reconnectMs: 20 },
      {
        onMessage: (f) => got.push(f.map(String).join('|')),
        onAbort: (s) => aborts.push(s),
        onReady: (e) => events.push(e ? `ready ${e.remoteAddress}:${e.remotePort === port} ${e.localAddress}:${e.localPort === conns.at(-1)?.remotePort}` : "ready, no ends"),
        onGone: () => events.push('gone'),
      },
    );
    closers.push(() => sub.close());
    const first = await until(() => conns[0]);
    await new Promise((r) => setTimeout(r, 50));
    expect(events).toEqual([]); // not before the peer's READY
    first.write(Buffer.concat([readyOf('PUB'), message([Buffer.from('one')]), frame(Buffer.from('cut'), 1)]));
    await until(() => (got.length === 1 ? true : undefined));
    expect(events).toEqual(['ready 127.0.0.1:true 127.0.0.1:true']);
    first.destroy(); // in the middle of a message
    await until(() => (aborts.length === 1 ? true : undefined));
    expect(aborts).toEqual([false]);
    expect(events).toEqual(['ready 127.0.0.1:true 127.0.0.1:true', 'gone']);
    const second = await until(() => conns[1]);
    await new Promise((r) => setTimeout(r, 50));
    second.write(Buffer.concat([readyOf('PUB'), message([Buffer.from('two'), Buffer.from('parts')])]));
    await until(() => (got.length === 2 ? true : undefined));
    expect(got).toEqual(['one', 'two|parts']);
    expect(events).toEqual(['ready 127.0.0.1:true 127.0.0.1:true', 'gone', 'ready 127.0.0.1:true 127.0.0.1:true']);
    // Nothing listening: refused connections are retried quietly until one works.
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const c of conns) c.destroy();
    await closed;
    const again = net.createServer((c) => c.once('data', () => c.write(Buffer.concat([HANDSHAKE, message([Buffer.from('three')])]))));
    await new Promise((r) => setTimeout(r, 100));
    await new Promise<void>((r) => again.listen(port, '127.0.0.1', r));
    await until(() => (got.length === 3 ? true : undefined));
    expect(got[2]).toBe('three');
    sub.close(); // before the server: its close waits for every connection to end
    await new Promise((r) => again.close(r));
  });

  it('drops a peer that breaks the protocol, reports why, and connects again', async () => {
    let n = 0;
    const server = net.createServer((c) => {
      n++;
      c.once('data', () => c.write(n === 1 ? Buffer.concat([PUB_GREETING, readyOf('DEALER')]) : Buffer.concat([HANDSHAKE, message([Buffer.from('fine')])])));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => server.close(r)));
    const errors: string[] = [];
    const got: string[] = [];
    const sub = new ZmtpSubscriber({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, reconnectMs: 20 }, { onMessage: (f) => got.push(String(f[0])), onError: (e) => errors.push(e) });
    closers.push(() => sub.close());
    await until(() => (got.length === 1 ? true : undefined));
    expect(errors[0]).toMatch(/DEALER, not a PUB/);
    expect(got).toEqual(['fine']);
  });

  it('survives a handler that throws: reports it, drops that connection and connects again', async () => {
    const server = net.createServer((c) => c.once('data', () => c.write(Buffer.concat([HANDSHAKE, message([Buffer.from('boom')]), message([Buffer.from('lost with the connection')])]))));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => server.close(r)));
    const errors: string[] = [];
    let boomed = 0;
    const sub = new ZmtpSubscriber(
      { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, reconnectMs: 20 },
      {
        onMessage: (f) => {
          if (String(f[0]) === 'boom' && boomed++ === 0) throw new Error('handler bug');
        },
        onError: (e) => errors.push(e),
      },
    );
    closers.push(() => sub.close());
    await until(() => (boomed >= 2 ? true : undefined));
    expect(errors[0]).toMatch(/reading the kernel's iopub failed: handler bug/);
  });
});
