import { describe, expect, it } from 'vitest';
import { prng } from '@kinesis/protocol/testing/prng';
import { Outbox, type OutboxSocket } from './outbox.ts';

/** A socket whose buffer drains only when the test says so (a slow network). */
class SlowSocket implements OutboxSocket {
  open = true;
  bufferedAmount = 0;
  readonly sent: Buffer[] = [];
  private readonly callbacks: Array<() => void> = [];
  send(data: Buffer, cb: () => void): void {
    this.sent.push(data);
    this.bufferedAmount += data.length;
    this.callbacks.push(() => {
      this.bufferedAmount -= data.length;
      cb();
    });
  }
  /** Flushes `n` frames to the wire. */
  drain(n = Infinity): void {
    for (let i = 0; i < n && this.callbacks.length > 0; i++) this.callbacks.shift()?.();
  }
}

const frame = (tag: string, size: number): Buffer => Buffer.concat([Buffer.from(tag.padEnd(8)), Buffer.alloc(Math.max(0, size - 8))]);
const tagOf = (b: Buffer): string => b.subarray(0, 8).toString().trim();

describe('outbox flow control', () => {
  it('a flooding kernel does not starve another kernel', () => {
    const out = new Outbox({ highWaterMark: 64 * 1024 });
    const sock = new SlowSocket();
    out.addKernel('flood');
    out.addKernel('calm');
    out.attach(sock, 1 << 30);
    for (let i = 0; i < 10_000; i++) out.enqueue('flood', { frame: frame('flood', 4096), droppable: true });
    out.enqueue('calm', { frame: frame('reply', 200), droppable: false });
    // Under the high-water mark only ~16 flood frames can be in flight; the reply is next in turn.
    let sentBeforeReply = 0;
    for (let round = 0; round < 100 && !sock.sent.some((b) => tagOf(b) === 'reply'); round++) sock.drain(1);
    sentBeforeReply = sock.sent.findIndex((b) => tagOf(b) === 'reply');
    expect(sentBeforeReply).toBeGreaterThanOrEqual(0);
    expect(sentBeforeReply).toBeLessThanOrEqual(17);
  });

  it('holds frames without credit and sends them when credit comes', () => {
    const out = new Outbox();
    const sock = new SlowSocket();
    out.addKernel('k');
    out.attach(sock, 1024);
    out.enqueue('k', { frame: frame('a', 1000), droppable: false });
    out.enqueue('k', { frame: frame('b', 1000), droppable: false }); // credit 24 left: still goes (one frame overdraft)
    out.enqueue('k', { frame: frame('c', 1000), droppable: false });
    sock.drain();
    expect(sock.sent.map(tagOf)).toEqual(['a', 'b']);
    expect(out.credit('k')).toBe(-976);
    out.grant('k', 976);
    sock.drain();
    expect(sock.sent.map(tagOf)).toEqual(['a', 'b']);
    out.grant('k', 1);
    sock.drain();
    expect(sock.sent.map(tagOf)).toEqual(['a', 'b', 'c']);
  });

  it('queues while detached, bounded: drops oldest output, never replies, and marks the gap', () => {
    const notices: number[] = [];
    const out = new Outbox({
      maxQueuedBytes: 10_000,
      dropNotice: (_id, count) => {
        notices.push(count);
        return frame('notice', 100);
      },
    });
    out.addKernel('k');
    out.enqueue('k', { frame: frame('reply0', 1000), droppable: false });
    for (let i = 0; i < 50; i++) out.enqueue('k', { frame: frame(`out${i}`, 1000), droppable: true });
    out.enqueue('k', { frame: frame('reply1', 1000), droppable: false });
    expect(out.queued('k')).toBeLessThanOrEqual(10_000);
    const sock = new SlowSocket();
    out.attach(sock, 1 << 30);
    sock.drain();
    const tags = sock.sent.map(tagOf);
    expect(tags[0]).toBe('reply0');
    expect(tags[1]).toBe('notice');
    expect(tags).toContain('reply1');
    expect(tags.at(-2)).toBe('out49'); // newest output kept
    expect(notices).toEqual([50 - (tags.length - 3)]);
  });

  it('never hands the socket a frame the tunnel cannot carry', () => {
    const reasons: string[] = [];
    const out = new Outbox({ maxFrameBytes: 5000, dropNotice: (_id, count, bytes) => frame(`n${count}:${bytes}`, 100), onDrop: (_id, r) => reasons.push(r) });
    const sock = new SlowSocket();
    out.addKernel('k');
    out.attach(sock, 1 << 20);
    out.enqueue('k', { frame: frame('big', 6000), droppable: false });
    out.enqueue('k', { frame: frame('ok', 100), droppable: false });
    sock.drain();
    expect(sock.sent.map(tagOf)).toEqual(['n1:6000', 'ok']);
    expect(reasons).toEqual(['frame too large']);
  });

  it('round-robin keeps every kernel moving and per-kernel order intact (seeded)', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const rand = prng(seed);
      const out = new Outbox({ highWaterMark: 8192 });
      const sock = new SlowSocket();
      const ids = ['a', 'b', 'c', 'd'];
      for (const id of ids) out.addKernel(id);
      out.attach(sock, 50_000);
      const sentBy = new Map<string, number>();
      const next = new Map<string, number>(ids.map((i) => [i, 0]));
      for (let step = 0; step < 3000; step++) {
        const r = rand();
        const id = ids[Math.floor(rand() * ids.length)] as string;
        if (r < 0.6) {
          const n = next.get(id) ?? 0;
          next.set(id, n + 1);
          out.enqueue(id, { frame: frame(`${id}${n}`, 100 + Math.floor(rand() * 3000)), droppable: false });
        } else if (r < 0.9) sock.drain(1 + Math.floor(rand() * 3));
        else out.grant(id, Math.floor(rand() * 20_000));
      }
      for (const id of ids) out.grant(id, 1 << 30);
      sock.drain();
      for (const b of sock.sent) {
        const t = tagOf(b);
        const id = t[0] as string;
        const n = Number(t.slice(1));
        expect(n).toBe(sentBy.get(id) ?? 0); // in order, none lost
        sentBy.set(id, n + 1);
      }
      for (const id of ids) expect(sentBy.get(id) ?? 0).toBe(next.get(id));
    }
  });
});
