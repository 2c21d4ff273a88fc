// Profiles the gateway and provider processes over 1000 `1+1` round trips:
//   npx tsx bench/tools/rtt-profile.ts [--no-metering]  → CPU profiles in /tmp/kinesis-prof/{gw,pv}
//   node bench/tools/cpuprofile-top.mjs /tmp/kinesis-prof/gw/<main thread profile> 30
import { mkdirSync, rmSync } from 'node:fs';
import { startStack } from '../lib/stack.ts';
import { WsKernelClient, rest, percentile } from '../lib/ws-kernel-client.ts';

const dir = '/tmp/kinesis-prof';
rmSync(dir, { recursive: true, force: true });
mkdirSync(`${dir}/gw`, { recursive: true });
mkdirSync(`${dir}/pv`, { recursive: true });
const s = await startStack({ provider: false, gatewayNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}/gw`], providerNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}/pv`] });
try {
  await s.startProvider(process.argv.slice(2));
  const specs = await rest<{ default: string }>(s.url, s.token, 'GET', '/api/kernelspecs');
  const k = await rest<{ id: string }>(s.url, s.token, 'POST', '/api/kernels', { name: specs.default });
  const c = await WsKernelClient.connect(s.url, s.token, k.id, 'v1');
  const xs: number[] = [];
  for (let i = 0; i < 1000; i++) xs.push((await c.execute('1+1')).ms);
  console.log(`p50 ${percentile(xs, 50).toFixed(2)} ms, p90 ${percentile(xs, 90).toFixed(2)} ms; profiles in ${dir}`);
  c.close();
} finally {
  await s.stop();
}
