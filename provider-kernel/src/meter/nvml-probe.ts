// NVML probe, for checking the meter on a real GPU machine:
//   npx tsx provider-kernel/src/meter/nvml-probe.ts [--seconds 5] [--device 0] [--workload "<command>"]
// Prints what NVML reports for every device, reads the energy counter and power directly,
// then meters a window on one GPU through the real meter (sampler worker, windows, signed
// receipt) and compares the receipt with (a) the counter delta read directly over the same
// window and (b) power sampled here and integrated. Without --workload the window is idle
// (nothing runs on the GPU); with it, the command runs as the "kernel" and the window is
// its execution. KINESIS_NVML_LIB points at another libnvidia-ml (e.g. the C stand-in).
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { Wallet } from 'ethers';
import { Nvml, NvmlError, defaultNvmlLibrary } from './nvml.ts';
import { createMeter } from './meter.ts';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '5' }, device: { type: 'string', default: '0' }, workload: { type: 'string' } },
});
const seconds = Number(values.seconds);
const index = Number(values.device);
if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 3600 || !Number.isInteger(index) || index < 0) {
  console.error('usage: nvml-probe.ts [--seconds N] [--device I] [--workload "<command>"]');
  process.exit(2);
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const tryRead = <T>(f: () => T): T | string => {
  try {
    return f();
  } catch (e) {
    return e instanceof NvmlError ? `unavailable (${e.message})` : String(e);
  }
};

const lib = defaultNvmlLibrary();
let nvml: Nvml;
try {
  nvml = Nvml.open(lib);
} catch (e) {
  console.error(`NVML not usable from ${lib}: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
const count = nvml.deviceCount();
console.log(`NVML from ${lib}: ${count} device(s)`);
for (let i = 0; i < count; i++) {
  const h = nvml.handle(i);
  console.log(`  [${i}] ${tryRead(() => nvml.name(h))}`, {
    memory: tryRead(() => nvml.memory(h)),
    powerLimitMw: tryRead(() => nvml.enforcedPowerLimitMw(h)),
    energyCounterMj: tryRead(() => nvml.totalEnergyMj(h).toString()),
    powerMw: tryRead(() => nvml.powerMw(h)),
    utilizationGpu: tryRead(() => nvml.utilizationGpu(h)),
  });
}
if (index >= count) {
  console.error(`no device ${index}`);
  process.exit(1);
}
const h = nvml.handle(index);

// Counter update behaviour: read it back to back for 300 ms and report how often it moves.
const moves: number[] = [];
let last = tryRead(() => nvml.totalEnergyMj(h));
let lastAt = performance.now();
const until = performance.now() + 300;
while (typeof last === 'bigint' && performance.now() < until) {
  const v = nvml.totalEnergyMj(h);
  if (v !== last) {
    moves.push(performance.now() - lastAt);
    lastAt = performance.now();
    last = v;
  }
}
console.log(`counter moved ${moves.length} times in 300 ms (intervals ms: ${moves.map((x) => x.toFixed(1)).join(', ') || 'n/a'})`);

const meter = await createMeter({ signer: Wallet.createRandom(), pricePerKwh: 1_000_000n, chainId: 31337n, nvmlLibrary: lib });
const child = values.workload ? spawn('/bin/sh', ['-c', values.workload], { stdio: 'inherit' }) : null;
const pid = child?.pid ?? process.pid;
meter.attachKernel('probe', { pid, deviceIndex: index });
await sleep(300);

const counter0 = tryRead(() => nvml.totalEnergyMj(h));
const t0 = Date.now();
meter.onExecutionStart('probe', 'probe-window', t0);
let integratedMj = 0;
let prevP = tryRead(() => nvml.powerMw(h));
let prevT = t0;
const deadline = t0 + seconds * 1000;
const exited = child ? new Promise<void>((r) => child.once('exit', () => r())) : null;
let done = false;
void exited?.then(() => (done = true));
while (Date.now() < deadline && !done) {
  await sleep(100);
  const p = tryRead(() => nvml.powerMw(h));
  const now = Date.now();
  if (typeof p === 'number' && typeof prevP === 'number') integratedMj += ((p + prevP) / 2) * ((now - prevT) / 1000);
  prevP = p;
  prevT = now;
}
const t1 = Date.now();
const counter1 = tryRead(() => nvml.totalEnergyMj(h));
const receipt = await meter.onExecutionEnd('probe', 'probe-window', t1);
child?.kill('SIGTERM');
await sleep(400); // let the window's tail reach the closing receipt
const closing = await meter.detachKernel('probe');
await meter.dispose();
nvml.close();

const m = receipt.message;
const billed = Number(m.energyMj) + Number(closing.message.carriedMj);
console.log('\nreceipt (execution window):', m);
console.log('closing receipt:', closing.message);
console.log('\ncomparison over the window', { windowMs: t1 - t0 });
console.log({
  receiptEnergyMj: Number(m.energyMj),
  // On a GPU that stays busy after the window (queued work), the tail is billed to the
  // window too and reaches the closing receipt as carriedMj.
  withTailCarriedIntoClosingMj: billed,
  directCounterDeltaMj: typeof counter0 === 'bigint' && typeof counter1 === 'bigint' ? Number(counter1 - counter0) : 'counter unavailable',
  integratedPowerMj: Math.round(integratedMj),
  method: m.method,
  quality: m.quality,
});
