// KERNEL PART frames at the Kernel alone (fakes for the tunnel and the client socket); the
// gateway end to end is in ../kernel-parts.test.ts.
import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { encodeV1, makeMessage, peekV1Head } from '@kinesis/protocol';
import { silentLogger } from '../logger.ts';
import type { ProviderLink } from '../providers/link.ts';
import { until } from '../testing/harness.ts';
import { sleep } from '../testing/provider-peer.ts';
import { binaryFrameHeader, ClientConnection } from './client.ts';
import { Kernel } from './kernel.ts';

describe('a replaced tunnel (Kernel with fakes)', () => {
  it("parts still arriving over the old tunnel are not spliced into the new tunnel's message", async () => {
    const credit: string[] = [];
    const fakeLink = (name: string): ProviderLink => ({ closed: false, grantCredit: () => credit.push(name), sendKernel() {} }) as unknown as ProviderLink;
    const fakeClient = (): { conn: ClientConnection; out: Buffer[]; ws: { readyState: number } } => {
      const out: Buffer[] = [];
      const socket = new Duplex({ read() {}, write: (chunk: Buffer, _enc, cb) => (out.push(chunk), cb()) });
      const ws = { readyState: WebSocket.OPEN as number, bufferedAmount: 0, terminate() { this.readyState = WebSocket.CLOSED; }, close() { this.readyState = WebSocket.CLOSED; } };
      return { conn: new ClientConnection(ws as never, 's', true, socket), out, ws };
    };
    const opts = { bufferBytes: 1 << 24, pendingMaxBytes: 1 << 24, maxDetachedSessions: 8, clientHighWaterBytes: 1 << 22, clientMaxBufferedBytes: 1 << 26, logger: silentLogger };
    const k = new Kernel(crypto.randomUUID(), 'python3-cpu', 'python3', '0xabc', opts, 'idle');
    const out1 = (text: string): Buffer => encodeV1(makeMessage({ channel: 'iopub', msgType: 'stream', session: 's', content: { name: 'stdout', text } }));
    const m1 = out1('a'.repeat(10_000));
    const m2 = out1('b'.repeat(10_000));
    // Each part in two pieces, as the tunnel socket hands on a part spread over two socket reads.
    const part = (f: Buffer, offset: number, n: number) => ({ total: f.length, offset, pieces: [f.subarray(offset, offset + 100), f.subarray(offset + 100, offset + n)], length: n });
    const oldLink = fakeLink('old');
    const newLink = fakeLink('new');
    k.setReady(oldLink);
    const first = fakeClient();
    k.attach(first.conn);
    k.partFromKernel(oldLink, part(m1, 0, 4000), peekV1Head(m1.subarray(0, 4000), m1.length), 4033);
    expect(first.conn.streaming).toBe(true);
    // The provider reconnected: the message in flight over the old tunnel is lost.
    k.setReady(newLink);
    expect(first.ws.readyState).toBe(WebSocket.CLOSED);
    k.detach(first.conn);
    const second = fakeClient();
    k.attach(second.conn);
    k.partFromKernel(newLink, part(m2, 0, 4000), peekV1Head(m2.subarray(0, 4000), m2.length), 4033);
    // What the old tunnel had in flight arrives late, in order by its own count.
    k.partFromKernel(oldLink, part(m1, 4000, 4000), undefined, 4033);
    k.partFromKernel(newLink, part(m2, 4000, m2.length - 4000), undefined, 4033);
    expect(second.conn.streaming).toBe(false);
    await until(() => Buffer.concat(second.out).length >= binaryFrameHeader(m2.length).length + m2.length);
    await sleep(10);
    expect(Buffer.concat(second.out).equals(Buffer.concat([binaryFrameHeader(m2.length), m2]))).toBe(true);
    expect(credit).toEqual(['old', 'new', 'old', 'new']);
  });

  it("credit withheld for a congested client is granted as soon as that client's writes bring it under the mark, not on the next poll", async () => {
    const granted: number[] = [];
    const link = { closed: false, grantCredit: (_k: string, n: number) => granted.push(n), sendKernel() {} } as unknown as ProviderLink;
    const pending: Array<() => void> = [];
    // A socket whose writes complete only when the test says (a client reading slowly).
    const socket = new Duplex({ read() {}, writev: (_chunks, cb) => void pending.push(() => cb()), write: (_c, _e, cb) => void pending.push(() => cb()) });
    const ws = { readyState: WebSocket.OPEN as number, bufferedAmount: 0, terminate() {}, close() {} };
    const opts = { bufferBytes: 1 << 24, pendingMaxBytes: 1 << 24, maxDetachedSessions: 8, clientHighWaterBytes: 1000, clientMaxBufferedBytes: 1 << 26, logger: silentLogger };
    const k = new Kernel(crypto.randomUUID(), 'python3-cpu', 'python3', '0xabc', opts, 'idle');
    k.setReady(link);
    k.attach(new ClientConnection(ws as never, 'sess', true, socket));
    const big = encodeV1(makeMessage({ channel: 'iopub', msgType: 'stream', session: 's', content: { name: 'stdout', text: 'a'.repeat(10_000) } }));
    k.partFromKernel(link, { total: big.length, offset: 0, pieces: [big.subarray(0, 1000), big.subarray(1000, 4000)], length: 4000 }, peekV1Head(big.subarray(0, 4000), big.length), 4033);
    ws.bufferedAmount = 5000; // over the 1000-byte mark: the next part's credit is owed
    k.partFromKernel(link, { total: big.length, offset: 4000, pieces: [big.subarray(4000, 8000)], length: 4000 }, undefined, 4033);
    expect(granted).toEqual([4033]);
    // The tick's cork is released and the part's write reaches the socket.
    await until(() => pending.length > 0, 5000);
    ws.bufferedAmount = 500;
    for (const done of pending.splice(0)) done();
    // The stream reports the write done on a later tick; the 5 ms poll timer has not fired.
    await new Promise((r) => setImmediate(r));
    expect(granted).toEqual([4033, 4033]);
  });

  it('what waited behind a frame cut off by a lost tunnel is kept for the session and replayed', async () => {
    const link = { closed: false, grantCredit() {}, sendKernel() {} } as unknown as ProviderLink;
    const out: Buffer[] = [];
    const socket = new Duplex({ read() {}, write: (chunk: Buffer, _enc, cb) => (out.push(chunk), cb()) });
    const ws = { readyState: WebSocket.OPEN as number, bufferedAmount: 0, terminate() { this.readyState = WebSocket.CLOSED; }, close() { this.readyState = WebSocket.CLOSED; } };
    const opts = { bufferBytes: 1 << 24, pendingMaxBytes: 1 << 24, maxDetachedSessions: 8, clientHighWaterBytes: 1 << 22, clientMaxBufferedBytes: 1 << 26, logger: silentLogger };
    const k = new Kernel(crypto.randomUUID(), 'python3-cpu', 'python3', '0xabc', opts, 'idle');
    k.setReady(link);
    const conn = new ClientConnection(ws as never, 'sess', true, socket);
    k.attach(conn);
    const big = encodeV1(makeMessage({ channel: 'iopub', msgType: 'stream', session: 's', content: { name: 'stdout', text: 'a'.repeat(10_000) } }));
    k.partFromKernel(link, { total: big.length, offset: 0, pieces: [big.subarray(0, 1000), big.subarray(1000, 4000)], length: 4000 }, peekV1Head(big.subarray(0, 4000), big.length), 4033);
    const verdict = encodeV1(makeMessage({ channel: 'iopub', msgType: 'status', session: 's', content: { execution_state: 'idle' } }));
    k.deliverFromGateway(verdict); // waits behind the frame being streamed
    k.detachLink(); // the tunnel drops: the frame can never be completed
    expect(ws.readyState).toBe(WebSocket.CLOSED);
    await sleep(10);
    expect(Buffer.concat(out).includes(verdict)).toBe(false);
    // The session comes back: it gets what waited, not a torn frame.
    const out2: Buffer[] = [];
    const socket2 = new Duplex({ read() {}, write: (chunk: Buffer, _enc, cb) => (out2.push(chunk), cb()) });
    const ws2 = { readyState: WebSocket.OPEN as number, bufferedAmount: 0, terminate() {}, close() {}, send: (d: Buffer) => out2.push(d) };
    k.attach(new ClientConnection(ws2 as never, 'sess', true, socket2));
    await until(() => Buffer.concat(out2).includes(verdict));
  });
});
