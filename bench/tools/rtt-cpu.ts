// Per round trip CPU of gateway, provider, kernel and client, metering off and on: npx tsx bench/tools/rtt-cpu.ts
import { readFileSync, readdirSync } from 'node:fs';
import { startStack } from '../lib/stack.ts';
import { WsKernelClient, rest, percentile } from '../lib/ws-kernel-client.ts';
import { startDirectKernel } from '../lib/direct-kernel.ts';
/** utime (user only) or utime + stime of a process, in clock ticks (proc(5) fields 14, 15). */
const procTicks = (pid: number, userOnly = false) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return Number(f[11]) + (userOnly ? 0 : Number(f[12])); };
const ticks = (pid: number) => procTicks(pid);
const uticks = (pid: number) => procTicks(pid, true);
const kernelPid = (tag: string) => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).find((p) => { try { const c = readFileSync(`/proc/${p}/cmdline`, 'utf8'); return c.includes('ipykernel_launcher') && c.includes(tag); } catch { return false; } });
const d = await startDirectKernel();
for (let i = 0; i < 30; i++) await d.execute('1+1');
const dk = Number(kernelPid('kinesis-direct')); const k0 = ticks(dk); const dx: number[] = [];
for (let i = 0; i < 300; i++) dx.push((await d.execute('1+1')).ms);
console.log('direct p50', percentile(dx, 50).toFixed(2), 'kernel cpu ms/rt', ((ticks(dk) - k0) * 10 / 300).toFixed(2));
await d.stop();
for (const args of [['--no-metering'], []]) {
  const s = await startStack({ provider: false });
  await s.startProvider(args);
  const specs = await rest<{ default: string }>(s.url, s.token, 'GET', '/api/kernelspecs');
  const k = await rest<{ id: string }>(s.url, s.token, 'POST', '/api/kernels', { name: specs.default });
  const c = await WsKernelClient.connect(s.url, s.token, k.id, 'v1');
  for (let i = 0; i < 30; i++) await c.execute('1+1');
  const kp = Number(kernelPid(k.id));
  const gu0 = uticks(s.gateway.pid!), pu0 = uticks(s.provider!.pid!); const g0 = ticks(s.gateway.pid!), p0 = ticks(s.provider!.pid!), kk0 = ticks(kp), me0 = process.cpuUsage();
  const xs: number[] = [];
  for (let i = 0; i < 300; i++) xs.push((await c.execute('1+1')).ms);
  const me = process.cpuUsage(me0);
  console.log(args.join(' ') || 'metering on', 'p50', percentile(xs, 50).toFixed(2), 'cpu ms/rt gateway', ((ticks(s.gateway.pid!) - g0) * 10 / 300).toFixed(2), 'provider', ((ticks(s.provider!.pid!) - p0) * 10 / 300).toFixed(2), 'kernel', ((ticks(kp) - kk0) * 10 / 300).toFixed(2), 'client', ((me.user + me.system) / 1000 / 300).toFixed(2), '| user part: gateway', ((uticks(s.gateway.pid!) - gu0) * 10 / 300).toFixed(2), 'provider', ((uticks(s.provider!.pid!) - pu0) * 10 / 300).toFixed(2), 'client', (me.user / 1000 / 300).toFixed(2));
  c.close(); await s.stop();
}
