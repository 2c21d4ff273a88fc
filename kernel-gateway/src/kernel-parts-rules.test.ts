// The rules a provider's KERNEL PART frames must keep (docs/protocols.md, "Large output in
// parts"): order, size, which messages, the budget for unfinished messages named in
// `welcome`; a breach closes that tunnel alone with 1007 or 1009. Delivery and streaming:
// kernel-parts.test.ts. Providers here are test peers, NOT the real provider.
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { encodeKernelFrame, encodeV1, makeMessage, type JupyterMessage } from '@kinesis/protocol';
import { kernelPartFrame } from './testing/provider-peer.ts';
import { until } from './testing/harness.ts';
import { bigOutput, isStatus, PART, partsHarness, partsOf, settled, WAIT, withId } from './testing/parts-harness.ts';

const { gateway, peer, setup, setupPair, connect, cleanup } = partsHarness();

/** 700 KiB of output in parts to `kernelId` reach `c` whole: proof that the 1 MiB budget has room for it. */
async function arrivesWhole(p: Awaited<ReturnType<typeof peer>>, c: Awaited<ReturnType<typeof connect>>, kernelId: string): Promise<void> {
  const m = bigOutput(p, kernelId, 700 * 1024);
  p.sendParts(kernelId, m.frame, PART);
  expect((await c.waitFor(withId(m.msg.header.msg_id), WAIT)).content['text'] === m.text).toBe(true);
}
afterEach(cleanup);

