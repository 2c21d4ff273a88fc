// The sampler: a worker thread that reads every device about 10 times a second and
// posts timestamped raw readings to the meter. Device reads (NVML calls, sysfs and procfs
// files) block, so they live here and never delay the event loop that relays kernel
// messages. All interpretation happens on the main thread (normalize.ts, windows.ts).
import { readFileSync } from 'node:fs';
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { Nvml } from './nvml.ts';
import { findAmdGpus, readAmdBusyPercent, readAmdEnergyMj, readAmdPowerMw, type AmdGpu } from './amdgpu.ts';
import { ProcTicksReader, clockTicksPerSecond, cpuCount, cpuModel, findRaplZones, processTree, readRaplUj, readSystemTicks } from './cpu.ts';
import type { CpuTick, GpuInfo, GpuTick, MainToWorker, SamplerConfig, TickMessage, WorkerToMain } from './sampler-protocol.ts';

/** How often (in ticks) process trees are re-walked; CPU times are read every tick. */
const TREE_REFRESH_TICKS = 10;
/** Per-process SM samples older than this no longer describe who is using the GPU. */
const PROC_WEIGHT_TTL_MS = 1000;

const port = parentPort;
if (!port) throw new Error('sampler-worker must run in a worker thread');
const config = workerData as SamplerConfig & { samplePort: MessagePort };
const post = (m: WorkerToMain): void => port.postMessage(m);
/** Readings go on their own port, which the meter drains when it needs them (meter.ts). */
const postTick = (m: TickMessage): void => config.samplePort.postMessage(m);

interface Tracked {
  readonly pid: number;
  readonly gpu: number | null;
  tree: number[];
}
const tracked = new Map<string, Tracked>();

let nvml: Nvml | null = null;
let nvmlError: string | null = null;
/** `handle` is NVML's device handle; `amd` the card's sysfs files (one or the other). */
const gpus: Array<{ info: GpuInfo; handle: unknown; amd?: AmdGpu; lastSeenUs: bigint; weights: Map<string, number> | null; weightsAt: number }> = [];

function probe<T>(f: () => T): T | null {
  try {
    return f();
  } catch {
    return null;
  }
}

if (config.nvmlLibrary !== null) {
  try {
    nvml = Nvml.open(config.nvmlLibrary);
    const n = nvml.deviceCount();
    for (let index = 0; index < n; index++) {
      const h = nvml.handle(index);
      const mem = probe(() => nvml!.memory(h));
      gpus.push({
        handle: h,
        lastSeenUs: 0n,
        weights: null,
        weightsAt: 0,
        info: {
          vendor: 'nvidia',
          index,
          name: probe(() => nvml!.name(h)) ?? `GPU ${index}`,
          memoryTotalBytes: mem?.totalBytes ?? 0,
          memoryUsedBytes: mem?.usedBytes ?? 0,
          powerLimitMw: probe(() => nvml!.enforcedPowerLimitMw(h)),
          energyCounter: probe(() => nvml!.totalEnergyMj(h)) !== null,
          powerReading: probe(() => nvml!.powerMw(h)) !== null,
          processUtilization: probe(() => nvml!.processUtilization(h, 0n)) !== null,
        },
      });
    }
  } catch (e) {
    nvmlError = e instanceof Error ? e.message : String(e);
    nvml?.close();
    nvml = null;
    gpus.length = 0;
  }
}

// AMD cards come after NVIDIA's in the index space (a machine with both is rare; the index
// is the provider's, used for ROCR_VISIBLE_DEVICES by card order among AMD cards).
if (config.drmRoot !== null) {
  for (const amd of findAmdGpus(config.drmRoot)) {
    gpus.push({
      handle: null,
      amd,
      lastSeenUs: 0n,
      weights: null,
      weightsAt: 0,
      info: {
        vendor: 'amd',
        index: gpus.length,
        name: amd.name,
        memoryTotalBytes: amd.memoryTotalBytes,
        memoryUsedBytes: 0,
        powerLimitMw: amd.powerLimitMw,
        energyCounter: readAmdEnergyMj(amd) !== null,
        powerReading: readAmdPowerMw(amd) !== null,
        processUtilization: false, // amdgpu has no per-process utilization: shared cards split equally
      },
    });
  }
}

const raplZones = findRaplZones(config.raplRoot);
post({
  type: 'hello',
  gpus: gpus.map((g) => g.info),
  cpu: { model: cpuModel(config.procRoot), cores: cpuCount(), ticksPerSecond: clockTicksPerSecond(), raplZones: raplZones.map(({ name, maxRangeUj, maxPowerUw }) => ({ name, maxRangeUj, maxPowerUw })) },
  nvmlError,
});

/** Per-process GPU shares matter only where two or more kernels hold the same GPU. */
function sharedGpu(index: number): boolean {
  let n = 0;
  for (const t of tracked.values()) if (t.gpu === index) n++;
  return n >= 2 && gpus[index]?.info.processUtilization === true;
}

/** CPU kernels need their tree for CPU time; GPU kernels only to map NVML's per-process samples. */
function needsTree(t: Tracked): boolean {
  return t.gpu === null || sharedGpu(t.gpu);
}

