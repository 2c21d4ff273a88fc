// Resuming after a dropped connection (sent-log.ts, docs/protocols.md): a client that names
// the last message it read gets exactly what followed, whether the gateway noticed the drop
// (the frames after it went to the replay buffer) or not (half-open TCP: the frames went to
// the dead socket). Fakes stand in for sockets and the tunnel: this is the routing alone.
import { describe, expect, it } from 'vitest';
import { decodeV1, encodeV1, makeMessage, peekV1 } from '@kinesis/protocol';
import { silentLogger } from '../logger.ts';
import type { ProviderLink } from '../providers/link.ts';
import { ClientConnection } from './client.ts';
import { Kernel } from './kernel.ts';

class FakeWs {
  readyState = 1;
  bufferedAmount = 0;
  readonly got: Array<{ id: string; n: number | undefined; text: string | undefined }> = [];
  closedWith: number | undefined;
  send(data: Buffer | string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    const m = decodeV1(data as Buffer);
    this.got.push({ id: m.header.msg_id, n: m.content['n'] as number | undefined, text: m.content['text'] as string | undefined });
  }
  close(code: number): void {
    this.closedWith = code;
    this.readyState = 3;
  }
  terminate(): void {
    this.readyState = 3;
  }
}

const link = { closed: false, grantCredit() {}, sendKernel() {} } as unknown as ProviderLink;
const OPTS = { bufferBytes: 1 << 24, pendingMaxBytes: 1 << 24, maxDetachedSessions: 8, clientHighWaterBytes: 1 << 22, clientMaxBufferedBytes: 1 << 26, logger: silentLogger };

function setup(): { k: Kernel; publish(n: number): string } {
  const k = new Kernel(crypto.randomUUID(), 'python3-cpu', 'python3', '0xabc', OPTS, 'idle');
  k.setReady(link);
  return {
    k,
    publish(n) {
      const msg = makeMessage({ channel: 'iopub', msgType: 'stream', session: 'kernel', parent: { msg_id: 'p', msg_type: 'execute_request', session: 'a', username: 'u', date: '', version: '5.3' }, content: { name: 'stdout', text: `${n}\n`, n } });
      const frame = encodeV1(msg);
      k.fromKernel(link, frame, peekV1(frame), frame.length);
      return msg.header.msg_id;
    },
  };
}

function connect(k: Kernel, resumeAfter?: string): { ws: FakeWs; conn: ClientConnection } {
  const ws = new FakeWs();
  const conn = new ClientConnection(ws as never, 'a', true, undefined, resumeAfter);
  k.attach(conn);
  return { ws, conn };
}

describe('resume after a dropped connection', () => {
  it('the gateway saw the drop: frames sent after the last one read, then the replay buffer, in order', () => {
    const { k, publish } = setup();
    const first = connect(k, '');
    const ids = Array.from({ length: 10 }, (_, i) => publish(i));
    // The client read up to n = 5; 6..9 were on the wire when its connection died.
    first.ws.readyState = 3;
    for (let i = 10; i < 13; i++) publish(i); // routed after the drop: into the replay buffer
    k.detach(first.conn); // ws's 'close' comes later: nothing changes
    const second = connect(k, ids[5]);
    expect(second.ws.got.map((m) => m.n)).toEqual([6, 7, 8, 9, 10, 11, 12]);
    // And the resumed connection keeps a log of its own: a second drop resumes too.
    const lastRead = second.ws.got[4]!.id; // read up to n = 10
    second.ws.readyState = 3;
    publish(13);
    const third = connect(k, lastRead);
    expect(third.ws.got.map((m) => m.n)).toEqual([11, 12, 13]);
    k.dispose(1000, 'done');
  });

  it('the gateway did not see the drop (half-open): the old connection is superseded and its unread frames resent', () => {
    const { k, publish } = setup();
    const first = connect(k, '');
    const ids = Array.from({ length: 8 }, (_, i) => publish(i));
    const second = connect(k, ids[2]); // the client read up to n = 2, then its network died
    expect(second.ws.got.map((m) => m.n)).toEqual([3, 4, 5, 6, 7]);
    expect(first.ws.closedWith).toBe(1000);
    expect(k.clients.has(first.conn)).toBe(false);
    publish(8);
    expect(second.ws.got.at(-1)!.n).toBe(8);
    k.detach(first.conn); // its late 'close' event: the live session stays
    expect(k.clients.has(second.conn)).toBe(true);
    k.dispose(1000, 'done');
  });

  it('a last message the gateway no longer knows gets a visible notice, then what was buffered', () => {
    const { k, publish } = setup();
    const first = connect(k, '');
    publish(0);
    first.ws.readyState = 3;
    publish(1);
    const second = connect(k, 'no-such-message');
    expect(second.ws.got[0]!.text).toMatch(/may be missing/);
    expect(second.ws.got.slice(1).map((m) => m.n)).toEqual([1]);
    k.dispose(1000, 'done');
  });

  it('plain Jupyter clients (no kinesis_last_msg_id) keep no log and get only the replay buffer', () => {
    const { k, publish } = setup();
    const first = connect(k);
    expect(first.conn.sentLog).toBeUndefined();
    publish(0);
    first.ws.readyState = 3;
    publish(1);
    const second = connect(k);
    expect(second.ws.got.map((m) => m.n)).toEqual([1]);
    k.dispose(1000, 'done');
  });
});
