// The headline compatibility test: JupyterLab's own client library (@jupyterlab/services 7,
// what JupyterLab and many tools use) drives kernels on a provider through the gateway,
// both started through their command lines as a user would.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelManager, type Kernel, type KernelMessage } from '@jupyterlab/services';
import { nodeServerSettings } from '../bench/lib/services-settings.ts';
import { startStack, type Stack } from '../bench/lib/stack.ts';

let stack: Stack;
let manager: KernelManager;
let kernel: Kernel.IKernelConnection;

beforeAll(async () => {
  stack = await startStack();
  const serverSettings = nodeServerSettings(stack.url, stack.token);
  manager = new KernelManager({ serverSettings });
  await manager.ready;
  const specs = await (await fetch(`${stack.url}/api/kernelspecs`, { headers: { Authorization: `token ${stack.token}` } })).json() as { default: string };
  kernel = await manager.startNew({ name: specs.default });
  await kernel.info;
}, 90_000);

afterAll(async () => {
  try {
    await kernel?.shutdown();
  } catch {
    /* already gone */
  }
  manager?.dispose();
  await stack?.stop();
}, 60_000);

async function run(code: string, onIOPub?: (m: KernelMessage.IIOPubMessage) => void): Promise<{ reply: KernelMessage.IExecuteReplyMsg; iopub: KernelMessage.IIOPubMessage[] }> {
  const iopub: KernelMessage.IIOPubMessage[] = [];
  const future = kernel.requestExecute({ code });
  future.onIOPub = (m) => {
    iopub.push(m);
    onIOPub?.(m);
  };
  const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
  return { reply, iopub };
}

const streams = (iopub: KernelMessage.IIOPubMessage[], name: 'stdout' | 'stderr'): string =>
  iopub.filter((m) => m.header.msg_type === 'stream' && (m.content as { name: string }).name === name).map((m) => (m.content as { text: string }).text).join('');

