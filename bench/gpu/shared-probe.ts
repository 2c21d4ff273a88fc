// Two "kernels" on one GPU, both executing at once: the real meter (sampler worker, NVML
// per-process utilization, windows, signed receipts) splits the card's energy between them.
// Prints both receipts, what NVML reported per process, and the counter read directly.
//   node .gpu/probe/shared-probe.mjs [--seconds 12]    (bundled by bench/gpu/pack.sh)
import { spawn, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { Wallet } from 'ethers';
import { Nvml, defaultNvmlLibrary } from '../../provider-kernel/src/meter/nvml.ts';
import { createMeter } from '../../provider-kernel/src/meter/meter.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '12' }, heavy: { type: 'string', default: '1.0' }, light: { type: 'string', default: '0.25' } } });
const seconds = Number(values.seconds);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const lib = defaultNvmlLibrary();
const nvml = Nvml.open(lib);
const h = nvml.handle(0);
const meter = await createMeter({ signer: Wallet.createRandom(), pricePerKwh: 1_000_000n, chainId: 31337n, nvmlLibrary: lib });

// Both start their CUDA context first (python + torch import take seconds), then work for
// `seconds`: the window opens once both print "ready".
const job = (duty: string): ChildProcess => spawn('python3', ['mm.py', String(seconds + 4), duty, '--wait-ready'], { stdio: ['ignore', 'pipe', 'inherit'] });
const heavy = job(values.heavy);
const light = job(values.light);
const ready = (c: ChildProcess): Promise<void> => new Promise((r) => c.stdout!.on('data', (d: Buffer) => { process.stdout.write(`[${c.pid}] ${d}`); if (d.toString().includes('ready')) r(); }));
await Promise.all([ready(heavy), ready(light)]);
meter.attachKernel('heavy', { pid: heavy.pid!, deviceIndex: 0 });
meter.attachKernel('light', { pid: light.pid!, deviceIndex: 0 });
await sleep(300);
const c0 = nvml.totalEnergyMj(h);
const t0 = Date.now();
meter.onExecutionStart('heavy', 'w', t0);
meter.onExecutionStart('light', 'w', t0);
const util = new Map<number, number[]>();
let seen = 0n;
while (Date.now() < t0 + seconds * 1000) {
  await sleep(500);
  try {
    for (const s of nvml.processUtilization(h, seen)) {
      (util.get(s.pid) ?? util.set(s.pid, []).get(s.pid)!).push(s.smUtil);
      if (s.timeStampUs > seen) seen = s.timeStampUs;
    }
  } catch (e) {
    console.log('processUtilization:', e instanceof Error ? e.message : e);
  }
}
const t1 = Date.now();
const c1 = nvml.totalEnergyMj(h);
const rh = await meter.onExecutionEnd('heavy', 'w', t1);
const rl = await meter.onExecutionEnd('light', 'w', t1);
heavy.kill('SIGTERM');
light.kill('SIGTERM');
await sleep(600);
const ch = await meter.detachKernel('heavy');
const cl = await meter.detachKernel('light');
await meter.dispose();
nvml.close();
const avg = (xs: number[] | undefined): string => (xs && xs.length ? (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1) : 'n/a');
console.log('\nNVML per-process SM utilization, mean of samples (%):', { heavy: avg(util.get(heavy.pid!)), light: avg(util.get(light.pid!)) });
const line = (r: typeof rh) => ({ energyMj: Number(r.message.energyMj), idleMj: Number(r.message.idleEnergyMj), carriedMj: Number(r.message.carriedMj), split: r.message.split, method: r.message.method, quality: r.message.quality });
console.log('window receipts:', { heavy: line(rh), light: line(rl) });
console.log('closing receipts:', { heavy: line(ch), light: line(cl) });
const sumWindow = Number(rh.message.energyMj) + Number(rl.message.energyMj) + Number(rh.message.idleEnergyMj) + Number(rl.message.idleEnergyMj);
console.log('comparison', { windowMs: t1 - t0, receiptsSumMj: sumWindow, directCounterDeltaMj: Number(c1 - c0), heavyShare: (Number(rh.message.energyMj) / (Number(rh.message.energyMj) + Number(rl.message.energyMj))).toFixed(3) });
