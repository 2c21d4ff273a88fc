import { afterEach, describe, expect, it, vi } from 'vitest';
import { ReconnectWatcher, type Reconnectable } from './reconnect.ts';

class FakeKernel implements Reconnectable {
  isDisposed = false;
  connectionStatus = 'connected';
  reconnects = 0;
  /** What reconnect() does to the status: the gateway took it or not. */
  onReconnect: () => void = () => void (this.connectionStatus = 'connected');
  reconnect(): Promise<void> {
    this.reconnects++;
    this.onReconnect();
    return this.connectionStatus === 'connected' ? Promise.resolve() : Promise.reject(new Error('disconnected'));
  }
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

afterEach(() => vi.useRealTimers());

describe('ReconnectWatcher', () => {
  it('reconnects as soon as the gateway answers, and only while connecting', async () => {
    vi.useFakeTimers();
    const k = new FakeKernel();
    let up = false;
    const w = new ReconnectWatcher(k, { kernelReady: async () => up, graceMs: 0 });
    w.check(); // connected: nothing to do
    await vi.advanceTimersByTimeAsync(3000);
    expect(k.reconnects).toBe(0);

    k.connectionStatus = 'connecting';
    w.check();
    await vi.advanceTimersByTimeAsync(3000); // the gateway is still away
    expect(k.reconnects).toBe(0);
    up = true;
    await vi.advanceTimersByTimeAsync(1000);
    await flush();
    expect(k.reconnects).toBe(1);
    expect(k.connectionStatus).toBe('connected');
    await vi.advanceTimersByTimeAsync(10_000);
    expect(k.reconnects).toBe(1);
    w.dispose();
  });

  it('waits between attempts, survives failing probes, and stops when disposed or the kernel is', async () => {
    vi.useFakeTimers();
    const k = new FakeKernel();
    k.connectionStatus = 'connecting';
    k.onReconnect = () => undefined; // the gateway answers, the kernel connection does not come up
    let probes = 0;
    const w = new ReconnectWatcher(k, {
      graceMs: 0,
      kernelReady: async () => {
        probes++;
        if (probes === 1) throw new Error('network');
        return true;
      },
      backoffMs: 5000,
    });
    w.check();
    await vi.advanceTimersByTimeAsync(1000);
    await flush();
    expect(k.reconnects).toBe(0); // the first probe failed
    await vi.advanceTimersByTimeAsync(1000);
    await flush();
    expect(k.reconnects).toBe(1);
    await vi.advanceTimersByTimeAsync(3000);
    expect(k.reconnects).toBe(1); // within the backoff
    await vi.advanceTimersByTimeAsync(3000);
    await flush();
    expect(k.reconnects).toBe(2);
    k.isDisposed = true;
    await vi.advanceTimersByTimeAsync(20_000);
    expect(k.reconnects).toBe(2);

    const k2 = new FakeKernel();
    k2.connectionStatus = 'connecting';
    const w2 = new ReconnectWatcher(k2, { kernelReady: async () => true });
    w2.check();
    w2.dispose();
    await vi.advanceTimersByTimeAsync(5000);
    expect(k2.reconnects).toBe(0);
    w.dispose();
  });

  it('leaves a connection alone for its first seconds of connecting (a kernel still starting)', async () => {
    vi.useFakeTimers();
    const k = new FakeKernel();
    k.connectionStatus = 'connecting';
    const w = new ReconnectWatcher(k, { kernelReady: async () => true, graceMs: 3000 });
    w.check();
    await vi.advanceTimersByTimeAsync(2500);
    w.check(); // another status change while still connecting keeps the original start
    await flush();
    expect(k.reconnects).toBe(0);
    await vi.advanceTimersByTimeAsync(1000);
    await flush();
    expect(k.reconnects).toBe(1);
    w.dispose();
  });
});
