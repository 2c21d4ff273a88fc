// The gateway's own WebSocket endpoint for tunnels: frames in any chunking, the pieces it
// hands on, every protocol breach closed with the RFC's code, the closing handshake, and a
// real ws client (random masks, fragments, pings) over TCP.
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { prng, randomBytes } from '@kinesis/protocol/testing/prng';
import { acceptTunnel, CLOSED, joinFragments, MAX_FRAGMENTS, TunnelSocket, unmask, type Pieces } from './tunnel-socket.ts';

const ZERO = Buffer.alloc(4);

/** A client frame (masked, as RFC 6455 requires of clients). */
function frame(op: number, payload: Buffer, o: { fin?: boolean; mask?: Buffer; rsv?: number; masked?: boolean } = {}): Buffer {
  const n = payload.length;
  const len = n < 126 ? Buffer.from([n]) : n < 65536 ? Buffer.from([126, n >> 8, n & 255]) : Buffer.concat([Buffer.from([127]), u64(n)]);
  const masked = o.masked !== false;
  len[0] = len[0]! | (masked ? 0x80 : 0);
  const b0 = Buffer.from([((o.fin ?? true) ? 0x80 : 0) | ((o.rsv ?? 0) << 4) | op]);
  if (!masked) return Buffer.concat([b0, len, payload]);
  const mask = o.mask ?? Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const body = Buffer.from(payload);
  for (let i = 0; i < n; i++) body[i] = body[i]! ^ mask[i & 3]!;
  return Buffer.concat([b0, len, mask, body]);
}

function u64(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

function closePayload(code: number, reason = ''): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code);
  return Buffer.concat([b, Buffer.from(reason)]);
}

/** Server frames (unmasked) in `out`. */
function serverFrames(out: Buffer): { op: number; fin: boolean; payload: Buffer }[] {
  const frames = [];
  let at = 0;
  while (at < out.length) {
    const fin = (out[at]! & 0x80) !== 0;
    const op = out[at]! & 0x0f;
    expect(out[at + 1]! & 0x80).toBe(0);
    let n = out[at + 1]! & 0x7f;
    at += 2;
    if (n === 126) {
      n = out.readUInt16BE(at);
      at += 2;
    } else if (n === 127) {
      n = Number(out.readBigUInt64BE(at));
      at += 8;
    }
    frames.push({ op, fin, payload: out.subarray(at, at + n) });
    at += n;
  }
  return frames;
}

/** A TunnelSocket on an in-memory socket: `feed` plays the peer's bytes, `out` holds what the socket wrote. */
function harness(maxPayload = 1 << 20, closeTimeoutMs = 2000, o: { head?: Buffer; holdWrites?: boolean; onListenerError?: (e: unknown) => void } = {}) {
  const out: Buffer[] = [];
  const held: (() => void)[] = [];
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk);
      if (o.holdWrites) held.push(() => cb());
      else cb();
    },
  });
  const ts = new TunnelSocket(socket, o.head ?? Buffer.alloc(0), 'p', { maxPayload, closeTimeoutMs, ...(o.onListenerError ? { onListenerError: o.onListenerError } : {}) });
  const messages: { fragments: Pieces[]; data: Buffer; binary: boolean }[] = [];
  const closes: [number, string][] = [];
  ts.on('message', (fragments: Pieces[], binary: boolean) => messages.push({ fragments, data: Buffer.from(joinFragments(fragments)), binary }));
  ts.on('close', (code: number, reason: Buffer) => closes.push([code, reason.toString()]));
  return {
    ts,
    socket,
    messages,
    closes,
    feed: (...chunks: Buffer[]) => chunks.forEach((c) => socket.push(c)),
    written: () => serverFrames(Buffer.concat(out)),
    /** Completes the writes the socket is holding (holdWrites). */
    release: () => held.splice(0).forEach((cb) => cb()),
  };
}

const tick = () => new Promise((r) => setImmediate(r));

