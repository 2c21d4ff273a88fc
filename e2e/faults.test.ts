// Faults and hostile input against the real stack: a provider killed mid-execution, a
// gateway restart, a client dropped mid-stream, malformed and oversized frames, bad REST.
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { V1_SUBPROTOCOL, encodeV1, makeMessage } from '@kinesis/protocol';
import { startStack, type Stack } from '../bench/lib/stack.ts';
import { WsKernelClient, rest } from '../bench/lib/ws-kernel-client.ts';

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.stop();
  stack = undefined;
}, 60_000);

async function pythonKernel(s: Stack): Promise<string> {
  const specs = await rest<{ default: string }>(s.url, s.token, 'GET', '/api/kernelspecs');
  return (await rest<{ id: string }>(s.url, s.token, 'POST', '/api/kernels', { name: specs.default })).id;
}

async function until<T>(f: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('faults', () => {
  it('a provider killed during an execution: clients see status dead within 10 s and the model says so', async () => {
    stack = await startStack();
    const s = stack;
    const kid = await pythonKernel(s);
    const c = await WsKernelClient.connect(s.url, s.token, kid, 'v1');
    await c.execute('1+1');
    let deadAt = 0;
    c.onMessage = (m) => {
      if (m.header.msg_type === 'status' && m.content['execution_state'] === 'dead' && !deadAt) deadAt = Date.now();
    };
    void c.execute('import time\ntime.sleep(30)').catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500));
    const killedAt = Date.now();
    await s.stopProvider('SIGKILL');
    await until(async () => (deadAt ? true : undefined), 10_000);
    expect(deadAt - killedAt).toBeLessThan(10_000);
    const model = await rest<{ execution_state: string }>(s.url, s.token, 'GET', `/api/kernels/${kid}`);
    expect(model.execution_state).toBe('dead');
    c.close();
  }, 60_000);

  it('a gateway restart: the provider reconnects by itself and its kernel keeps its state and its session', async () => {
    stack = await startStack();
    const s = stack;
    const kid = await pythonKernel(s);
    const session = await rest<{ id: string }>(s.url, s.token, 'POST', '/api/sessions', { path: 'keep.ipynb', name: 'keep.ipynb', type: 'notebook', kernel: { id: kid } });
    let c = await WsKernelClient.connect(s.url, s.token, kid, 'v1');
    await c.execute('survivor = 42');
    c.close();
    await s.restartGateway();
    // Listed at once, before the provider is back (state-file.ts): a client polling sessions
    // keeps its session instead of starting a new kernel.
    const sessions = await rest<{ id: string; kernel: { id: string } }[]>(s.url, s.token, 'GET', '/api/sessions');
    expect(sessions.map((x) => [x.id, x.kernel.id])).toEqual([[session.id, kid]]);
    const providers = await until(async () => {
      const r = await rest<unknown>(s.url, s.token, 'GET', '/api/providers');
      const list = Array.isArray(r) ? r : ((r as { providers: unknown[] }).providers ?? []);
      return list.length > 0 ? list : undefined;
    }, 20_000);
    expect(providers.length).toBe(1);
    await until(async () => ((await rest<{ id: string }[]>(s.url, s.token, 'GET', '/api/kernels')).some((k) => k.id === kid) ? true : undefined), 10_000);
    c = await WsKernelClient.connect(s.url, s.token, kid, 'v1');
    let out = '';
    c.onMessage = (m) => {
      if (m.header.msg_type === 'stream') out += String(m.content['text']);
    };
    await c.execute('print(survivor)');
    expect(out.trim()).toBe('42');
    c.close();
  }, 90_000);

  it('a client that drops mid-stream (close frame, no reply awaited) and reconnects with its session loses no output', async () => {
    stack = await startStack();
    const p = await printingSession(stack, false);
    let ws = await p.open();
    p.start(ws);
    await until(async () => (p.lines.length > 20 ? true : undefined), 10_000);
    // Drop mid-stream: a close frame sent, the socket then abandoned. Between the close
    // frame's arrival and ws's 'close' event the gateway must already keep frames for the
    // replay (kernel.ts #route): that window is where lines used to go missing.
    ws.close(1001);
    await new Promise((r) => setTimeout(r, 800));
    ws = await p.open();
    await until(async () => (p.idle ? true : undefined), 20_000);
    ws.close();
    // Every line, once: what was in flight when the close frame went out still arrives on the
    // closing socket, and what the gateway routes after it sees the close is replayed.
    expect(p.lines).toEqual(Array.from({ length: 400 }, (_, i) => i));
  }, 60_000);

  it('a client whose TCP connection dies abruptly mid-stream resumes from the last message it read (kinesis_last_msg_id): every line once', async () => {
    stack = await startStack();
    const p = await printingSession(stack, true);
    let ws = await p.open();
    p.start(ws);
    await until(async () => (p.lines.length > 20 ? true : undefined), 10_000);
    // The network stalls (the client stops reading: frames pile up unread in its socket),
    // then the connection dies abruptly, no close frame: those frames were delivered to TCP,
    // so the gateway cannot know they were lost; only the resume brings them back.
    ws.pause();
    await new Promise((r) => setTimeout(r, 150));
    ws.removeAllListeners('message');
    ws.terminate();
    await new Promise((r) => setTimeout(r, 300));
    ws = await p.open();
    await until(async () => (p.idle ? true : undefined), 20_000);
    ws.close();
    expect(p.lines).toEqual(Array.from({ length: 400 }, (_, i) => i)); // all, in order, none twice
  }, 60_000);
});

