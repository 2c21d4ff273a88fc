// The frame header the gateway writes itself for broadcasts must be byte for byte what ws
// would write (ws is the reference implementation of RFC 6455 here).
import { describe, expect, it } from 'vitest';
import * as ws from 'ws';
import { binaryFrameHeader } from './client.ts';

// ws exports its Sender at run time; @types/ws does not declare it.
const Sender = (ws as unknown as { Sender: { frame(data: Buffer, o: Record<string, unknown>): Buffer[] } }).Sender;

describe('binaryFrameHeader', () => {
  it('equals ws Sender framing for every length class', () => {
    for (const n of [0, 1, 125, 126, 127, 65535, 65536, 65537, 1_000_000, 10 * 1024 * 1024]) {
      const data = Buffer.alloc(n);
      const [head] = Sender.frame(data, { fin: true, rsv1: false, opcode: 2, mask: false, readOnly: true });
      expect(binaryFrameHeader(n).equals(head!), `length ${n}`).toBe(true);
    }
  });
});
