// A light load-generating Jupyter kernel for the relay benchmark (the issue allows one):
// a real kernel over ZMQ with HMAC signing, launched by the provider from a kernelspec
// like any other, so the whole path (provider, tunnel, gateway, client sockets) is
// exercised. Its "code" is JSON: {"rate": msgs/s, "seconds": s, "size": bytes}. Each
// stream message carries the sender's monotonic clock (process.hrtime, CLOCK_MONOTONIC,
// shared by every process on the machine) so clients measure one-way latency.
import { readFileSync } from 'node:fs';
import * as zmq from 'zeromq';
import { fromZmqFrames, toZmqFrames } from '../../provider-kernel/src/wire.ts';

const file = process.argv[process.argv.indexOf('-f') + 1];
if (!file) throw new Error('usage: load-kernel -f <connection file>');
const info = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string | number>;
const key = Buffer.from(String(info['key']), 'latin1');
const url = (p: string): string => `tcp://${String(info['ip'])}:${String(info[p])}`;

const shell = new zmq.Router();
const control = new zmq.Router();
const iopub = new zmq.Publisher({ sendHighWaterMark: 0 });
const hb = new zmq.Reply();
await Promise.all([shell.bind(url('shell_port')), control.bind(url('control_port')), iopub.bind(url('iopub_port')), hb.bind(url('hb_port'))]);
const stdin = new zmq.Router();
await stdin.bind(url('stdin_port'));

const session = crypto.randomUUID();
let n = 0;
const header = (msgType: string): Buffer =>
  Buffer.from(JSON.stringify({ msg_id: `${session}_${n++}`, msg_type: msgType, session, username: 'load', date: new Date().toISOString(), version: '5.3' }));

let pubChain = Promise.resolve();
function publish(msgType: string, parent: Buffer, content: unknown): Promise<void> {
  const frames = toZmqFrames(key, { header: header(msgType), parent, metadata: Buffer.from('{}'), content: Buffer.from(JSON.stringify(content)), buffers: [] });
  pubChain = pubChain.then(() => iopub.send([Buffer.from(msgType), ...frames.slice(0)]));
  return pubChain;
}

async function reply(sock: zmq.Router, ids: Buffer[], msgType: string, parent: Buffer, content: unknown): Promise<void> {
  const frames = toZmqFrames(key, { header: header(msgType), parent, metadata: Buffer.from('{}'), content: Buffer.from(JSON.stringify(content)), buffers: [] });
  await sock.send([...ids, ...frames]);
}

const kernelInfo = {
  status: 'ok',
  protocol_version: '5.3',
  implementation: 'kinesis-load',
  implementation_version: '1',
  language_info: { name: 'json', version: '1', mimetype: 'application/json', file_extension: '.json' },
  banner: 'load generator',
  help_links: [],
};

async function serve(sock: zmq.Router): Promise<void> {
  for await (const frames of sock) {
    const d = frames.findIndex((f) => f.toString('latin1') === '<IDS|MSG>');
    const ids = frames.slice(0, d);
    const msg = fromZmqFrames(key, frames);
    const h = JSON.parse(msg.header.toString()) as { msg_type: string };
    const content = JSON.parse(msg.content.toString()) as { code?: string };
    await publish('status', msg.header, { execution_state: 'busy' });
    if (h.msg_type === 'kernel_info_request') {
      await reply(sock, ids, 'kernel_info_reply', msg.header, kernelInfo);
    } else if (h.msg_type === 'execute_request') {
      const spec = JSON.parse(content.code || '{}') as { rate?: number; seconds?: number; size?: number };
      const rate = spec.rate ?? 0;
      const total = Math.round(rate * (spec.seconds ?? 0));
      const pad = 'x'.repeat(Math.max(0, (spec.size ?? 64) - 40));
      const t0 = performance.now();
      for (let i = 0; i < total; i++) {
        const due = t0 + (i * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        void publish('stream', msg.header, { name: 'stdout', text: `${process.hrtime.bigint()} ${pad}\n` });
      }
      await pubChain;
      await reply(sock, ids, 'execute_reply', msg.header, { status: 'ok', execution_count: 1, user_expressions: {}, payload: [] });
    } else if (h.msg_type === 'shutdown_request') {
      await reply(sock, ids, 'shutdown_reply', msg.header, { status: 'ok', restart: false });
      await publish('status', msg.header, { execution_state: 'idle' });
      process.exit(0);
    } else {
      await reply(sock, ids, h.msg_type.replace(/_request$/, '_reply'), msg.header, { status: 'ok' });
    }
    await publish('status', msg.header, { execution_state: 'idle' });
  }
}

void (async () => {
  for await (const [m] of hb) await hb.send(m ?? Buffer.alloc(0));
})();
process.on('SIGINT', () => undefined); // interrupt: nothing to stop between messages
void serve(control);
await serve(shell);