/**
 * A kernel printing 0..399 every 5 ms, and a client of one session that records the lines
 * of that cell. With `resume`, it opts in to kinesis_last_msg_id and reconnects naming the
 * last message it read.
 */
async function printingSession(s: Stack, resume: boolean) {
  const kid = await pythonKernel(s);
  const session = crypto.randomUUID();
  const base = `${s.url.replace('http', 'ws')}/api/kernels/${kid}/channels?session_id=${session}`;
  const { decodeV1 } = await import('@kinesis/protocol');
  const req = makeMessage({ channel: 'shell', msgType: 'execute_request', session, content: { code: 'import time\nfor i in range(400):\n    print(i, flush=True)\n    time.sleep(0.005)', silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true } });
  const state = { lines: [] as number[], idle: false, lastRead: '' };
  return {
    get lines() {
      return state.lines;
    },
    get idle() {
      return state.idle;
    },
    start: (ws: WebSocket) => ws.send(encodeV1(req)),
    // The listener goes on before 'open': replayed frames can arrive in the same packet as
    // the upgrade response and be emitted before an `await` continuation could attach it.
    async open(): Promise<WebSocket> {
      const url = resume ? `${base}&kinesis_last_msg_id=${encodeURIComponent(state.lastRead)}` : base;
      const ws = new WebSocket(url, [V1_SUBPROTOCOL], { headers: { Authorization: `token ${s.token}` } });
      ws.on('message', (d: Buffer) => {
        const m = decodeV1(d);
        state.lastRead = m.header.msg_id;
        if (m.parent_header.msg_id !== req.header.msg_id) return;
        if (m.header.msg_type === 'stream') for (const l of String(m.content['text']).split('\n')) if (l) state.lines.push(Number(l));
        if (m.header.msg_type === 'status' && m.content['execution_state'] === 'idle') state.idle = true;
      });
      await new Promise((r, j) => {
        ws.once('open', r);
        ws.once('error', j);
      });
      return ws;
    },
  };
}

describe('bad input', () => {
  it('answers 403, 404 and 400 with JSON messages', async () => {
    stack = await startStack();
    const s = stack;
    const r403 = await fetch(`${s.url}/api/kernels`, { headers: { Authorization: 'token wrong' } });
    expect(r403.status).toBe(403);
    const r404 = await fetch(`${s.url}/api/kernels/${crypto.randomUUID()}`, { headers: { Authorization: `token ${s.token}` } });
    expect(r404.status).toBe(404);
    expect(typeof ((await r404.json()) as { message: string }).message).toBe('string');
    const r400 = await fetch(`${s.url}/api/kernels`, { method: 'POST', headers: { Authorization: `token ${s.token}`, 'Content-Type': 'application/json' }, body: '{"name": ' });
    expect(r400.status).toBe(400);
    expect(typeof ((await r400.json()) as { message: string }).message).toBe('string');
  });

  it('closes only the offending socket with 1007 / 1009 and keeps serving the others', async () => {
    stack = await startStack();
    const s = stack;
    const kid = await pythonKernel(s);
    const good = await WsKernelClient.connect(s.url, s.token, kid, 'v1');
    await good.execute('1+1');
    const closeCode = async (payload: Buffer | string, protocols: string[]): Promise<number> => {
      const ws = new WebSocket(`${s.url.replace('http', 'ws')}/api/kernels/${kid}/channels`, protocols, { headers: { Authorization: `token ${s.token}` } });
      await new Promise((r, j) => {
        ws.once('open', r);
        ws.once('error', j);
      });
      return new Promise((r) => {
        ws.once('close', (code) => r(code));
        ws.send(payload);
      });
    };
    expect(await closeCode(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]), [V1_SUBPROTOCOL])).toBe(1007);
    expect(await closeCode('{"not": "a message"', [])).toBe(1007);
    expect(await closeCode(Buffer.alloc(80 * 1024 * 1024, 1), [V1_SUBPROTOCOL])).toBe(1009);
    const r = await good.execute('2+2');
    expect(r.reply.content['status']).toBe('ok');
    good.close();
  }, 60_000);
});
