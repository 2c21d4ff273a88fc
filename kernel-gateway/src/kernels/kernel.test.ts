// Seeded randomized test of the kernel's routing, buffering and replay: clients of a few
// sessions connect and drop at random while the kernel publishes iopub and replies; what each
// session ends up receiving (live or replayed) must match a reference model, in order.
// Fakes stand in for sockets and the tunnel here: this is the routing logic alone.
import { describe, expect, it } from 'vitest';
import { encodeV1, makeMessage, peekV1, decodeV1 } from '@kinesis/protocol';
import { prng } from '@kinesis/protocol/testing/prng';
import { silentLogger } from '../logger.ts';
import type { ProviderLink } from '../providers/link.ts';
import { ClientConnection } from './client.ts';
import { Kernel } from './kernel.ts';

class FakeWs {
  readyState = 1;
  bufferedAmount = 0;
  readonly got: string[] = [];
  send(data: Buffer | string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    const m = typeof data === 'string' ? JSON.parse(data) : decodeV1(data);
    this.got.push(`${m.channel}:${m.content.n ?? m.header.msg_type}`);
  }
  close(): void {
    this.readyState = 3;
  }
  terminate(): void {
    this.readyState = 3;
  }
}

const fakeLink = (): ProviderLink => ({ closed: false, grantCredit() {}, sendKernel() {} }) as unknown as ProviderLink;

const OPTS = { bufferBytes: 1 << 24, pendingMaxBytes: 1 << 24, maxDetachedSessions: 8, clientHighWaterBytes: 1 << 22, clientMaxBufferedBytes: 1 << 26, logger: silentLogger };

describe('Kernel routing and replay (seeded)', () => {
  it('delivers what the reference model says, to each session, in order', () => {
    for (let seed = 1; seed <= 150; seed++) {
      const rand = prng(seed);
      const link = fakeLink();
      const k = new Kernel(crypto.randomUUID(), 'python3-cpu', 'python3', '0xabc', OPTS, 'idle');
      k.setReady(link);
      const sessions = ['a', 'b', 'c', 'd'];
      // Model: which sessions are live, which have a detached buffer, the orphan queue, and what each session should have seen.
      const live = new Map<string, ClientConnection>();
      const ws = new Map<ClientConnection, FakeWs>();
      const detached = new Map<string, string[]>();
      const closing: ClientConnection[] = [];
      let orphan: string[] = [];
      const expected = new Map<string, string[]>(sessions.map((s) => [s, []]));
      const seen = new Map<string, string[]>(sessions.map((s) => [s, []]));
      let n = 0;
      for (let step = 0; step < 200; step++) {
        const r = rand();
        const s = sessions[Math.floor(rand() * sessions.length)]!;
        if (r < 0.15 && !live.has(s)) {
          const fw = new FakeWs();
          const conn = new ClientConnection(fw as never, s, rand() < 0.5);
          live.set(s, conn);
          ws.set(conn, fw);
          const replay = [...(detached.get(s) ?? []), ...orphan];
          detached.delete(s);
          orphan = [];
          expected.get(s)!.push(...replay);
          k.attach(conn);
        } else if (r < 0.3 && live.has(s)) {
          const conn = live.get(s)!;
          live.delete(s);
          seen.get(s)!.push(...ws.get(conn)!.got);
          if (rand() < 0.5) {
            (conn.ws as unknown as FakeWs).readyState = 3;
            k.detach(conn);
          } else {
            // The client's close frame has arrived but ws's 'close' event comes later (after
            // the closing handshake): frames routed meanwhile must be kept for the replay.
            (conn.ws as unknown as FakeWs).readyState = 2;
            closing.push(conn);
          }
          detached.set(s, []);
        } else if (r < 0.35 && closing.length > 0) {
          const conn = closing.splice(Math.floor(rand() * closing.length), 1)[0]!;
          (conn.ws as unknown as FakeWs).readyState = 3;
          k.detach(conn);
        } else {
          const iopub = rand() < 0.6;
          const tag = `${iopub ? 'iopub' : 'shell'}:${++n}`;
          const msg = makeMessage({ channel: iopub ? 'iopub' : 'shell', msgType: iopub ? 'stream' : 'execute_reply', session: 'kernel', parent: { msg_id: 'p', msg_type: 'execute_request', session: s, username: 'u', date: '', version: '5.3' }, content: { n } });
          const frame = encodeV1(msg);
          if (iopub) {
            for (const t of live.keys()) expected.get(t)!.push(tag);
            for (const b of detached.values()) b.push(tag);
            if (live.size === 0 && detached.size === 0) orphan.push(tag);
          } else if (live.has(s)) {
            expected.get(s)!.push(tag);
          } else if (detached.has(s)) {
            detached.get(s)!.push(tag);
          } else if (live.size > 0) {
            for (const t of live.keys()) expected.get(t)!.push(tag);
          } else {
            orphan.push(tag);
          }
          k.fromKernel(link, frame, peekV1(frame), frame.length);
        }
      }
      for (const [s, conn] of live) seen.get(s)!.push(...ws.get(conn)!.got);
      for (const s of sessions) expect(seen.get(s), `seed ${seed}, session ${s}`).toEqual(expected.get(s));
      k.dispose(1000, 'done');
    }
  });
});
