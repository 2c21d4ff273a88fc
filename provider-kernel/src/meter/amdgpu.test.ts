// AMD GPUs through the amdgpu driver's sysfs files, against a stand-in tree in a temp dir
// whose counters a timer advances (written by rename, as the kernel's files are never
// seen half-written): discovery, then the real sampler worker and meter produce receipts
// that say amdgpu-energy (the counter) or amdgpu-power (integrated power).
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wallet } from 'ethers';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { verifyReceipt } from '@kinesis/protocol/receipt';
import { findAmdGpus } from './amdgpu.ts';
import { createMeter, type Meter } from './meter.ts';
import { measuredPart } from './testing/receipts.ts';

const wallet = new Wallet('0x' + '23'.repeat(32));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let root = '';
let timer: NodeJS.Timeout | undefined;
const meters: Meter[] = [];

function put(path: string, text: string): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

/** card0: energy counter at 150 W; card1: power only, 80 W; card2: an NVIDIA card; plus a connector. */
function buildTree(): void {
  const t0 = Date.now();
  const card = (n: number, vendor: string, files: Record<string, string>, hwmon: Record<string, string>): void => {
    const dev = join(root, `card${n}`, 'device');
    put(join(dev, 'vendor'), `${vendor}\n`);
    for (const [f, v] of Object.entries(files)) put(join(dev, f), `${v}\n`);
    for (const [f, v] of Object.entries(hwmon)) put(join(dev, 'hwmon', 'hwmon3', f), `${v}\n`);
  };
  card(0, '0x1002', { product_name: 'Radeon Test 7900', mem_info_vram_total: String(24 * 2 ** 30), gpu_busy_percent: '90', device: '0x744c' }, { energy1_input: '0', power1_average: '150000000', power1_cap: '300000000' });
  card(1, '0x1002', { mem_info_vram_total: String(16 * 2 ** 30), gpu_busy_percent: '70', device: '0x73bf' }, { power1_average: '80000000', power1_cap: '250000000' });
  card(2, '0x10de', { mem_info_vram_total: '1' }, { power1_average: '1' });
  mkdirSync(join(root, 'card0-DP-1'), { recursive: true });
  // The driver's energy counter advances with time at 150 W (µJ).
  timer = setInterval(() => put(join(root, 'card0', 'device', 'hwmon', 'hwmon3', 'energy1_input'), `${(Date.now() - t0) * 150_000}\n`), 10);
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'amdgpu-'));
  buildTree();
});
afterEach(async () => {
  await Promise.all(meters.splice(0).map((m) => m.dispose()));
});
afterAll(() => {
  clearInterval(timer);
  rmSync(root, { recursive: true, force: true });
});

describe('amdgpu sysfs', () => {
  it('finds the AMD cards only, with their names, memory, power cap and what each can measure', () => {
    const gpus = findAmdGpus(root);
    expect(gpus.map((g) => g.card)).toEqual(['card0', 'card1']);
    expect(gpus[0]).toMatchObject({ name: 'Radeon Test 7900', memoryTotalBytes: 24 * 2 ** 30, powerLimitMw: 300_000 });
    expect(gpus[0]!.energyFile).not.toBeNull();
    expect(gpus[1]).toMatchObject({ name: 'AMD GPU 0x73bf', powerLimitMw: 250_000, energyFile: null });
    expect(gpus[1]!.powerFile).not.toBeNull();
    expect(findAmdGpus(join(root, 'nowhere'))).toEqual([]);
  });

  it('meters executions through the sampler: the counter on one card, integrated power on the other', async () => {
    const m = await createMeter({ signer: wallet, pricePerKwh: 300_000n, chainId: 31337n, nvmlLibrary: null, drmRoot: root, cpu: { raplRoot: join(root, 'no-rapl') } });
    meters.push(m);
    const hw = m.describeHardware();
    expect(hw.gpus.map((g) => [g.vendor, g.name, g.method, g.capMw])).toEqual([
      ['amd', 'Radeon Test 7900', 'amdgpu-energy', 300_000],
      ['amd', 'AMD GPU 0x73bf', 'amdgpu-power', 250_000],
    ]);
    m.attachKernel('k0', { pid: process.pid, deviceIndex: 0 });
    m.attachKernel('k1', { pid: process.pid, deviceIndex: 1 });
    await sleep(250);
    m.onExecutionStart('k0', 'a');
    m.onExecutionStart('k1', 'b');
    await sleep(800);
    const r0 = await m.onExecutionEnd('k0', 'a');
    const r1 = await m.onExecutionEnd('k1', 'b');
    // Power is an average over about a second: a window shorter than that is measured-short.
    for (const [r, mw, method, quality, device] of [
      [r0, 150_000, 'amdgpu-energy', 'measured', 'amd:0:Radeon Test 7900'],
      [r1, 80_000, 'amdgpu-power', 'measured-short', 'amd:1:AMD GPU 0x73bf'],
    ] as const) {
      expect(verifyReceipt(JSON.parse(JSON.stringify(r)), 31337n).signer).toBe(wallet.address);
      expect(r.message).toMatchObject({ method, quality, split: 'exclusive', device });
      // The board's power over the measured part of the window, within a few sample periods.
      expect(Math.abs(Number(r.message.energyMj) - measuredPart(r, mw))).toBeLessThanOrEqual((mw * 150) / 1000);
      expect(Number(r.message.energyMj)).toBeGreaterThan((mw * 400) / 1000);
    }
  });
});
