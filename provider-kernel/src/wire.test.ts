import { createHmac, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeV1, encodeV1, encodeV1Parts } from '@kinesis/protocol/jupyter/ws-framing';
import { decodeFrame } from '@kinesis/protocol/tunnel';
import { prng, randomBytes } from '@kinesis/protocol/testing/prng';
import { KernelError } from './errors.ts';
import { kernelFrameFromParts, kernelIdBytes } from './kernel-frame.ts';
import { makeMessage } from '@kinesis/protocol/jupyter/messages';
import { ArrivingContent, clientMessage, DeferredSignature, DELIMITER, executionState, fromZmqFrames, sign, splitZmqFrames, toZmqFrames, type WireParts } from './wire.ts';

const key = Buffer.from('5f1c2c2f0c6e4f0b8f6b3f0c2c1f0a1e', 'latin1');
const j = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

function parts(rand: () => number): WireParts {
  const nbuf = Math.floor(rand() * 4);
  return {
    header: j({ msg_id: randomUUID(), msg_type: 'display_data', session: 's', username: 'u', date: '2026-01-01T00:00:00.000Z', version: '5.3' }),
    parent: rand() < 0.5 ? j({}) : j({ msg_id: 'p', msg_type: 'execute_request', session: 's', username: 'u', date: '', version: '5.3' }),
    metadata: j({ n: Math.floor(rand() * 1000) }),
    content: j({ data: { 'text/plain': 'é✓'.repeat(Math.floor(rand() * 50)) } }),
    buffers: Array.from({ length: nbuf }, () => randomBytes(rand, Math.floor(rand() * 3000))),
  };
}

