import { describe, expect, it } from 'vitest';
import { SentLog } from './sent-log.ts';

const f = (n: number, size = 10): Buffer => Buffer.alloc(size, n);

describe('SentLog', () => {
  it('returns what followed a message, everything for "", undefined for an unknown one', () => {
    const log = new SentLog(100, 1 << 20);
    for (let i = 0; i < 5; i++) log.push(`m${i}`, f(i));
    expect(log.after('m2')!.map((b) => b[0])).toEqual([3, 4]);
    expect(log.after('m4')).toEqual([]);
    expect(log.after('')!.map((b) => b[0])).toEqual([0, 1, 2, 3, 4]);
    expect(log.after('nope')).toBeUndefined();
  });

  it('keeps at most maxFrames and maxBytes, oldest out; a frame over the byte bound empties it', () => {
    const log = new SentLog(3, 1 << 20);
    for (let i = 0; i < 2000; i++) log.push(`m${i}`, f(i % 256));
    expect(log.length).toBe(3);
    expect(log.after('m1996')).toBeUndefined();
    expect(log.after('m1997')!.length).toBe(2);
    const bytes = new SentLog(100, 25);
    for (let i = 0; i < 5; i++) bytes.push(`m${i}`, f(i));
    expect(bytes.length).toBe(2);
    bytes.push('big', f(9, 26));
    expect(bytes.length).toBe(0);
    expect(bytes.after('m4')).toBeUndefined(); // a resume across the dropped frame is not silent
  });
});