/** Splits `b` at random points into 1 to 8 views; sometimes byte by byte. */
function chop(rand: () => number, b: Buffer): Buffer[] {
  if (rand() < 0.1 && b.length < 4096) return Array.from({ length: b.length }, (_, i) => b.subarray(i, i + 1));
  const cuts = [...new Set(Array.from({ length: Math.floor(rand() * 8) }, () => Math.floor(rand() * b.length)))].sort((x, y) => x - y);
  const parts: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, b.length]) {
    if (c > at) parts.push(b.subarray(at, c));
    at = c;
  }
  return parts;
}

describe('TunnelSocket', () => {
  it('delivers the messages a peer sent, whatever the chunking of its bytes (seeded)', async () => {
    const rand = prng(0x7e57);
    for (let round = 0; round < 60; round++) {
      const h = harness();
      const sent: { data: Buffer; binary: boolean; fragments: number }[] = [];
      const wire: Buffer[] = [];
      let pings = 0;
      for (let m = 0; m < 6; m++) {
        const size = [0, 1, 125, 126, 65535, 65536, 70_000][Math.floor(rand() * 7)]!;
        const data = randomBytes(rand, size);
        const binary = rand() < 0.8;
        const frags = 1 + Math.floor(rand() * 3);
        const mask = rand() < 0.5 ? ZERO : randomBytes(rand, 4);
        let at = 0;
        for (let f = 0; f < frags; f++) {
          const end = f === frags - 1 ? size : Math.floor(at + (size - at) * rand());
          wire.push(frame(f === 0 ? (binary ? 2 : 1) : 0, data.subarray(at, end), { fin: f === frags - 1, mask }));
          // Control frames may come between fragments.
          if (f < frags - 1 && rand() < 0.5) {
            wire.push(frame(9, Buffer.from(`p${pings++}`)));
          }
          at = end;
        }
        sent.push({ data, binary, fragments: frags });
      }
      h.feed(...chop(rand, Buffer.concat(wire)));
      await tick();
      expect(h.messages.map((m) => [m.data.toString('hex'), m.binary, m.fragments.length])).toEqual(sent.map((s) => [s.data.toString('hex'), s.binary, s.fragments]));
      // Every ping answered with a pong carrying its payload, in order.
      expect(h.written().map((f) => [f.op, f.payload.toString()])).toEqual(Array.from({ length: pings }, (_, i) => [0xa, `p${i}`]));
    }
  });

  it('hands a payload on as views of the socket reads it arrived in, not as a copy', async () => {
    const h = harness();
    const payload = randomBytes(prng(1), 300_000);
    const wire = frame(2, payload, { mask: ZERO });
    const reads = [wire.subarray(0, 20_000), wire.subarray(20_000, 150_000), wire.subarray(150_000)].map((b) => Buffer.from(b));
    h.feed(...reads);
    await tick();
    const pieces = h.messages[0]!.fragments[0]!;
    expect(pieces).toHaveLength(3);
    pieces.forEach((p, i) => expect(p.buffer).toBe(reads[i]!.buffer));
    expect(h.messages[0]!.data.equals(payload)).toBe(true);
  });

  const breaches: [string, Buffer, number][] = [
    ['an unmasked frame', frame(2, Buffer.from('x'), { masked: false }), 1002],
    ['an RSV bit', frame(2, Buffer.from('x'), { rsv: 4 }), 1002],
    ['an unknown data opcode', frame(3, Buffer.from('x')), 1002],
    ['an unknown control opcode', frame(0xb, Buffer.from('x')), 1002],
    ['a fragmented ping', frame(9, Buffer.from('x'), { fin: false }), 1002],
    ['a ping over 125 bytes', frame(9, Buffer.alloc(126)), 1002],
    ['a continuation with nothing to continue', frame(0, Buffer.from('x')), 1002],
    ['a new message inside a fragmented one', Buffer.concat([frame(2, Buffer.from('a'), { fin: false }), frame(2, Buffer.from('b'))]), 1002],
    ['a close frame of one byte', frame(8, Buffer.from([3])), 1002],
    ['close code 1005 on the wire', frame(8, closePayload(1005)), 1002],
    ['close code 2999', frame(8, closePayload(2999)), 1002],
    ['a close reason that is not UTF-8', frame(8, Buffer.concat([closePayload(1000), Buffer.from([0xc3, 0x28])])), 1007],
    ['a 64-bit length past 2^53', Buffer.concat([Buffer.from([0x82, 0xff]), u64(1n << 60n), ZERO]), 1009],
    ['a message over maxPayload, across its fragments', Buffer.concat([frame(2, Buffer.alloc(600), { fin: false }), frame(0, Buffer.alloc(600))]), 1009],
  ];

  for (const [what, bytes, code] of breaches) {
    it(`closes with ${code} on ${what}, and reads nothing after it`, async () => {
      const h = harness(1000);
      h.feed(bytes, frame(2, Buffer.from('after')));
      await tick();
      expect(h.messages).toEqual([]);
      const closing = h.written().filter((f) => f.op === 8);
      expect(closing).toHaveLength(1);
      expect(closing[0]!.payload.readUInt16BE(0)).toBe(code);
      expect(h.ts.readyState).not.toBe(1);
      expect(h.socket.writableEnded).toBe(true);
    });
  }

  it('refuses an oversized message from its header alone, before any of its payload arrives', async () => {
    const h = harness(1 << 20);
    h.feed(Buffer.concat([Buffer.from([0x82, 0xff]), u64(1 << 30), ZERO]));
    await tick();
    expect(h.written().map((f) => [f.op, f.payload.readUInt16BE(0)])).toEqual([[8, 1009]]);
  });

  it('a lowered maxPayload applies to the next message (the handshake lowers it until the peer is known)', async () => {
    const h = harness(1 << 20);
    h.feed(frame(2, Buffer.alloc(5000)));
    await tick();
    h.ts.maxPayload = 4096;
    h.feed(frame(2, Buffer.alloc(5000)));
    await tick();
    expect(h.messages).toHaveLength(1);
    expect(h.written().map((f) => f.payload.readUInt16BE(0))).toEqual([1009]);
  });

  it('answers a close frame with its code, ends the connection, and reports the peer code and reason', async () => {
    const h = harness();
    h.feed(frame(2, Buffer.from('last')), frame(8, closePayload(4000, 'bye')), frame(2, Buffer.from('ignored')));
    h.socket.push(null);
    await tick();
    await tick();
    expect(h.messages.map((m) => m.data.toString())).toEqual(['last']);
    expect(h.written().map((f) => [f.op, f.payload.readUInt16BE(0)])).toEqual([[8, 4000]]);
    expect(h.closes).toEqual([[4000, 'bye']]);
    expect(h.ts.readyState).toBe(CLOSED);
  });

  it('a close frame without a code is 1005 to us and answered with 1000; a connection lost without one is 1006', async () => {
    const a = harness();
    a.feed(frame(8, Buffer.alloc(0)));
    a.socket.push(null);
    await tick();
    await tick();
    expect(a.closes).toEqual([[1005, '']]);
    expect(a.written()[0]!.payload.readUInt16BE(0)).toBe(1000);
    const b = harness();
    b.socket.destroy();
    await tick();
    expect(b.closes).toEqual([[1006, '']]);
  });

  it('close() sends its code and reason once, sends nothing after, and destroys a socket whose peer never answers', async () => {
    const h = harness(1 << 20, 20);
    h.ts.close(4401, 'signature does not verify');
    h.ts.close(1000, 'again');
    h.ts.send(Buffer.from('late'));
    h.ts.ping();
    const frames = h.written();
    expect(frames).toHaveLength(1);
    expect(frames[0]!.payload.readUInt16BE(0)).toBe(4401);
    expect(frames[0]!.payload.subarray(2).toString()).toBe('signature does not verify');
    await new Promise((r) => setTimeout(r, 60));
    expect(h.socket.destroyed).toBe(true);
    expect(h.closes).toEqual([[1006, '']]);
  });

  it('sends binary messages and fragments with the right opcodes, FIN bits and length encodings', () => {
    const h = harness();
    h.ts.send(Buffer.alloc(5, 1));
    h.ts.send(Buffer.alloc(300, 2));
    h.ts.send(Buffer.alloc(70_000, 3));
    h.ts.send(Buffer.from('head'), { fin: false });
    h.ts.send(Buffer.from('tail'), { fin: true });
    h.ts.ping(Buffer.from('hi'));
    expect(h.written().map((f) => [f.op, f.fin, f.payload.length])).toEqual([
      [2, true, 5],
      [2, true, 300],
      [2, true, 70_000],
      [2, false, 4],
      [0, true, 4],
      [9, true, 2],
    ]);
  });

  it('a listener that throws costs its connection (1011), not the process', async () => {
    const errors: unknown[] = [];
    const h = harness(1 << 20, 2000, { onListenerError: (e) => errors.push(e) });
    h.ts.on('message', () => {
      throw new Error('handler bug');
    });
    expect(() => h.feed(frame(2, Buffer.from('x')))).not.toThrow();
    await tick();
    expect(errors.map((e) => (e as Error).message)).toEqual(['handler bug']);
    expect(h.written().map((f) => [f.op, f.payload.readUInt16BE(0)])).toEqual([[8, 1011]]);
  });

  it(`refuses a message in more than ${MAX_FRAGMENTS} fragments (empty ones too) with 1009`, async () => {
    const h = harness();
    const empty = frame(0, Buffer.alloc(0), { fin: false });
    h.feed(frame(2, Buffer.from('a'), { fin: false }), ...Array.from({ length: MAX_FRAGMENTS + 5 }, () => empty));
    await tick();
    expect(h.written().map((f) => [f.op, f.payload.readUInt16BE(0)])).toEqual([[8, 1009]]);
    const ok = harness();
    ok.feed(frame(2, Buffer.from('a'), { fin: false }), ...Array.from({ length: MAX_FRAGMENTS - 2 }, () => empty), frame(0, Buffer.from('b')));
    await tick();
    expect(ok.messages.map((m) => [m.data.toString(), m.fragments.length])).toEqual([['ab', MAX_FRAGMENTS]]);
  });

  it('copies short reads together: a payload that came a byte at a time is a few pieces, not thousands', async () => {
    const h = harness();
    const payload = randomBytes(prng(3), 40_000);
    const big = randomBytes(prng(4), 50_000);
    const wire = Buffer.concat([frame(2, payload, { mask: ZERO }), frame(2, big, { mask: ZERO })]);
    // The first frame (4 bytes of header, 4 of mask) a byte a time, the second in two large reads.
    const split = 8 + payload.length;
    h.feed(...Array.from({ length: split }, (_, i) => wire.subarray(i, i + 1)), wire.subarray(split, split + 30_000), wire.subarray(split + 30_000));
    await tick();
    expect(h.messages.map((m) => m.data.equals(m === h.messages[0] ? payload : big))).toEqual([true, true]);
    expect(h.messages[0]!.fragments[0]!.length).toBeLessThanOrEqual(Math.ceil(40_000 / 12_288) + 1);
    expect(h.messages[1]!.fragments[0]!).toHaveLength(2);
  });

  it('a peer that pings without reading gets one pong, the latest, once our writes drain', async () => {
    const h = harness(1 << 20, 2000, { holdWrites: true });
    h.ts.send(Buffer.alloc(100_000)); // backs our writes up past 64 KiB
    for (let i = 0; i < 1000; i++) h.feed(frame(9, Buffer.from(`p${i}`)));
    await tick();
    expect(h.written().filter((f) => f.op === 0xa)).toEqual([]);
    await until(() => {
      h.release();
      return h.written().some((f) => f.op === 0xa);
    });
    h.release();
    expect(h.written().filter((f) => f.op === 0xa).map((f) => f.payload.toString())).toEqual(['p999']);
  });

  it('bytes read with the upgrade request come before later reads; terminate() after close leaves it CLOSED', async () => {
    const h = harness(1 << 20, 2000, { head: frame(2, Buffer.from('first')) });
    h.feed(frame(2, Buffer.from('second')));
    await tick();
    expect(h.messages.map((m) => m.data.toString())).toEqual(['first', 'second']);
    h.ts.terminate();
    await tick();
    expect(h.ts.readyState).toBe(CLOSED);
    h.ts.terminate();
    expect(h.ts.readyState).toBe(CLOSED);
  });

  it('cuts a long close reason between characters, to at most 123 bytes', () => {
    const h = harness();
    h.ts.close(4000, 'é'.repeat(100));
    const reason = h.written()[0]!.payload.subarray(2);
    expect(reason.length).toBeLessThanOrEqual(123);
    expect(new TextDecoder('utf-8', { fatal: true }).decode(reason)).toBe('é'.repeat(61));
  });

  it('unmask: any mask, any starting phase, any alignment, in any number of pieces (seeded)', () => {
    const rand = prng(99);
    for (let i = 0; i < 300; i++) {
      const mask = randomBytes(rand, 4);
      const n = Math.floor(rand() * 200);
      const backing = randomBytes(rand, n + 8);
      const start = Math.floor(rand() * 8);
      const data = backing.subarray(start, start + n);
      const want = Buffer.from(data).map((x, j) => x ^ mask[j & 3]!);
      let phase = 0;
      for (const piece of chop(rand, data)) phase = unmask(piece, mask, phase);
      expect(Buffer.from(data).equals(Buffer.from(want))).toBe(true);
      expect(phase).toBe(n & 3);
    }
  });

  it('fuzz: random and mutated byte streams never throw; a socket that gave up reads nothing more (seeded)', async () => {
    const rand = prng(0xf022);
    const good = Buffer.concat([frame(2, Buffer.from('hello')), frame(9, Buffer.from('p')), frame(2, Buffer.alloc(300), { fin: false }), frame(0, Buffer.alloc(10))]);
    for (let i = 0; i < 2000; i++) {
      const h = harness(4096);
      const bytes = rand() < 0.5 ? randomBytes(rand, Math.floor(rand() * 64)) : Buffer.from(good);
      for (let k = 0; k < 3 && bytes.length; k++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
      expect(() => h.feed(...chop(rand, bytes))).not.toThrow();
      await tick();
      const closing = h.written().filter((f) => f.op === 8);
      expect(closing.length).toBeLessThanOrEqual(1);
      if (!closing.length) continue;
      // Our own verdict, or the echo of a valid code the peer closed with: never 1005/1006 on the wire.
      const code = closing[0]!.payload.readUInt16BE(0);
      expect((code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)).toBe(true);
      const before = h.messages.length;
      h.feed(frame(2, Buffer.from('after')));
      await tick();
      expect(h.messages.length).toBe(before);
    }
  });
});

describe('acceptTunnel with a real ws client', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    server = undefined;
  });

  async function listen(onSocket: (ts: TunnelSocket) => void): Promise<string> {
    server = createServer((_req, res) => res.end());
    server.on('upgrade', (req, socket, head) => {
      const r = acceptTunnel(req, socket, head, 'kinesis-test', { maxPayload: 8 << 20 });
      if (r instanceof TunnelSocket) return onSocket(r);
      socket.end(`HTTP/1.1 ${r.status} X\r\n${Object.entries(r.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join('')}Connection: close\r\n\r\n`);
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return `ws://127.0.0.1:${(server!.address() as AddressInfo).port}/`;
  }

  it('speaks to ws: masked fragments both ways, pings both ways, and close codes both ways', async () => {
    let ts!: TunnelSocket;
    const got: { data: Buffer; binary: boolean }[] = [];
    const url = await listen((s) => {
      ts = s;
      s.on('message', (f: Pieces[], binary: boolean) => {
        got.push({ data: Buffer.from(joinFragments(f)), binary });
        if (got.length === 3) {
          s.send(Buffer.from('one piece'));
          s.send(Buffer.alloc(200_000, 7), { fin: false });
          s.send(Buffer.alloc(100_000, 8), { fin: true });
        }
      });
    });
    const ws = new WebSocket(url, 'kinesis-test', { perMessageDeflate: false });
    const replies: Buffer[] = [];
    ws.on('message', (d: Buffer) => replies.push(d));
    await new Promise((r) => ws.once('open', r));
    expect(ws.protocol).toBe('kinesis-test');
    const big = randomBytes(prng(5), 3 << 20);
    ws.send(big.subarray(0, 1 << 20), { fin: false });
    ws.ping('x');
    ws.send(big.subarray(1 << 20), { fin: true });
    ws.send('text', { binary: false });
    ws.send(Buffer.alloc(0));
    const pong = new Promise((r) => ws.once('pong', r));
    await pong;
    const serverPong = new Promise((r) => ts.once('pong', r));
    ts.ping(Buffer.from('y'));
    await serverPong;
    await until(() => replies.length === 2);
    expect(got.map((g) => [g.data.length, g.binary])).toEqual([[3 << 20, true], [4, false], [0, true]]);
    expect(got[0]!.data.equals(big)).toBe(true);
    expect(replies[0]!.toString()).toBe('one piece');
    expect(replies[1]!.equals(Buffer.concat([Buffer.alloc(200_000, 7), Buffer.alloc(100_000, 8)]))).toBe(true);
    const closed = new Promise<[number, string]>((r) => ws.once('close', (c, reason) => r([c, reason.toString()])));
    const serverClosed = new Promise<[number, string]>((r) => ts.once('close', (c: number, reason: Buffer) => r([c, reason.toString()])));
    ts.close(4409, 'replaced');
    expect(await closed).toEqual([4409, 'replaced']);
    expect((await serverClosed)[0]).toBe(4409);
  });

  it('reports the code and reason of a close the client starts', async () => {
    let closed!: Promise<[number, string]>;
    const url = await listen((s) => {
      closed = new Promise((r) => s.once('close', (c: number, reason: Buffer) => r([c, reason.toString()])));
    });
    const ws = new WebSocket(url, 'kinesis-test');
    await new Promise((r) => ws.once('open', r));
    const clientSaw = new Promise<number>((r) => ws.once('close', (c) => r(c)));
    ws.close(1001, 'provider shutting down');
    expect(await closed).toEqual([1001, 'provider shutting down']);
    expect(await clientSaw).toBe(1001);
  });

  it('refuses an upgrade with the wrong version (426, naming 13) or without a valid key (400)', async () => {
    const url = (await listen(() => {})).replace('ws:', 'http:');
    const ask = (headers: string): Promise<string> =>
      new Promise((resolve) => {
        const port = Number(new URL(url).port);
        const s = connect(port, '127.0.0.1', () => s.write(`GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${headers}\r\n`));
        let text = '';
        s.on('data', (d) => (text += d.toString()));
        s.on('close', () => resolve(text));
      });
    const v12 = await ask('Sec-WebSocket-Version: 12\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n');
    expect(v12).toMatch(/^HTTP\/1.1 426/);
    expect(v12).toMatch(/Sec-WebSocket-Version: 13/);
    expect(await ask('Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n')).toMatch(/^HTTP\/1.1 400/);
  });
});

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}
