// The meter end to end: sampler worker → koffi → the C stand-in libnvidia-ml.so (or the
// CPU readers) → windows → signed receipts, exactly as a provider runs it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wallet } from 'ethers';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { amountForEnergy, receiptCapMj, receiptTotalMj, verifyReceipt, type SignedReceipt } from '@kinesis/protocol/receipt';
import { createMeter, MeterError, type Meter } from './meter.ts';
import { processTree, readProcTicks } from './cpu.ts';
import { measuredPart } from './testing/receipts.ts';
import { buildFakeNvml, scheduleEnergyMj, writeControl, type FakeGpu } from './fake-nvml/fake-nvml.ts';

const wallet = new Wallet('0x' + '22'.repeat(32));
const CHAIN = 31337n;
const PRICE = 300_000_000_000_000_000n; // 0.3 token (18 decimals) per kWh
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let lib = '';
let dir = '';
let control = '';
const meters: Meter[] = [];
const children: ChildProcess[] = [];

beforeAll(() => {
  lib = buildFakeNvml();
  dir = mkdtempSync(join(tmpdir(), 'meter-test-'));
  control = join(dir, 'control');
  process.env.FAKE_NVML_CONTROL = control;
});
afterEach(async () => {
  await Promise.all(meters.splice(0).map((m) => m.dispose()));
  // Each test kernel leads its own process group: kill the group, or its busy grandchild
  // outlives the test and loads the machine for everything after it.
  for (const c of children.splice(0)) {
    try {
      if (c.pid) process.kill(-c.pid, 'SIGKILL');
    } catch {
      c.kill('SIGKILL');
    }
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function meter(opts: Partial<Parameters<typeof createMeter>[0]> = {}): Promise<Meter> {
  const m = await createMeter({ signer: wallet, pricePerKwh: PRICE, chainId: CHAIN, nvmlLibrary: lib, cpu: { raplRoot: join(dir, 'no-rapl') }, ...opts });
  meters.push(m);
  return m;
}

/** Every receipt signed by the provider, contiguous, cumulative-consistent, capped, exactly priced. */
function checkReceipts(rs: SignedReceipt[]): bigint {
  let cum = 0n;
  rs.forEach((r, i) => {
    expect(verifyReceipt(JSON.parse(JSON.stringify(r)), CHAIN).signer).toBe(wallet.address);
    const m = r.message;
    expect(m.seq).toBe(String(i + 1));
    if (i > 0) expect(m.fromMs).toBe(rs[i - 1]!.message.toMs);
    cum += receiptTotalMj(m);
    expect(m.cumulativeEnergyMj).toBe(cum.toString());
    expect(m.cumulativeAmount).toBe(amountForEnergy(cum, PRICE).toString());
    expect(receiptTotalMj(m)).toBeLessThanOrEqual(receiptCapMj(m));
  });
  return cum;
}


function gpu(over: FakeGpu = {}): FakeGpu {
  return { name: 'Fake H100', limitMw: 700_000, updateMs: 20, offsetMj: 9_000_000_000, power: [{ tMs: Date.now() - 60_000, mw: 200_000, util: 60 }], ...over };
}

describe('meter on the C stand-in NVML', () => {
  it('meters an execution with the energy counter and closes the books on detach', async () => {
    writeControl(control, { gpus: [gpu()] });
    const m = await meter();
    const hw = m.describeHardware();
    expect(hw.gpus).toHaveLength(1);
    expect(hw.gpus[0]).toMatchObject({ name: 'Fake H100', powerLimitMw: 700_000, energyCounter: true, method: 'nvml-counter' });
    const tAttach = Date.now();
    m.attachKernel('k1', { pid: process.pid, deviceIndex: 0 });
    await sleep(250);
    m.onExecutionStart('k1', 'msg-1');
    await sleep(600);
    const r1 = await m.onExecutionEnd('k1', 'msg-1');
    // It did not wait for a sample past the end: the tail is left for the next receipt.
    expect(Number(r1.message.toMs)).toBeLessThanOrEqual(Number(r1.message.endMs));
    expect(r1.message).toMatchObject({ method: 'nvml-counter', quality: 'measured', split: 'exclusive', msgId: 'msg-1', device: 'nvidia:0:Fake H100', powerCapMw: '700000' });
    // 200 W over the measured part of the window, within the counter's lag (20 ms updates) at both ends.
    expect(Math.abs(Number(r1.message.energyMj) - measuredPart(r1, 200_000))).toBeLessThanOrEqual(200 * 60);
    expect(Number(r1.message.energyMj)).toBeGreaterThan(200 * 200);
    expect(Number(r1.message.idleEnergyMj)).toBeGreaterThan(200 * 100);
    await sleep(300);
    const closing = await m.detachKernel('k1');
    const tDetach = Date.now();
    expect(closing.message.msgId).toBe('');
    expect(Number(closing.message.carriedMj) + Number(closing.message.idleEnergyMj)).toBeGreaterThan(0);
    const total = checkReceipts([r1, closing]);
    // The books cover attach..detach (the receipts' spans): the schedule's energy over that
    // span, to within a couple of counter updates (20 ms) at each end.
    const from = Number(r1.message.fromMs);
    const to = Number(closing.message.toMs);
    expect(from).toBeGreaterThanOrEqual(tAttach);
    expect(to).toBeLessThanOrEqual(tDetach);
    const truth = scheduleEnergyMj(gpu().power, from, to);
    expect(Math.abs(Number(total) - truth)).toBeLessThanOrEqual(200 * 50);
    await expect(m.onExecutionEnd('k1', 'x')).rejects.toThrow(MeterError);
  });

  it('falls back to integrated power where the counter is unsupported', async () => {
    writeControl(control, { gpus: [gpu({ energy: 'unsupported' })] });
    const m = await meter();
    expect(m.describeHardware().gpus[0]!.method).toBe('nvml-power');
    m.attachKernel('k', { pid: process.pid, deviceIndex: 0 });
    m.onExecutionStart('k', 'a');
    await sleep(1200);
    const r = await m.onExecutionEnd('k', 'a');
    expect(r.message).toMatchObject({ method: 'nvml-power', quality: 'measured' });
    // Trapezoid of a constant power: exact but for the event times at the window's ends, which
    // lag by a few ms on a quiet machine and by tens under CI load (14 ms seen once): 50 ms.
    expect(Math.abs(Number(r.message.energyMj) - measuredPart(r, 200_000))).toBeLessThanOrEqual(200 * 50);
    checkReceipts([r, await m.detachKernel('k')]);
  });

  it('bridges a counter reset with power and labels the window nvml-power', async () => {
    writeControl(control, { gpus: [gpu()] });
    const m = await meter();
    m.attachKernel('k', { pid: process.pid, deviceIndex: 0 });
    writeControl(control, { gpus: [gpu({ resets: [Date.now() + 400] })] });
    m.onExecutionStart('k', 'a');
    await sleep(1000);
    const r = await m.onExecutionEnd('k', 'a');
    const e = Number(r.message.energyMj);
    expect(r.message.method).toBe('nvml-power');
    // Nothing lost, nothing double counted across the reset.
    expect(Math.abs(e - measuredPart(r, 200_000))).toBeLessThanOrEqual(200 * 40);
    checkReceipts([r, await m.detachKernel('k')]);
  });

  it('detects a stuck counter and integrates power instead', async () => {
    writeControl(control, { gpus: [gpu()] });
    const m = await meter({ stuckCounterMs: 300 });
    m.attachKernel('k', { pid: process.pid, deviceIndex: 0 });
    writeControl(control, { gpus: [gpu({ stuck: [[Date.now(), Date.now() + 60_000]] })] });
    m.onExecutionStart('k', 'a');
    await sleep(1200);
    const r = await m.onExecutionEnd('k', 'a');
    expect(r.message.method).toBe('nvml-power');
    const e = Number(r.message.energyMj);
    expect(e).toBeGreaterThan(measuredPart(r, 200_000) - 200 * (300 + 500)); // lost at most the detection time (+ late ticks on a loaded machine)
    expect(e).toBeLessThanOrEqual(measuredPart(r, 200_000) + 200 * 40);
    checkReceipts([r, await m.detachKernel('k')]);
  });

  it('caps readings at the enforced power limit × wall time', async () => {
    // A board that claims 900 W against a 300 W limit (a broken counter, or a lie).
    writeControl(control, { gpus: [gpu({ limitMw: 300_000, power: [{ tMs: Date.now() - 60_000, mw: 900_000, util: 99 }] })] });
    const m = await meter();
    m.attachKernel('k', { pid: process.pid, deviceIndex: 0 });
    m.onExecutionStart('k', 'a');
    await sleep(700);
    const r = await m.onExecutionEnd('k', 'a');
    expect(r.message.powerCapMw).toBe('300000');
    const e = Number(r.message.energyMj);
    expect(e).toBeLessThanOrEqual(measuredPart(r, 300_000) + 3);
    expect(e).toBeGreaterThan(measuredPart(r, 300_000) * 0.8);
    checkReceipts([r, await m.detachKernel('k')]);
  });

  it('meters two GPUs independently', async () => {
    const t = Date.now() - 1000;
    writeControl(control, {
      gpus: [gpu({ name: 'Fake A', power: [{ tMs: t, mw: 100_000, util: 50 }] }), gpu({ name: 'Fake B', limitMw: 400_000, power: [{ tMs: t, mw: 300_000, util: 90 }] })],
    });
    const m = await meter();
    expect(m.describeHardware().gpus.map((g) => g.name)).toEqual(['Fake A', 'Fake B']);
    m.attachKernel('a', { pid: process.pid, deviceIndex: 0 });
    m.attachKernel('b', { pid: process.pid, deviceIndex: 1 });
    expect(() => m.attachKernel('c', { pid: process.pid, deviceIndex: 2 })).toThrow(/no GPU with index 2/);
    m.onExecutionStart('a', 'ma');
    m.onExecutionStart('b', 'mb');
    await sleep(800);
    const ra = await m.onExecutionEnd('a', 'ma');
    const rb = await m.onExecutionEnd('b', 'mb');
    expect(ra.message.device).toBe('nvidia:0:Fake A');
    expect(rb.message.device).toBe('nvidia:1:Fake B');
    expect(rb.message.powerCapMw).toBe('400000');
    // 300 W vs 100 W, each within its counter's 20 ms updates.
    const ratio = Number(rb.message.energyMj) / Number(ra.message.energyMj);
    expect(ratio).toBeGreaterThan(2.2);
    expect(ratio).toBeLessThan(4);
    checkReceipts([ra, await m.detachKernel('a')]);
    checkReceipts([rb, await m.detachKernel('b')]);
  });

  it('splits a shared GPU by per-process SM utilization and labels the split', async () => {
    writeControl(control, { gpus: [gpu({ procs: [{ pid: 999_991, sm: 75 }, { pid: 999_992, sm: 25 }] })] });
    const m = await meter();
    m.attachKernel('a', { pid: 999_991, deviceIndex: 0 });
    m.attachKernel('b', { pid: 999_992, deviceIndex: 0 });
    await sleep(150);
    m.onExecutionStart('a', 'ma');
    m.onExecutionStart('b', 'mb');
    await sleep(1000);
    const ra = await m.onExecutionEnd('a', 'ma');
    const rb = await m.onExecutionEnd('b', 'mb');
    expect(ra.message.split).toBe('shared-gpu-util');
    const ratio = Number(ra.message.energyMj) / Number(rb.message.energyMj);
    expect(ratio).toBeGreaterThan(2.5);
    expect(ratio).toBeLessThan(3.5);
    checkReceipts([ra, await m.detachKernel('a')]);
    checkReceipts([rb, await m.detachKernel('b')]);
  });

  it('keeps working without NVML: missing library, failing init', async () => {
    const m1 = await meter({ nvmlLibrary: join(dir, 'missing.so') });
    expect(m1.describeHardware().gpus).toEqual([]);
    expect(m1.describeHardware().nvml.error).toMatch(/cannot load/);
    writeControl(control, { failInit: 9, gpus: [] });
    const m2 = await meter();
    expect(m2.describeHardware().nvml.error).toMatch(/nvmlInit_v2 failed/);
  });
});

describe('meter on the CPU (this machine has no GPU)', () => {
  it('bills a busy kernel process tree by the estimate, never a GPU method', async () => {
    const m = await meter({ nvmlLibrary: null, cpu: { packagePowerW: 20, raplRoot: join(dir, 'no-rapl') } });
    const hw = m.describeHardware();
    expect(hw.gpus).toEqual([]);
    expect(hw.cpu.method).toBe('estimate');
    // A "kernel" whose child burns CPU: the tree's time counts.
    const kernel = spawn(process.execPath, ['-e', "require('child_process').spawn(process.execPath, ['-e', 'for(;;){}'], {stdio:'inherit'}); setInterval(()=>{}, 1000)"], { stdio: 'ignore', detached: true });
    children.push(kernel);
    await sleep(300);
    m.attachKernel('k', { pid: kernel.pid! });
    await sleep(1100); // the tree is re-walked about once a second
    // Compare with the tree's own CPU time over the window (this 2-core machine is shared,
    // so the busy child gets whatever share of a core the scheduler gives it).
    const treeTicks = (): number => [kernel.pid!, ...processTree(kernel.pid!)].reduce((a, p) => a + (readProcTicks(p) ?? 0), 0);
    const ticks0 = treeTicks();
    m.onExecutionStart('k', 'a');
    await sleep(1500); // CPU readings come every 500 ms by default
    const ticks1 = treeTicks();
    const r = await m.onExecutionEnd('k', 'a');
    expect(r.message).toMatchObject({ method: 'estimate', quality: 'estimated', device: expect.stringMatching(/^cpu:/) });
    // 20 W over all cores: one tick (10 ms of one core) = 200 mJ / cores.
    const mjPerTick = 20_000 / (100 * hw.cpu.cores);
    const expected = (ticks1 - ticks0) * mjPerTick;
    const e = Number(r.message.energyMj);
    expect(ticks1 - ticks0).toBeGreaterThan(2); // usually ~100; CI machines are shared
    expect(e).toBeGreaterThan(expected * 0.3); // less the unsampled tail; ~0 if the child's time were missed
    expect(e).toBeLessThanOrEqual(expected + 3 * mjPerTick);
    expect(Number(r.message.uncertaintyMj)).toBeGreaterThanOrEqual(Math.floor(e * 0.5));
    checkReceipts([r, await m.detachKernel('k')]);
  });

  it('uses RAPL where a package counter is readable', async () => {
    const rapl = join(dir, 'rapl');
    mkdirSync(join(rapl, 'intel-rapl:0'), { recursive: true });
    writeFileSync(join(rapl, 'intel-rapl:0', 'max_energy_range_uj'), '262143328850');
    let uj = 1_000_000;
    writeFileSync(join(rapl, 'intel-rapl:0', 'energy_uj'), String(uj));
    const bump = setInterval(() => writeFileSync(join(rapl, 'intel-rapl:0', 'energy_uj'), String((uj += 500_000))), 50);
    try {
      const m = await meter({ nvmlLibrary: null, cpu: { raplRoot: rapl, packagePowerW: 50 } });
      expect(m.describeHardware().cpu.method).toBe('rapl');
      m.attachKernel('k', { pid: process.pid });
      m.onExecutionStart('k', 'a');
      await sleep(500);
      const r = await m.onExecutionEnd('k', 'a');
      expect(r.message).toMatchObject({ method: 'rapl', quality: 'vendor-modelled' });
      checkReceipts([r, await m.detachKernel('k')]);
    } finally {
      clearInterval(bump);
    }
  });

  it('continues a kernel\'s receipt chain when it is re-attached (restart)', async () => {
    const m = await meter({ nvmlLibrary: null });
    m.attachKernel('k', { pid: process.pid });
    m.onExecutionStart('k', 'a');
    const r1 = await m.onExecutionEnd('k', 'a');
    const c1 = await m.detachKernel('k');
    m.attachKernel('k', { pid: process.pid });
    m.onExecutionStart('k', 'b');
    const r2 = await m.onExecutionEnd('k', 'b');
    expect([r1, c1, r2].map((r) => r.message.seq)).toEqual(['1', '2', '3']);
    expect(BigInt(r2.message.cumulativeEnergyMj)).toBe(BigInt(c1.message.cumulativeEnergyMj) + BigInt(r2.message.energyMj) + BigInt(r2.message.idleEnergyMj) + BigInt(r2.message.carriedMj));
    expect(BigInt(r2.message.fromMs)).toBeGreaterThanOrEqual(BigInt(c1.message.toMs));
  });

  it('follows a restarted kernel to its new process without closing its books', async () => {
    const m = await meter({ nvmlLibrary: null, cpu: { packagePowerW: 20, raplRoot: join(dir, 'no-rapl'), sampleIntervalMs: 100 } });
    const burn = (): ChildProcess => {
      const c = spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore', detached: true });
      children.push(c);
      return c;
    };
    const first = burn();
    m.attachKernel('k', { pid: first.pid! });
    m.onExecutionStart('k', 'a');
    await sleep(600);
    const r1 = await m.onExecutionEnd('k', 'a');
    process.kill(-first.pid!, 'SIGKILL');
    const second = burn();
    expect(() => m.retrackKernel('k', { pid: second.pid!, deviceIndex: 0 })).toThrow(/another device/);
    m.retrackKernel('k', { pid: second.pid! });
    await sleep(300);
    m.onExecutionStart('k', 'b');
    await sleep(800);
    const r2 = await m.onExecutionEnd('k', 'b');
    expect(r2.message.seq).toBe('2');
    expect(r2.message.fromMs).toBe(r1.message.toMs);
    expect(Number(r2.message.energyMj)).toBeGreaterThan(0); // the new process's CPU time is metered
    checkReceipts([r1, r2, await m.detachKernel('k')]);
  });

  it('validates its inputs and is safe to dispose twice', async () => {
    await expect(createMeter({ signer: wallet, pricePerKwh: -1n, chainId: CHAIN })).rejects.toThrow(MeterError);
    await expect(createMeter({ signer: wallet, pricePerKwh: 1n, chainId: CHAIN, sampleIntervalMs: 1 })).rejects.toThrow(/sampleIntervalMs/);
    const m = await meter({ nvmlLibrary: null });
    expect(() => m.attachKernel('k', { pid: -1 })).toThrow(/pid/);
    expect(() => m.attachKernel('a kernel', { pid: process.pid })).toThrow(/kernelId/);
    m.attachKernel('odd', { pid: process.pid });
    m.onExecutionStart('odd', 'msg with spaces ✓');
    const odd = await m.onExecutionEnd('odd', 'msg with spaces ✓');
    expect(odd.message.msgId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(() => m.onExecutionStart('nope', 'x')).toThrow(/not attached/);
    m.attachKernel('k', { pid: process.pid });
    expect(() => m.attachKernel('k', { pid: process.pid })).toThrow(/already attached/);
    m.onExecutionStart('k', 'late');
    await m.dispose();
    await m.dispose();
    // With the sampler gone, the closing receipt still comes at once (no wait for a sample
    // that will never arrive), for the execution left open.
    const t0 = performance.now();
    const closing = await m.detachKernel('k');
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(closing.message).toMatchObject({ msgId: 'late', seq: '1' });
    // Method: what the span saw before the sampler stopped, or `none` if it saw nothing.
    expect(['none', 'estimate']).toContain(closing.message.method);
    expect(() => m.attachKernel('k2', { pid: process.pid })).toThrow(/disposed/);
  });
});
