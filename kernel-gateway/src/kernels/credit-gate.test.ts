// CreditGate alone, with stand-ins for the tunnel link and the client sockets (the real ones
// are exercised end to end in kernel-parts.test.ts and the gateway's flow-control tests).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../logger.ts';
import type { ProviderLink } from '../providers/link.ts';
import type { ClientConnection } from './client.ts';
import { CreditGate } from './credit-gate.ts';

class FakeLink {
  closed = false;
  readonly grants: number[] = [];
  grantCredit(_kernelId: string, bytes: number): void {
    this.grants.push(bytes);
  }
}

class FakeClient {
  bufferedAmount = 0;
  terminated = false;
  below: { bytes: number; fn: () => void } | undefined;
  readonly ws = { terminate: (): void => void (this.terminated = true) };
  whenBufferedAtMost(bytes: number, fn: () => void): void {
    this.below = { bytes, fn };
  }
  /** The socket wrote some of its buffer out, as ClientConnection reports completed writes. */
  drainTo(n: number): void {
    this.bufferedAmount = n;
    const b = this.below;
    if (b && n <= b.bytes) {
      this.below = undefined;
      b.fn();
    }
  }
}

const OPTS = { clientHighWaterBytes: 1000, clientMaxBufferedBytes: 10_000, logger: silentLogger };

function gate(...clients: FakeClient[]): { g: CreditGate; set: Set<FakeClient> } {
  const set = new Set(clients);
  return { g: new CreditGate('k', set as unknown as ReadonlySet<ClientConnection>, OPTS), set };
}
const asLink = (l: FakeLink): ProviderLink => l as unknown as ProviderLink;

afterEach(() => vi.useRealTimers());

describe('CreditGate', () => {
  it('grants at once while no client is over the mark', () => {
    const c = new FakeClient();
    const { g } = gate(c);
    const link = new FakeLink();
    c.bufferedAmount = 1000; // at the mark is not over it
    expect(g.congested()).toBe(false);
    g.settle(asLink(link), 500, g.congested());
    g.settle(asLink(link), 300, false);
    expect(link.grants).toEqual([500, 300]);
  });

  it('withholds while a client is congested and grants the sum as soon as its writes bring it under', () => {
    vi.useFakeTimers();
    const c = new FakeClient();
    const { g } = gate(c);
    const link = new FakeLink();
    c.bufferedAmount = 5000;
    g.settle(asLink(link), 400, g.congested());
    // Owed credit keeps later grants behind it, even when nobody is congested right then.
    g.settle(asLink(link), 100, false);
    expect(link.grants).toEqual([]);
    c.drainTo(2000);
    expect(link.grants).toEqual([]);
    vi.advanceTimersByTime(20); // the poll sees it still over the mark
    expect(link.grants).toEqual([]);
    c.drainTo(900);
    expect(link.grants).toEqual([500]);
    vi.advanceTimersByTime(20);
    expect(link.grants).toEqual([500]);
  });

  it('grants on the poll too, when no completed write reports it', () => {
    vi.useFakeTimers();
    const c = new FakeClient();
    const { g, set } = gate(c);
    const link = new FakeLink();
    c.bufferedAmount = 5000;
    g.settle(asLink(link), 400, g.congested());
    set.delete(c); // the congested client left
    vi.advanceTimersByTime(5);
    expect(link.grants).toEqual([400]);
  });

  it('drops a client past the maximum instead of waiting for it', () => {
    const slow = new FakeClient();
    const ok = new FakeClient();
    const { g } = gate(slow, ok);
    slow.bufferedAmount = 10_001;
    expect(g.congested()).toBe(false);
    expect(slow.terminated).toBe(true);
    expect(ok.terminated).toBe(false);
  });

  it('forgets what was owed on another tunnel, and grants nothing after dispose', () => {
    vi.useFakeTimers();
    const c = new FakeClient();
    const { g } = gate(c);
    const [old, fresh] = [new FakeLink(), new FakeLink()];
    c.bufferedAmount = 5000;
    g.settle(asLink(old), 400, true);
    g.reset();
    c.bufferedAmount = 0;
    g.settle(asLink(fresh), 100, false);
    vi.advanceTimersByTime(50);
    expect(old.grants).toEqual([]);
    expect(fresh.grants).toEqual([100]);

    c.bufferedAmount = 5000;
    g.settle(asLink(fresh), 200, true);
    g.dispose();
    c.drainTo(0);
    vi.advanceTimersByTime(50);
    expect(fresh.grants).toEqual([100]);
  });

  it('owes nothing to a closed link', () => {
    vi.useFakeTimers();
    const c = new FakeClient();
    const { g } = gate(c);
    const link = new FakeLink();
    c.bufferedAmount = 5000;
    g.settle(asLink(link), 400, true);
    link.closed = true;
    c.drainTo(0);
    vi.advanceTimersByTime(50);
    expect(link.grants).toEqual([]);
  });
});