describe('part rules (the tunnel closes with 1007)', () => {
  const frameOf = (m: JupyterMessage): Buffer => encodeV1(m);
  const output = (bytes = 200_000): Buffer => frameOf(makeMessage({ channel: 'iopub', msgType: 'stream', session: 's', content: { name: 'stdout', text: 'z'.repeat(bytes) } }));

  // [name, frames, whether a stream to clients had begun when the rule was broken]
  const cases: [string, (kernelId: string) => Buffer[], boolean][] = [
    ['a part that skips ahead', (k) => { const f = output(); return [kernelPartFrame(k, f.length, 0, f.subarray(0, PART)), kernelPartFrame(k, f.length, 2 * PART, f.subarray(2 * PART, 3 * PART))]; }, true],
    ['a part that repeats', (k) => { const f = output(); return [kernelPartFrame(k, f.length, 0, f.subarray(0, PART)), kernelPartFrame(k, f.length, PART, f.subarray(PART, 2 * PART)), kernelPartFrame(k, f.length, PART, f.subarray(PART, 2 * PART))]; }, true],
    ['a new message before the last one ended', (k) => { const f = output(); return [kernelPartFrame(k, f.length, 0, f.subarray(0, PART)), kernelPartFrame(k, f.length, 0, f.subarray(0, PART))]; }, true],
    ['a continuation with another total', (k) => { const f = output(); return [kernelPartFrame(k, f.length, 0, f.subarray(0, PART)), kernelPartFrame(k, f.length + 1, PART, f.subarray(PART, 2 * PART))]; }, true],
    ['a continuation with no start', (k) => { const f = output(); return [kernelPartFrame(k, f.length, PART, f.subarray(PART, 2 * PART))]; }, false],
    ['a plain kernel frame for that kernel mid-message', (k) => { const f = output(); return [kernelPartFrame(k, f.length, 0, f.subarray(0, PART)), encodeKernelFrame(k, frameOf(makeMessage({ channel: 'iopub', msgType: 'stream', session: 's', content: { name: 'stdout', text: 'cut in\n' } })))]; }, true],
    ['a shell reply in parts', (k) => { const f = frameOf(makeMessage({ channel: 'shell', msgType: 'execute_reply', session: 's', content: { status: 'ok', pad: 'p'.repeat(100_000) } })); return [kernelPartFrame(k, f.length, 0, f.subarray(0, PART))]; }, false],
    ['a status in parts', (k) => { const f = frameOf(makeMessage({ channel: 'iopub', msgType: 'status', session: 's', content: { execution_state: 'idle' } })); return [kernelPartFrame(k, f.length, 0, f)]; }, false],
    ['a part that runs past its total', (k) => { const f = output(); return [kernelPartFrame(k, PART - 1, 0, f.subarray(0, PART))]; }, false],
    ['a part with no bytes', (k) => [kernelPartFrame(k, 100, 0, Buffer.alloc(0))], false],
    ['a part other than the last under 16 KiB', (k) => { const f = output(); return [kernelPartFrame(k, f.length, 0, f.subarray(0, 1000))]; }, false],
  ];

  // Each as one WebSocket frame per part, and as the real provider sends parts: two fragments
  // (the part's header, then its bytes), which the gateway reads without joining.
  const both = cases.flatMap(([name, frames, streamed]) => [[`${name} (one frame a part)`, frames, streamed, false], [`${name} (header and bytes in two fragments)`, frames, streamed, true]] as const);
  it.each(both)('%s', async (_name, frames, streamed, fragments) => {
    const gw = await gateway();
    const bystander = await peer(gw);
    const kernelId = crypto.randomUUID();
    // The peer brings a running kernel in its hello, which the gateway adopts.
    const p = await peer(gw, { kernels: [{ kernelId, specName: 'python3', status: 'idle' }] });
    p.partsAsFragments = fragments;
    await until(async () => (await gw.api(`/api/kernels/${kernelId}`)).status === 200);
    const c = await connect(gw, kernelId, { v1: true });
    const closed = new Promise<number>((r) => p.ws.once('close', (code) => r(code)));
    for (const f of frames(kernelId)) p.sendRaw(f);
    expect(await closed).toBe(1007);
    expect(bystander.ws.readyState).toBe(WebSocket.OPEN);
    await until(async () => !(await gw.api('/api/providers')).body.some((x: { id: string }) => x.id === p.address), WAIT, 'the tunnel to be dropped');
    if (streamed) {
      // A client caught mid-stream is cut off, not left waiting for bytes that will never come.
      expect((await c.closed).code).toBe(1006);
    } else {
      expect(c.ws.readyState).toBe(WebSocket.OPEN);
    }
    expect(c.messages.filter((m) => m.header.msg_type !== 'status')).toEqual([]);
  });

  it('a message larger than the tunnel allows closes with 1009', async () => {
    const gw = await gateway({ tuning: { maxTunnelFrameBytes: 1024 * 1024 } });
    const kernelId = crypto.randomUUID();
    const p = await peer(gw, { kernels: [{ kernelId, specName: 'python3', status: 'idle' }] });
    const closed = new Promise<number>((r) => p.ws.once('close', (code) => r(code)));
    const f = output(2 * 1024 * 1024);
    p.sendRaw(kernelPartFrame(kernelId, f.length, 0, f.subarray(0, PART)));
    expect(await closed).toBe(1009);
  });

  it('messages in parts begun past the budget named in welcome close the tunnel with 1009; other tunnels carry on', async () => {
    const MiB = 1024 * 1024;
    const gw = await gateway({ tuning: { maxTunnelFrameBytes: MiB, maxPartialBytes: MiB } });
    const bystander = await peer(gw);
    const [k1, k2] = [crypto.randomUUID(), crypto.randomUUID()];
    const p = await peer(gw, { kernels: [k1, k2].map((kernelId) => ({ kernelId, specName: 'python3', status: 'idle' as const })) });
    expect(p.maxPartialBytes).toBe(MiB);
    const closed = new Promise<number>((r) => p.ws.once('close', (code) => r(code)));
    const f = output(600 * 1024);
    p.sendRaw(kernelPartFrame(k1, f.length, 0, f.subarray(0, PART)));
    await settled(p, k1);
    expect(p.closeCode).toBeUndefined();
    // 600 KiB + 600 KiB unfinished at once is over 1 MiB.
    p.sendRaw(kernelPartFrame(k2, f.length, 0, f.subarray(0, PART)));
    expect(await closed).toBe(1009);
    expect(bystander.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('messages in parts whose totals add up to exactly the budget are taken', async () => {
    const MiB = 1024 * 1024;
    const gw = await gateway({ tuning: { maxTunnelFrameBytes: MiB, maxPartialBytes: MiB } });
    const [k1, k2] = [crypto.randomUUID(), crypto.randomUUID()];
    const p = await peer(gw, { kernels: [k1, k2].map((kernelId) => ({ kernelId, specName: 'python3', status: 'idle' as const })) });
    await until(async () => (await gw.api(`/api/kernels/${k2}`)).status === 200);
    const c2 = await connect(gw, k2);
    const a = output(400 * 1024);
    const overhead = output(0).length; // a stream message's frame without its text
    const bExact = output(MiB - a.length - overhead);
    expect(a.length + bExact.length).toBe(MiB);
    p.sendRaw(kernelPartFrame(k1, a.length, 0, a.subarray(0, PART)));
    const bParts = partsOf(k2, bExact);
    for (const f of bParts) p.sendRaw(f);
    await c2.waitFor((m) => m.header.msg_type === 'stream', WAIT);
    await settled(p, k2);
    expect(p.closeCode).toBeUndefined();
  });

  it.each(['dies', 'is deleted'])('a kernel that %s mid-message gives its share of the budget back; the rest of its parts are dropped', async (how) => {
    const { gw, peer: p, kernelId, other } = await setupPair();
    const c = await connect(gw, other);
    const cut = partsOf(kernelId, output(700 * 1024));
    p.sendRaw(cut[0]!);
    await settled(p, kernelId);
    if (how === 'dies') p.kernelStatus(kernelId, 'dead', 'killed');
    else expect((await gw.api(`/api/kernels/${kernelId}`, { method: 'DELETE' })).status).toBe(204);
    await until(async () => {
      const r = await gw.api(`/api/kernels/${kernelId}`);
      return r.status === 404 || r.body.execution_state === 'dead';
    });
    // 700 KiB more would be over 1 MiB if the cut-off message still counted.
    const m = bigOutput(p, other, 700 * 1024);
    p.sendParts(other, m.frame, PART);
    // What the provider still had on the wire for the first kernel, out of order even: it is
    // credited and dropped without the order check, and reaches no one.
    for (const part of [cut[1]!, cut[3]!, cut[2]!]) p.sendRaw(part);
    expect((await c.waitFor(withId(m.msg.header.msg_id), WAIT)).content['text'] === m.text).toBe(true);
    await settled(p, kernelId);
    await settled(p, other);
    expect(p.closeCode).toBeUndefined();
  });

  it('a message the provider begins for a kernel already deleted does not hold the budget when it never ends', async () => {
    const { gw, peer: p, kernelId, other } = await setupPair();
    const c = await connect(gw, other);
    expect((await gw.api(`/api/kernels/${kernelId}`, { method: 'DELETE' })).status).toBe(204);
    // Begun while the provider was shutting the kernel down, and cut off when it forgot it.
    for (const part of partsOf(kernelId, output(700 * 1024)).slice(0, 2)) p.sendRaw(part);
    await settled(p, kernelId);
    await arrivesWhole(p, c, other);
    expect(p.closeCode).toBeUndefined();
  });

  it('a message the provider takes back (kernel_part_abort) gives its share of the budget back', async () => {
    const { gw, peer: p, kernelId, other } = await setupPair();
    const c = await connect(gw, other);
    for (const part of partsOf(kernelId, output(700 * 1024)).slice(0, 2)) p.sendRaw(part);
    p.partAbort(kernelId);
    await settled(p, kernelId);
    // 700 KiB more fits the 1 MiB budget only if the 700 KiB taken back no longer count.
    await arrivesWhole(p, c, other);
    expect(p.closeCode).toBeUndefined();
  });

  it('a dead kernel takes no message in parts: begun, declared dead again and sent to the end, it holds nothing and reaches no one', async () => {
    const { gw, peer: p, kernelId, other } = await setupPair();
    const onDead = await connect(gw, kernelId, { v1: false });
    const c = await connect(gw, other);
    p.kernelStatus(kernelId, 'dead', 'killed');
    await onDead.waitFor(isStatus('dead'));
    const dead = bigOutput(p, kernelId, 700 * 1024);
    const parts = partsOf(kernelId, dead.frame);
    p.sendRaw(parts[0]!);
    p.kernelStatus(kernelId, 'dead', 'again');
    for (const part of parts.slice(1)) p.sendRaw(part);
    await settled(p, kernelId);
    // Were the dead kernel's 700 KiB held, these 700 KiB would be over the 1 MiB budget.
    await arrivesWhole(p, c, other);
    await settled(p, other);
    expect(onDead.messages.some(withId(dead.msg.header.msg_id))).toBe(false);
    expect(p.closeCode).toBeUndefined();
  });

  it('an undecodable first part is dropped with its message, credited, and the tunnel stays open', async () => {
    const { gw, peer: p, kernelId } = await setup();
    const c = await connect(gw, kernelId);
    const junk = Buffer.alloc(3 * PART, 0xee);
    p.sendParts(kernelId, junk, PART);
    await settled(p, kernelId);
    const { msg, frame, text } = bigOutput(p, kernelId, 512 * 1024);
    p.sendParts(kernelId, frame, PART);
    expect((await c.waitFor(withId(msg.header.msg_id), WAIT)).content['text'] === text).toBe(true);
    await settled(p, kernelId);
    expect(p.closeCode).toBeUndefined();
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
  });

  it("another kernel's frames may come between one kernel's parts", async () => {
    const { gw, peer: p, kernelId } = await setup();
    const { body } = await gw.api('/api/kernels', { method: 'POST', json: { name: 'python3-cpu' } });
    const other: string = body.id;
    await until(async () => (await gw.api(`/api/kernels/${other}`)).body.execution_state === 'idle');
    const a = await connect(gw, kernelId);
    const b = await connect(gw, other);
    const big = bigOutput(p, kernelId, 1024 * 1024);
    const bigOther = bigOutput(p, other, 1024 * 1024);
    const pa = partsOf(kernelId, big.frame);
    const pb = partsOf(other, bigOther.frame);
    // `kernelId` is mid-message throughout; `other` sends a whole frame, then its own parts.
    for (const f of pa.slice(0, 3)) p.sendRaw(f);
    p.stream(other, 'between\n');
    for (let i = 0; i < Math.max(pa.length - 3, pb.length); i++) {
      if (pa[i + 3]) p.sendRaw(pa[i + 3]!);
      if (pb[i]) p.sendRaw(pb[i]!);
    }
    expect((await a.waitFor(withId(big.msg.header.msg_id), WAIT)).content['text'] === big.text).toBe(true);
    expect((await b.waitFor(withId(bigOther.msg.header.msg_id), WAIT)).content['text'] === bigOther.text).toBe(true);
    expect(b.messages.findIndex((m) => m.content['text'] === 'between\n')).toBeLessThan(b.messages.findIndex(withId(bigOther.msg.header.msg_id)));
    expect(a.messages.some((m) => m.content['text'] === 'between\n')).toBe(false);
    await settled(p, kernelId);
    await settled(p, other);
    expect(p.closeCode).toBeUndefined();
  });
});
