// The resuming socket against a stand-in WebSocket class (an EventTarget that records its
// URL): the channels URL gets kinesis_last_msg_id, empty first and then the msg_id of the
// last message that arrived, per kernel and session; other URLs are left alone.
import { describe, expect, it } from 'vitest';
import { encodeV1, makeMessage, v1ToLegacy } from '@kinesis/protocol';
import { messageId, resumingWebSocket } from './resuming-socket.ts';

class StandIn extends EventTarget {
  static urls: string[] = [];
  constructor(url: string | URL) {
    super();
    StandIn.urls.push(String(url));
  }
}

const msg = () => makeMessage({ channel: 'iopub', msgType: 'stream', session: 's', parent: { msg_id: 'parent-id', msg_type: 'execute_request', session: 's', username: 'u', date: '', version: '5.3' }, content: { name: 'stdout', text: 'hi' } });
const arrayBuffer = (b: Buffer): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

describe('resumingWebSocket', () => {
  it('reads the header msg_id of v1 and legacy frames (not the parent\'s), and refuses garbage', () => {
    const m = msg();
    expect(messageId(arrayBuffer(encodeV1(m)))).toBe(m.header.msg_id);
    const legacy = v1ToLegacy(encodeV1(m));
    expect(typeof legacy).toBe('string');
    expect(messageId(legacy)).toBe(m.header.msg_id);
    expect(messageId(new ArrayBuffer(8))).toBeUndefined();
    expect(messageId(arrayBuffer(Buffer.from('0'.repeat(64))))).toBeUndefined();
    expect(messageId('{"nope": 1}')).toBeUndefined();
    expect(messageId(42)).toBeUndefined();
  });

  it('adds kinesis_last_msg_id to kernel channels URLs, remembering the last message per kernel and session', () => {
    const WS = resumingWebSocket(StandIn as unknown as typeof WebSocket);
    StandIn.urls = [];
    const url = 'ws://h/api/kernels/k1/channels?session_id=s1&token=t';
    const a = new WS(url, 'v1.kernel.websocket.jupyter.org') as unknown as EventTarget;
    expect(new URL(StandIn.urls[0]!).searchParams.get('kinesis_last_msg_id')).toBe('');
    expect(new URL(StandIn.urls[0]!).searchParams.get('token')).toBe('t');
    const m1 = msg();
    const m2 = msg();
    a.dispatchEvent(new MessageEvent('message', { data: arrayBuffer(encodeV1(m1)) }));
    a.dispatchEvent(new MessageEvent('message', { data: arrayBuffer(encodeV1(m2)) }));
    a.dispatchEvent(new MessageEvent('message', { data: 'not a kernel message' }));
    new WS(url);
    expect(new URL(StandIn.urls[1]!).searchParams.get('kinesis_last_msg_id')).toBe(m2.header.msg_id);
    new WS('ws://h/api/kernels/k1/channels?session_id=other&token=t');
    expect(new URL(StandIn.urls[2]!).searchParams.get('kinesis_last_msg_id')).toBe('');
    new WS('ws://h/api/kernels/k1/channels?token=t'); // no session_id: the gateway could not resume
    new WS('ws://h/yjs/room');
    expect(StandIn.urls[3]).toBe('ws://h/api/kernels/k1/channels?token=t');
    expect(StandIn.urls[4]).toBe('ws://h/yjs/room');
  });
});
