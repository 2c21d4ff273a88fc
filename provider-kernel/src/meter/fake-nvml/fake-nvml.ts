// Test support: builds the C stand-in for libnvidia-ml.so (fake_nvml.c) with gcc and
// writes the control file that scripts it. Used by the meter's tests and benchmark on
// machines without an NVIDIA GPU; a real provider never loads it.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('./fake_nvml.c', import.meta.url));

/** Compiles once per source version into the temp dir; returns the .so path. */
export function buildFakeNvml(): string {
  const src = readFileSync(SOURCE);
  const hash = createHash('sha256').update(src).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), `kinesis-fake-nvml-${hash}`);
  const lib = join(dir, 'libnvidia-ml.so.1');
  if (existsSync(lib)) return lib;
  mkdirSync(dir, { recursive: true });
  const tmp = `${lib}.${process.pid}.tmp`;
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-o', tmp, SOURCE], { stdio: 'pipe' });
  renameSync(tmp, lib); // atomic: a concurrent test file never loads a half-written library
  return lib;
}

export interface FakeGpu {
  name?: string;
  memoryTotal?: number;
  memoryUsed?: number;
  limitMw?: number;
  energy?: 'counter' | 'unsupported' | 'error';
  powerReading?: 'ok' | 'unsupported';
  updateMs?: number;
  offsetMj?: number;
  /** Piecewise-constant power from Unix time tMs on. */
  power?: Array<{ tMs: number; mw: number; util: number }>;
  resets?: number[];
  stuck?: Array<[number, number]>;
  procs?: Array<{ pid: number; sm: number }>;
}

export interface FakeNvmlScript {
  failInit?: number;
  gpus: FakeGpu[];
}

/** Renders a script in the control-file format documented at the top of fake_nvml.c. */
export function renderControl(script: FakeNvmlScript): string {
  const lines: string[] = [];
  if (script.failInit) lines.push(`fail_init ${script.failInit}`);
  lines.push(`count ${script.gpus.length}`);
  script.gpus.forEach((g, i) => {
    if (g.name) lines.push(`name ${i} ${g.name}`);
    if (g.memoryTotal !== undefined) lines.push(`memory ${i} ${g.memoryTotal} ${g.memoryUsed ?? 0}`);
    if (g.limitMw !== undefined) lines.push(`limit ${i} ${g.limitMw}`);
    if (g.energy) lines.push(`energy ${i} ${g.energy}`);
    if (g.powerReading) lines.push(`power_reading ${i} ${g.powerReading}`);
    if (g.updateMs !== undefined) lines.push(`update ${i} ${g.updateMs}`);
    if (g.offsetMj !== undefined) lines.push(`offset ${i} ${g.offsetMj}`);
    for (const p of g.power ?? []) lines.push(`power ${i} ${Math.round(p.tMs)} ${Math.round(p.mw)} ${Math.round(p.util)}`);
    for (const t of g.resets ?? []) lines.push(`reset ${i} ${Math.round(t)}`);
    for (const [a, b] of g.stuck ?? []) lines.push(`stuck ${i} ${Math.round(a)} ${Math.round(b)}`);
    for (const p of g.procs ?? []) lines.push(`proc ${i} ${p.pid} ${p.sm}`);
  });
  return lines.join('\n') + '\n';
}

/** Replaces the control file atomically (the library re-reads it when its inode changes). */
export function writeControl(path: string, script: FakeNvmlScript): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, renderControl(script));
  renameSync(tmp, path);
}

/** Exact energy (mJ) the fake's power schedule delivers over [a, b): ∫ power dt, floor. */
export function scheduleEnergyMj(power: FakeGpu['power'], a: number, b: number): number {
  let uj = 0;
  const segs = power ?? [];
  segs.forEach((s, i) => {
    const s0 = Math.max(s.tMs, a);
    const s1 = Math.min(i + 1 < segs.length ? segs[i + 1]!.tMs : b, b);
    if (s1 > s0) uj += s.mw * (s1 - s0);
  });
  return Math.floor(uj / 1000);
}