/** This thread's own CPU time, once a second, so the meter can report what sampling costs. */
function selfCpu(): { threadCpuNs?: number | null } {
  if ((tickNo - 1) % TREE_REFRESH_TICKS !== 0) return {};
  try {
    const ns = Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ')[0]);
    return { threadCpuNs: Number.isFinite(ns) ? ns : null };
  } catch {
    return { threadCpuNs: null };
  }
}

const ticksReader = new ProcTicksReader(config.procRoot);
const cpuEvery = Math.max(1, Math.round(config.cpuPeriodMs / config.periodMs));
let tickNo = 0;
function tick(): void {
  const began = performance.now();
  if (tickNo++ % TREE_REFRESH_TICKS === 0) {
    const live = new Set<number>();
    for (const t of tracked.values()) {
      if (!needsTree(t)) continue;
      t.tree = processTree(t.pid, config.procRoot);
      if (t.gpu === null) for (const p of [t.pid, ...t.tree]) live.add(p);
    }
    ticksReader.retain(live);
  }
  const tMs = Date.now();
  const gpuTicks: GpuTick[] = gpus.map((g) => {
    if (g.amd) {
      const a = g.amd;
      return { index: g.info.index, counterMj: g.info.energyCounter ? readAmdEnergyMj(a) : null, powerMw: g.info.powerReading ? readAmdPowerMw(a) : null, utilGpu: readAmdBusyPercent(a) };
    }
    const h = g.handle;
    const counterMj = g.info.energyCounter ? probe(() => nvml!.totalEnergyMj(h)) : null;
    const powerMw = g.info.powerReading ? probe(() => nvml!.powerMw(h)) : null;
    const utilGpu = probe(() => nvml!.utilizationGpu(h));
    const out: { index: number; counterMj: bigint | null; powerMw: number | null; utilGpu: number | null; weights?: Map<string, number> } = { index: g.info.index, counterMj, powerMw, utilGpu };
    if (sharedGpu(g.info.index)) {
      const mine = [...tracked.entries()].filter(([, t]) => t.gpu === g.info.index);
      const samples = probe(() => nvml!.processUtilization(h, g.lastSeenUs));
      if (samples && samples.length > 0) {
        const w = new Map<string, number>(mine.map(([k]) => [k, 0]));
        for (const s of samples) {
          if (s.timeStampUs > g.lastSeenUs) g.lastSeenUs = s.timeStampUs;
          const owner = mine.find(([, t]) => t.pid === s.pid || t.tree.includes(s.pid));
          if (owner) w.set(owner[0], (w.get(owner[0]) ?? 0) + s.smUtil);
        }
        g.weights = w;
        g.weightsAt = tMs;
      }
      if (g.weights && tMs - g.weightsAt <= PROC_WEIGHT_TTL_MS) out.weights = g.weights;
    }
    return out;
  });
  // CPU readings (procfs CPU times, RAPL) come every `cpuEvery` ticks (by default every
  // tick: re-reading an open /proc/<pid>/stat costs about 5 µs per process, and a reading
  // only every 500 ms spread a short cell's CPU time over the idle time around it).
  if ((tickNo - 1) % cpuEvery !== 0) {
    postTick({ type: 'tick', tMs, gpus: gpuTicks, cpu: null, readUs: Math.round((performance.now() - began) * 1000), ...selfCpu() });
    return;
  }
  const kernelTicks = new Map<string, number>();
  for (const [k, t] of tracked) {
    if (t.gpu !== null) continue; // a GPU kernel is billed by its board, not its CPU time
    let sum = 0;
    sum += ticksReader.read(t.pid) ?? 0;
    for (const pid of t.tree) sum += ticksReader.read(pid) ?? 0;
    kernelTicks.set(k, sum);
  }
  const cpu: CpuTick = {
    raplUj: raplZones.length > 0 ? raplZones.map(readRaplUj) : null,
    systemBusyTicks: raplZones.length > 0 ? (readSystemTicks(config.procRoot)?.busy ?? null) : null,
    kernelTicks,
  };
  postTick({ type: 'tick', tMs, gpus: gpuTicks, cpu, readUs: Math.round((performance.now() - began) * 1000), ...selfCpu() });
}

// A self-correcting schedule: each tick aims at the next multiple of the period, so a slow
// read shortens the following wait instead of drifting.
let timer: NodeJS.Timeout | null = null;
let next = performance.now();
function schedule(): void {
  next += config.periodMs;
  const now = performance.now();
  if (next < now) next = now + config.periodMs;
  timer = setTimeout(() => {
    try {
      tick();
    } catch (e) {
      post({ type: 'fatal', message: e instanceof Error ? e.message : String(e) });
    }
    schedule();
  }, next - now);
}
tick();
schedule();

port.on('message', (m: MainToWorker) => {
  switch (m.type) {
    case 'track': {
      tracked.set(m.kernelId, { pid: m.pid, gpu: m.gpu, tree: [] });
      // Walk now every tree this kernel makes necessary (its own, or its GPU's other kernels').
      for (const t of tracked.values()) if (needsTree(t) && (t.pid === m.pid || t.gpu === m.gpu)) t.tree = processTree(t.pid, config.procRoot);
      break;
    }
    case 'untrack':
      tracked.delete(m.kernelId);
      break;
    case 'stop':
      if (timer) clearTimeout(timer);
      timer = null;
      nvml?.close();
      nvml = null;
      ticksReader.close();
      config.samplePort.close();
      port.close();
      break;
  }
});
