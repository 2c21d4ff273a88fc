// A child process of the relay benchmark holding some of its 100 client connections.
// Clients in one process read the 100 copies of each message in turn, so whatever that
// process spends per copy queues up before the last client's stamp: spreading them over a
// few processes keeps the harness's own queue out of the gateway's figure. Each stream
// message's send stamp (the load kernel's CLOCK_MONOTONIC, shared by all processes here)
// is read with a byte search, and only the latency is kept, in a preallocated array.
//
// Protocol with the parent (IPC): it sends {url, token, clients, capacity} (or, for the
// reference, {connectionFile, capacity}); this process answers {ready}; then `start` and
// `stop` messages; on `stop` it answers {latencies: number[], first: string, last: string}
// (bigint stamps as decimal strings).
//
// The reference: one ZMQ subscriber straight on the load kernel's iopub socket (its
// connection file), the way the provider itself listens: what a message's trip costs
// without the provider, tunnel and gateway, measured the same way in the same run.
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import * as zmq from 'zeromq';
import { V1_SUBPROTOCOL } from '@kinesis/protocol';

type Setup = { readonly url: string; readonly token: string; readonly clients: number; readonly capacity: number } | { readonly connectionFile: string; readonly capacity: number };

const send = (m: unknown): void => void process.send?.(m);
const marker = Buffer.from('"text":');

let lat = new Float64Array(0);
let n = 0;
let first = 0n;
let last = 0n;
let recording = false;
const sockets: WebSocket[] = [];

function onFrame(data: Buffer): void {
  if (!recording) return;
  const at = process.hrtime.bigint();
  let k = data.indexOf(marker);
  if (k < 0) return; // not a stream message
  k += marker.length;
  while (data[k] === 0x20 || data[k] === 0x22) k++; // space, opening quote
  let sent = 0n;
  for (; data[k]! >= 0x30 && data[k]! <= 0x39; k++) sent = sent * 10n + BigInt(data[k]! - 0x30);
  if (n < lat.length) lat[n++] = Number(at - sent) / 1e6;
  if (first === 0n) first = at;
  last = at;
}

let sub: zmq.Subscriber | undefined;

async function setup(s: Setup): Promise<void> {
  lat = new Float64Array(s.capacity);
  if ('connectionFile' in s) {
    const info = JSON.parse(readFileSync(s.connectionFile, 'utf8')) as Record<string, string | number>;
    sub = new zmq.Subscriber();
    sub.connect(`tcp://${String(info['ip'])}:${String(info['iopub_port'])}`);
    sub.subscribe();
    void (async () => {
      for await (const frames of sub!) {
        // The content is the last frame (no buffers here).
        const content = frames[frames.length - 1];
        if (content) onFrame(content);
      }
    })().catch(() => undefined);
    // A SUB socket misses what is published before its subscription reaches the kernel.
    await new Promise((r) => setTimeout(r, 300));
    send({ ready: true });
    return;
  }
  for (let i = 0; i < s.clients; i++) {
    const ws = new WebSocket(s.url, [V1_SUBPROTOCOL], { headers: { Authorization: `token ${s.token}` }, perMessageDeflate: false });
    ws.on('message', onFrame);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    sockets.push(ws);
  }
  send({ ready: true });
}

process.on('message', (m: unknown) => {
  if (typeof m === 'object' && m !== null && ('url' in m || 'connectionFile' in m)) {
    setup(m as Setup).catch((e: unknown) => {
      send({ error: String(e) });
      process.exit(1);
    });
  } else if (m === 'start') {
    n = 0;
    first = 0n;
    last = 0n;
    recording = true;
  } else if (m === 'stop') {
    recording = false;
    send({ latencies: Array.from(lat.subarray(0, n)), first: first.toString(), last: last.toString() });
    for (const ws of sockets) ws.close();
    sub?.close();
    setTimeout(() => process.exit(0), 200).unref();
  }
});