describe('Jupyter ZMQ wire protocol', () => {
  it('signs with HMAC-SHA256 over the four JSON parts, as jupyter_client does', () => {
    const p = parts(prng(1));
    const expected = createHmac('sha256', key).update(Buffer.concat([p.header, p.parent, p.metadata, p.content])).digest('hex');
    expect(sign(key, p.header, p.parent, p.metadata, p.content)).toBe(expected);
    const frames = toZmqFrames(key, p);
    expect(frames[0]?.equals(DELIMITER)).toBe(true);
    expect(frames[1]?.toString()).toBe(expected);
  });

  it('round-trips with routing prefixes and rejects any tampering (seeded)', () => {
    const rand = prng(42);
    for (let i = 0; i < 200; i++) {
      const p = parts(rand);
      const frames = [Buffer.from('kernel.x.iopub'), ...toZmqFrames(key, p)];
      const back = fromZmqFrames(key, frames);
      expect(back.header.equals(p.header) && back.content.equals(p.content)).toBe(true);
      expect(back.buffers.map((b) => b.toString('hex'))).toEqual(p.buffers.map((b) => Buffer.from(b).toString('hex')));
      // Flip one byte in one signed part: the signature no longer matches.
      const victim = 3 + Math.floor(rand() * 4);
      const bad = frames.map((f) => Buffer.from(f));
      const target = bad[victim] as Buffer;
      if (target.length > 0) {
        const at = Math.floor(rand() * target.length);
        target[at] = (target[at] ?? 0) ^ 1;
        expect(() => fromZmqFrames(key, bad)).toThrow(/bad HMAC signature/);
      }
    }
    expect(() => fromZmqFrames(key, [Buffer.from('x')])).toThrow(/delimiter/);
    expect(() => fromZmqFrames(key, [DELIMITER, Buffer.from('sig'), j({})])).toThrow(/fewer than four/);
    expect(() => fromZmqFrames(Buffer.from('other key'), toZmqFrames(key, parts(prng(3))))).toThrow(/bad HMAC/);
  });

  it('checks a deferred signature at once or in steps, one step per event-loop turn, with the same verdict (seeded)', async () => {
    const rand = prng(11);
    const inSteps = (d: DeferredSignature, step: number, waiting?: () => boolean): Promise<{ ok: boolean; turns: number }> =>
      new Promise((resolve) => {
        let turns = 0;
        let counting = true;
        const count = (): void => {
          if (!counting) return;
          turns++;
          setImmediate(count);
        };
        setImmediate(count);
        let sync = true;
        d.inSteps(
          step,
          (ok) => {
            counting = false;
            resolve({ ok, turns: sync ? -1 : turns });
          },
          waiting,
        );
        sync = false;
      });
    for (let i = 0; i < 20; i++) {
      const p = { ...parts(rand), content: randomBytes(rand, 1 + Math.floor(rand() * 50_000)) };
      const good = splitZmqFrames(toZmqFrames(key, p));
      expect(new DeferredSignature(key, good).now()).toBe(true);
      expect((await inSteps(new DeferredSignature(key, good), 1 + Math.floor(rand() * 20_000))).ok).toBe(true);
      // One byte changed anywhere in the content, or the wrong key: rejected either way.
      const bad = splitZmqFrames(toZmqFrames(key, p).map((f) => Buffer.from(f)));
      const at = Math.floor(rand() * bad.parts.content.length);
      bad.parts.content[at] = (bad.parts.content[at] ?? 0) ^ 0x20;
      expect(new DeferredSignature(key, bad).now()).toBe(false);
      expect((await inSteps(new DeferredSignature(key, bad), 1 + Math.floor(rand() * 20_000))).ok).toBe(false);
      expect((await inSteps(new DeferredSignature(Buffer.from('other key'), good), 4096)).ok).toBe(false);
    }
    // 1 MiB in 64 KiB steps takes several turns; once the caller only waits on the verdict,
    // the rest goes in one step.
    const big = splitZmqFrames(toZmqFrames(key, { ...parts(prng(5)), content: Buffer.alloc(1 << 20, 0x61) }));
    const stepped = await inSteps(new DeferredSignature(key, big), 64 * 1024);
    expect(stepped.ok).toBe(true);
    expect(stepped.turns).toBeGreaterThanOrEqual(4);
    expect(await inSteps(new DeferredSignature(key, big), 64 * 1024, () => true)).toEqual({ ok: true, turns: -1 });
    // An empty key means signing is off (Jupyter): nothing to check.
    expect((await inSteps(new DeferredSignature(Buffer.alloc(0), big), 1)).ok).toBe(true);
    expect(() => new DeferredSignature(key, big).inSteps(0, () => undefined)).toThrow(RangeError);
  });

  it('checks content that arrives in pieces: hashed as it comes, the verdict once all is in, failure when cut off', () => {
    const rand = prng(11);
    const p = { ...parts(rand), content: randomBytes(rand, 300_000) };
    const signature = Buffer.from(sign(key, p.header, p.parent, p.metadata, p.content), 'latin1');
    const arrive = (sig: Buffer, k = key): { a: ArrivingContent; steps: number[]; verdicts: [boolean, string][] } => {
      const a = new ArrivingContent(k, p, sig, p.content.length);
      const steps: number[] = [];
      const verdicts: [boolean, string][] = [];
      a.listen((n) => steps.push(n), (ok, why) => verdicts.push([ok, why]));
      return { a, steps, verdicts };
    };
    const fill = (a: ArrivingContent, upTo: number): void => {
      for (let at = a.filled; at < upTo; ) {
        const n = Math.min(upTo - at, 1 + Math.floor(rand() * 40_000));
        p.content.copy(a.buffer, at, at, at + n);
        at += n;
        a.progress(at);
      }
    };
    const good = arrive(signature);
    expect(good.a.buffer.length).toBe(p.content.length);
    fill(good.a, 200_000);
    expect(good.a.verdict).toBeUndefined();
    expect(good.steps.at(-1)).toBe(200_000);
    fill(good.a, p.content.length);
    expect(good.verdicts).toEqual([[true, '']]);
    expect(good.a.buffer.equals(p.content)).toBe(true);
    good.a.abort('too late'); // decided already: no second verdict
    expect(good.verdicts).toHaveLength(1);
    // Another key's signature, or one byte of content changed, fails at the end.
    const forged = arrive(Buffer.from(sign(Buffer.from('other'), p.header, p.parent, p.metadata, p.content), 'latin1'));
    fill(forged.a, p.content.length);
    expect(forged.verdicts).toEqual([[false, expect.stringMatching(/bad HMAC/)]]);
    const tampered = arrive(signature);
    fill(tampered.a, 1000);
    tampered.a.buffer[500]! ^= 1; // already hashed: not read again, so this alone changes nothing
    p.content.copy(tampered.a.buffer, 1000, 1000);
    tampered.a.buffer[250_000]! ^= 1; // still to be hashed: this fails the check
    tampered.a.progress(p.content.length);
    expect(tampered.verdicts[0]?.[0]).toBe(false);
    // Cut off: fails with the reason given; later bytes change nothing.
    const cut = arrive(signature);
    fill(cut.a, 100_000);
    cut.a.abort('connection broke');
    cut.a.progress(p.content.length);
    expect(cut.verdicts).toEqual([[false, 'connection broke']]);
    // Listening after the verdict hears it at once; an empty key (signing off) passes anything.
    const late = new ArrivingContent(key, p, signature, p.content.length);
    late.abort('gone');
    const heard: boolean[] = [];
    late.listen(() => undefined, (ok) => heard.push(ok));
    expect(heard).toEqual([false]);
    const unsigned = arrive(Buffer.alloc(0), Buffer.alloc(0));
    fill(unsigned.a, p.content.length);
    expect(unsigned.verdicts).toEqual([[true, '']]);
  });

  it('takes a client\'s message for a kernel only when it is well formed and not on iopub', () => {
    const msg = makeMessage({ channel: 'shell', msgType: 'execute_request', session: 's', content: { code: '1+1' } });
    const ok = clientMessage(encodeV1({ ...msg, buffers: [Buffer.from([1, 2, 3])] }));
    expect(ok.channel).toBe('shell');
    expect(JSON.parse(ok.parts.content.toString())).toEqual({ code: '1+1' });
    expect(ok.parts.buffers.map((b) => [...b])).toEqual([[1, 2, 3]]);
    const header = j(msg.header);
    expect(() => clientMessage(encodeV1({ ...msg, channel: 'iopub' }))).toThrow(/cannot send on iopub/);
    expect(() => clientMessage(Buffer.from('not a v1 frame'))).toThrow(KernelError);
    expect(() => clientMessage(encodeV1Parts('shell', [header, j({}), j({})]))).toThrow(KernelError);
    expect(() => clientMessage(encodeV1Parts('shell', [j({ msg_id: 1 }), j({}), j({}), j({})]))).toThrow(/bad header/);
    expect(() => clientMessage(encodeV1Parts('shell', [header, j({}), j({}), j([1, 2])]))).toThrow(/must be JSON objects/);
    expect(() => clientMessage(encodeV1Parts('shell', [header, Buffer.from('{'), j({}), j({})]))).toThrow(/must be JSON objects/);
  });

  it('reads busy/idle from a status message\'s content', () => {
    expect(executionState(j({ execution_state: 'busy' }))).toBe('busy');
    expect(executionState(Buffer.from('{"execution_state" : "idle"}'))).toBe('idle');
    expect(executionState(j({ execution_state: 'starting' }))).toBeUndefined();
  });

  it('builds tunnel KERNEL frames that the protocol decoders read back exactly (seeded)', () => {
    const rand = prng(7);
    for (let i = 0; i < 200; i++) {
      const id = randomUUID();
      const p = parts(rand);
      const channel = (['shell', 'iopub', 'stdin', 'control'] as const)[Math.floor(rand() * 4)] ?? 'iopub';
      const frame = kernelFrameFromParts(kernelIdBytes(id), channel, p);
      const f = decodeFrame(frame);
      expect(f.kind).toBe('kernel');
      if (f.kind !== 'kernel') continue;
      expect(f.kernelId).toBe(id);
      const m = decodeV1(f.payload);
      expect(m.channel).toBe(channel);
      expect(m.header).toEqual(JSON.parse(p.header.toString()));
      expect(m.content).toEqual(JSON.parse(p.content.toString()));
      expect(m.buffers.map((b) => Buffer.from(b).toString('hex'))).toEqual(p.buffers.map((b) => Buffer.from(b).toString('hex')));
    }
  });
});