describe('@jupyterlab/services against the Kinesis stack', () => {
  it('executes code and returns the result', async () => {
    const { reply, iopub } = await run('1+1');
    expect(reply.content.status).toBe('ok');
    const result = iopub.find((m) => m.header.msg_type === 'execute_result');
    expect((result?.content as { data: Record<string, string> }).data['text/plain']).toBe('2');
  });

  it('carries a signed receipt in execute_reply and the gateway\'s verdict on iopub (CPU method, never a GPU one here)', async () => {
    const all: KernelMessage.IIOPubMessage[] = [];
    const collect = (_: unknown, m: KernelMessage.IIOPubMessage): void => void all.push(m);
    kernel.iopubMessage.connect(collect);
    const { reply } = await run('sum(i * i for i in range(200000))');
    const inReply = (reply.metadata as { kinesis?: { receipt?: { message: Record<string, string>; signature: string } } }).kinesis?.receipt;
    expect(inReply?.signature).toMatch(/^0x[0-9a-f]{130}$/);
    expect(['rapl', 'estimate']).toContain(inReply?.message['method']);
    await new Promise((r) => setTimeout(r, 500)); // the verdict follows the reply
    kernel.iopubMessage.disconnect(collect);
    const notices = all.filter((m) => (m.header.msg_type as string) === 'kinesis_usage' && m.parent_header.msg_id === reply.parent_header.msg_id);
    expect(notices).toHaveLength(1);
    const c = notices[0]!.content as unknown as { receipt: { message: Record<string, string> }; verdict: { accepted: boolean } };
    expect(c.verdict).toEqual({ accepted: true });
    expect(c.receipt.message['msgId']).toBe(reply.parent_header.msg_id);
    const usage = (await (await fetch(`${stack.url}/api/usage?kernel_id=${kernel.id}`, { headers: { Authorization: `token ${stack.token}` } })).json()) as { records: unknown[] };
    expect(usage.records.length).toBeGreaterThan(0);
  });

  it('streams stdout and stderr', async () => {
    const { iopub } = await run("import sys\nprint('hello out')\nprint('hello err', file=sys.stderr)");
    expect(streams(iopub, 'stdout')).toContain('hello out');
    expect(streams(iopub, 'stderr')).toContain('hello err');
  });

  it('carries binary buffers both ways through a comm', async () => {
    const received: DataView[] = [];
    kernel.registerCommTarget('kinesis-echo', (comm) => {
      comm.onMsg = (msg) => {
        for (const b of msg.buffers ?? []) received.push(b instanceof DataView ? b : new DataView(b as ArrayBuffer));
      };
    });
    const { reply } = await run(
      [
        'from ipykernel.comm import Comm',
        "c = Comm(target_name='kinesis-echo')",
        "c.send({'k': 1}, buffers=[bytes(range(256)), b'\\x00kinesis\\xff'])",
      ].join('\n'),
    );
    expect(reply.content.status).toBe('ok');
    await new Promise((r) => setTimeout(r, 300));
    expect(received).toHaveLength(2);
    expect(Array.from(new Uint8Array(received[0]!.buffer, received[0]!.byteOffset, received[0]!.byteLength))).toEqual(Array.from({ length: 256 }, (_, i) => i));
    expect(Buffer.from(received[1]!.buffer, received[1]!.byteOffset, received[1]!.byteLength).toString('latin1')).toBe('\x00kinesis\xff');
  });

  it('sends display_data with a binary buffer through a comm opened by the client', async () => {
    await run(
      [
        'from ipykernel.comm import Comm',
        'import numpy as np',
        'def _target(comm, open_msg):',
        '    @comm.on_msg',
        '    def _r(msg):',
        "        buf = msg['buffers'][0]",
        "        arr = np.frombuffer(buf, dtype=np.uint8)",
        "        comm.send({'sum': int(arr.sum())}, buffers=[arr[::-1].tobytes()])",
        "get_ipython().kernel.comm_manager.register_target('kinesis-sum', _target)",
      ].join('\n'),
    );
    const comm = kernel.createComm('kinesis-sum');
    const got = new Promise<KernelMessage.ICommMsgMsg>((resolve) => {
      comm.onMsg = (m) => resolve(m);
    });
    comm.open({});
    comm.send({}, undefined, [new Uint8Array([1, 2, 3, 250]).buffer]);
    const m = await got;
    expect((m.content.data as { sum: number }).sum).toBe(256);
    const b = m.buffers?.[0] as DataView;
    expect(Array.from(new Uint8Array(b.buffer, b.byteOffset, b.byteLength))).toEqual([250, 3, 2, 1]);
    comm.close();
  });

  it('receives large output whole and in order (it crosses the tunnel in parts, streamed to the client as they arrive)', async () => {
    // 3 MB of stdout in one message, then a 2 MB comm buffer: both far over the provider's
    // 1 MiB part size, so each reaches this client as one frame streamed by the gateway.
    const bufs: DataView[] = [];
    kernel.registerCommTarget('kinesis-big', (comm) => {
      comm.onMsg = (msg) => {
        for (const b of msg.buffers ?? []) bufs.push(b instanceof DataView ? b : new DataView(b as ArrayBuffer));
      };
    });
    const { reply, iopub } = await run(
      [
        'import sys',
        "line = ''.join(chr(33 + i % 90) for i in range(1023)) + '\\n'",
        'for i in range(3072): sys.stdout.write(line)',
        'sys.stdout.flush()',
        'from ipykernel.comm import Comm',
        "c = Comm(target_name='kinesis-big')",
        "c.send({'n': 1}, buffers=[bytes(i % 251 for i in range(2 * 1024 * 1024))])",
        "print('after')",
      ].join('\n'),
    );
    expect(reply.content.status).toBe('ok');
    const line = Array.from({ length: 1023 }, (_, i) => String.fromCharCode(33 + (i % 90))).join('') + '\n';
    expect(streams(iopub, 'stdout')).toBe(line.repeat(3072) + 'after\n');
    for (let waited = 0; bufs.length === 0 && waited < 10_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    expect(bufs).toHaveLength(1);
    const got = new Uint8Array(bufs[0]!.buffer, bufs[0]!.byteOffset, bufs[0]!.byteLength);
    expect(got.length).toBe(2 * 1024 * 1024);
    let bad = -1;
    for (let i = 0; i < got.length && bad < 0; i++) if (got[i] !== i % 251) bad = i;
    expect(bad).toBe(-1);
  });

  it('answers complete_request and inspect_request', async () => {
    await run('import json');
    const c = await kernel.requestComplete({ code: 'json.du', cursor_pos: 7 });
    expect(c.content.status).toBe('ok');
    expect((c.content as { matches: string[] }).matches.some((m) => m.endsWith('dumps'))).toBe(true);
    const i = await kernel.requestInspect({ code: 'json.dumps', cursor_pos: 10, detail_level: 0 });
    expect(i.content.status).toBe('ok');
    expect(JSON.stringify((i.content as { data: unknown }).data)).toContain('Serialize');
  });

  it('interrupts a time.sleep(60)', async () => {
    const t0 = Date.now();
    const future = kernel.requestExecute({ code: 'import time\ntime.sleep(60)' });
    await new Promise((r) => setTimeout(r, 1500));
    await kernel.interrupt();
    const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
    expect(reply.content.status).toBe('error');
    expect((reply.content as { ename: string }).ename).toBe('KeyboardInterrupt');
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it('restarts: state is gone, the kernel answers again', async () => {
    await run('x_before_restart = 41');
    await kernel.restart();
    await kernel.info;
    const { reply, iopub } = await run("print('x_before_restart' in dir())");
    expect(reply.content.status).toBe('ok');
    expect(streams(iopub, 'stdout').trim()).toBe('False');
  }, 60_000);

  it('shuts down and the kernel is gone from the list; its closing receipt reaches the ledger', async () => {
    const id = kernel.id;
    const usage = async (): Promise<{ records: Array<{ seq: number; cumulativeEnergyMj: number }>; totals: { totalEnergyMj: number } }> =>
      (await (await fetch(`${stack.url}/api/usage?kernel_id=${id}`, { headers: { Authorization: `token ${stack.token}` } })).json()) as never;
    const before = (await usage()).records;
    expect(before.length).toBeGreaterThan(0);
    await kernel.shutdown();
    const list = (await (await fetch(`${stack.url}/api/kernels`, { headers: { Authorization: `token ${stack.token}` } })).json()) as { id: string }[];
    expect(list.map((k) => k.id)).not.toContain(id);
    const r = await fetch(`${stack.url}/api/kernels/${id}`, { headers: { Authorization: `token ${stack.token}` } });
    expect(r.status).toBe(404);
    // The energy from the last cell to the shutdown comes in one more receipt (tunnel
    // kernel_receipt): the ledger's books for the kernel then end where the meter's do.
    const deadline = Date.now() + 10_000;
    let after = await usage();
    while (after.records.length === before.length && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 200));
      after = await usage();
    }
    expect(after.records).toHaveLength(before.length + 1);
    const closing = after.records.at(-1)!;
    expect(closing.seq).toBe(before.at(-1)!.seq + 1);
    expect(closing.cumulativeEnergyMj).toBeGreaterThanOrEqual(before.at(-1)!.cumulativeEnergyMj);
    expect(after.totals.totalEnergyMj).toBe(closing.cumulativeEnergyMj);
  });
});
