// Messages between the meter (main thread) and its sampler worker. Both sides are our
// own code in one process, so these are plain structured-clone objects (bigint and Map
// survive the copy), not a wire format.

export interface SamplerConfig {
  /** Path or name of libnvidia-ml; null: do not use NVML. */
  readonly nvmlLibrary: string | null;
  /** Where the amdgpu driver's cards are (/sys/class/drm); null: do not look for AMD GPUs. */
  readonly drmRoot: string | null;
  readonly raplRoot: string;
  readonly procRoot: string;
  readonly periodMs: number;
  /** Period of CPU readings (a multiple of periodMs, rounded). */
  readonly cpuPeriodMs: number;
}

export interface GpuInfo {
  /** Read through NVML, or through the amdgpu driver's sysfs files (amdgpu.ts). */
  readonly vendor: 'nvidia' | 'amd';
  readonly index: number;
  readonly name: string;
  readonly memoryTotalBytes: number;
  readonly memoryUsedBytes: number;
  /** Enforced power limit; null where NVML does not report it. */
  readonly powerLimitMw: number | null;
  readonly energyCounter: boolean;
  readonly powerReading: boolean;
  readonly processUtilization: boolean;
}

export interface CpuInfo {
  readonly model: string;
  readonly cores: number;
  readonly ticksPerSecond: number;
  readonly raplZones: ReadonlyArray<{ readonly name: string; readonly maxRangeUj: number; readonly maxPowerUw: number | null }>;
}

export interface HelloMessage {
  readonly type: 'hello';
  readonly gpus: readonly GpuInfo[];
  readonly cpu: CpuInfo;
  /** Why NVML is not in use (no library, init failed), or null. */
  readonly nvmlError: string | null;
}

export interface GpuTick {
  readonly index: number;
  readonly counterMj: bigint | null;
  readonly powerMw: number | null;
  readonly utilGpu: number | null;
  /** Recent SM utilization summed per tracked kernel's process tree; absent when unknown. */
  readonly weights?: Map<string, number>;
}

export interface CpuTick {
  readonly raplUj: Array<number | null> | null;
  readonly systemBusyTicks: number | null;
  readonly kernelTicks: Map<string, number>;
}

export interface TickMessage {
  readonly type: 'tick';
  readonly tMs: number;
  readonly gpus: readonly GpuTick[];
  /** Null on ticks without CPU readings (see SamplerConfig.cpuPeriodMs). */
  readonly cpu: CpuTick | null;
  /** Wall time the worker spent reading devices for this tick (for the benchmark). */
  readonly readUs: number;
  /** CPU time of the sampler thread so far (ns, /proc/thread-self/schedstat), about once a second; null where unknown. */
  readonly threadCpuNs?: number | null;
}

export interface FatalMessage {
  readonly type: 'fatal';
  readonly message: string;
}

export type WorkerToMain = HelloMessage | TickMessage | FatalMessage;

export type MainToWorker =
  | { readonly type: 'track'; readonly kernelId: string; readonly pid: number; readonly gpu: number | null }
  | { readonly type: 'untrack'; readonly kernelId: string }
  | { readonly type: 'stop' };
