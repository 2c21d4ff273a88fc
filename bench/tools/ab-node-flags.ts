// A/B of node flags for the gateway and provider: two whole stacks on this machine, A started
// with plain `node <bin>`, B with the flags the bins' shebang lines give (what ships) plus
// FLAGS; 10 MB of stdout alternated between them, N runs each (default 30). With A_SHIPPED=1,
// A runs as shipped too, so B measures FLAGS alone.
//   flock /tmp/kinesis-bench.lock npx tsx bench/tools/ab-node-flags.ts [N]
//   FLAGS="--max-semi-space-size=32" npx tsx bench/tools/ab-node-flags.ts 30
import { startStack, type Stack } from '../lib/stack.ts';
import { WsKernelClient, percentile, rest } from '../lib/ws-kernel-client.ts';

const TEN_MB = "import sys\ns='x'*1023+'\\n'\nfor _ in range(10240): sys.stdout.write(s)\nsys.stdout.flush()";
const flags = (process.env['FLAGS'] ?? '').split(' ').filter(Boolean);
const N = Number(process.argv[2] ?? 30);
const aShipped = process.env['A_SHIPPED'] === '1';
const A = await startStack({ binFlags: aShipped });
const B = await startStack({ gatewayNodeArgs: flags, providerNodeArgs: flags });
const client = async (s: Stack): Promise<WsKernelClient> => {
  const specs = await rest<{ default: string }>(s.url, s.token, 'GET', '/api/kernelspecs');
  const k = await rest<{ id: string }>(s.url, s.token, 'POST', '/api/kernels', { name: specs.default });
  return WsKernelClient.connect(s.url, s.token, k.id, 'v1');
};
const a = await client(A);
const b = await client(B);
for (let i = 0; i < 2; i++) {
  await a.execute(TEN_MB);
  await b.execute(TEN_MB);
}
const xa: number[] = [];
const xb: number[] = [];
for (let i = 0; i < N; i++) {
  // Alternate which goes first, so neither always follows the other's garbage.
  if (i % 2) {
    xa.push((await a.execute(TEN_MB)).ms);
    xb.push((await b.execute(TEN_MB)).ms);
  } else {
    xb.push((await b.execute(TEN_MB)).ms);
    xa.push((await a.execute(TEN_MB)).ms);
  }
}
const f = (x: number[]): string => `p25 ${percentile(x, 25).toFixed(1)} / p50 ${percentile(x, 50).toFixed(1)} / p75 ${percentile(x, 75).toFixed(1)} ms`;
console.log(`A ${aShipped ? 'as shipped' : 'plain node'}: ${f(xa)}`);
console.log(`B as shipped${flags.length ? ' + ' + flags.join(' ') : ''}: ${f(xb)}`);
a.close();
b.close();
await A.stop();
await B.stop();
