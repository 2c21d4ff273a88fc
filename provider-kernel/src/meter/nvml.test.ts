// The real FFI path (koffi → dlopen → C) against the C stand-in for libnvidia-ml.so.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Nvml, NvmlError, NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_NOT_SUPPORTED } from './nvml.ts';
import { buildFakeNvml, writeControl } from './fake-nvml/fake-nvml.ts';

let lib = '';
let dir = '';
let control = '';

beforeAll(() => {
  lib = buildFakeNvml();
  dir = mkdtempSync(join(tmpdir(), 'nvml-test-'));
  control = join(dir, 'control');
  process.env.FAKE_NVML_CONTROL = control; // read by the C library through getenv
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Nvml over koffi', () => {
  it('reads names, memory, limit, counter, power and utilization of two GPUs', () => {
    const t0 = Date.now() - 10_000;
    writeControl(control, {
      gpus: [
        { name: 'Fake H100 80GB HBM3', memoryTotal: 85_899_345_920, memoryUsed: 1_000_000, limitMw: 700_000, offsetMj: 5_000_000_000, updateMs: 20, power: [{ tMs: t0, mw: 100_000, util: 0 }] },
        { name: 'Fake A100', limitMw: 400_000, power: [{ tMs: t0, mw: 50_000, util: 30 }], procs: [{ pid: 4242, sm: 30 }] },
      ],
    });
    const nvml = Nvml.open(lib);
    try {
      expect(nvml.deviceCount()).toBe(2);
      const h0 = nvml.handle(0);
      const h1 = nvml.handle(1);
      expect(nvml.name(h0)).toBe('Fake H100 80GB HBM3');
      expect(nvml.name(h1)).toBe('Fake A100');
      expect(nvml.memory(h0)).toEqual({ totalBytes: 85_899_345_920, usedBytes: 1_000_000 });
      expect(nvml.enforcedPowerLimitMw(h0)).toBe(700_000);
      expect(nvml.powerMw(h1)).toBe(50_000);
      expect(nvml.utilizationGpu(h1)).toBe(30);
      // 10 s at 100 W = 1,000,000 mJ on top of the offset (quantized to 20 ms and a little time passes).
      const e = nvml.totalEnergyMj(h0);
      expect(e).toBeGreaterThanOrEqual(5_000_000_000n + 998_000n);
      expect(e).toBeLessThan(5_000_000_000n + 1_100_000n);
      const procs = nvml.processUtilization(h1, 0n);
      expect(procs).toHaveLength(1);
      expect(procs[0]).toMatchObject({ pid: 4242, smUtil: 30 });
      expect(nvml.processUtilization(h0, 0n)).toEqual([]);
      expect(() => nvml.handle(2)).toThrow(NvmlError);
    } finally {
      nvml.close();
      nvml.close(); // safe twice
    }
  });

  it('reports an unsupported counter with NVML_ERROR_NOT_SUPPORTED', () => {
    writeControl(control, { gpus: [{ energy: 'unsupported', limitMw: 0 }] });
    const nvml = Nvml.open(lib);
    try {
      const h = nvml.handle(0);
      const err = (() => {
        try {
          nvml.totalEnergyMj(h);
        } catch (e) {
          return e;
        }
        return null;
      })();
      expect(err).toBeInstanceOf(NvmlError);
      expect((err as NvmlError).code).toBe(NVML_ERROR_NOT_SUPPORTED);
      expect((err as NvmlError).message).toMatch(/Not Supported/);
      expect(() => nvml.enforcedPowerLimitMw(h)).toThrow(/Not Supported/);
    } finally {
      nvml.close();
    }
  });

  it('fails cleanly: missing library, failing init', () => {
    const missing = (() => {
      try {
        Nvml.open(join(dir, 'no-such-lib.so'));
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(missing).toBeInstanceOf(NvmlError);
    expect((missing as NvmlError).code).toBe(NVML_ERROR_LIBRARY_NOT_FOUND);
    writeControl(control, { failInit: 9, gpus: [] });
    expect(() => Nvml.open(lib)).toThrow(/nvmlInit_v2 failed/);
  });

  it('counter resets and freezes as scripted', async () => {
    const now = Date.now();
    writeControl(control, { gpus: [{ updateMs: 10, offsetMj: 1_000_000, power: [{ tMs: now - 5000, mw: 200_000, util: 50 }], resets: [now - 100] }] });
    const nvml = Nvml.open(lib);
    try {
      const h = nvml.handle(0);
      const e = nvml.totalEnergyMj(h); // 200 W since the reset 100 ms (or, on a loaded machine, more) ago
      const sinceReset = Date.now() - (now - 100);
      expect(e).toBeLessThanOrEqual(BigInt(200 * sinceReset));
      expect(e).toBeLessThan(1_000_000n); // far below the offset: the counter did restart
      writeControl(control, { gpus: [{ updateMs: 10, power: [{ tMs: now - 5000, mw: 200_000, util: 50 }], stuck: [[now - 1000, now + 60_000]] }] });
      const a = nvml.totalEnergyMj(h);
      await new Promise((r) => setTimeout(r, 50));
      expect(nvml.totalEnergyMj(h)).toBe(a);
    } finally {
      nvml.close();
    }
  });
});
