// NVIDIA Management Library through koffi (FFI). Signatures follow nvml.h
// (https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html):
//   nvmlReturn_t nvmlInit_v2(void) / nvmlShutdown(void)
//   nvmlDeviceGetCount_v2(unsigned int *count)
//   nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
//   nvmlDeviceGetName(nvmlDevice_t, char *name, unsigned int length)
//   nvmlDeviceGetMemoryInfo(nvmlDevice_t, nvmlMemory_t *)            {total, free, used} bytes
//   nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t, unsigned long long *)  mJ since driver load (Volta+)
//   nvmlDeviceGetPowerUsage(nvmlDevice_t, unsigned int *)            mW
//   nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t, unsigned int *)    mW
//   nvmlDeviceGetUtilizationRates(nvmlDevice_t, nvmlUtilization_t *) {gpu, memory} percent
//   nvmlDeviceGetProcessUtilization(nvmlDevice_t, nvmlProcessUtilizationSample_t *, unsigned int *count,
//                                   unsigned long long lastSeenTimeStamp)   per-process SM %
// Calls block for microseconds to a millisecond on a real driver, so the meter makes them
// from a worker thread, never from the event loop that relays kernel messages.
import koffi from 'koffi';
import { KinesisError } from '@kinesis/protocol/errors';

export const NVML_SUCCESS = 0;
export const NVML_ERROR_NOT_SUPPORTED = 3;
export const NVML_ERROR_NOT_FOUND = 6;
export const NVML_ERROR_INSUFFICIENT_SIZE = 7;
export const NVML_ERROR_LIBRARY_NOT_FOUND = 12;
/** NVML_DEVICE_NAME_V2_BUFFER_SIZE */
const NAME_BUFFER = 96;
/** sizeof(nvmlProcessUtilizationSample_t): u32 pid, (pad), u64 timeStamp, 4 × u32. */
const PROC_SAMPLE_SIZE = 32;

export class NvmlError extends KinesisError {
  override name = 'NvmlError';
  constructor(
    readonly code: number,
    readonly call: string,
    text: string,
  ) {
    super(`NVML ${call} failed: ${text} (${code})`);
  }
}

export function defaultNvmlLibrary(): string {
  return process.env.KINESIS_NVML_LIB || (process.platform === 'win32' ? 'nvml.dll' : 'libnvidia-ml.so.1');
}

// koffi types are anonymous so that opening the library twice (tests, several workers)
// never collides on a registered type name.
const DeviceHandle = koffi.pointer(koffi.opaque());
const MemoryInfo = koffi.struct({ total: 'unsigned long long', free: 'unsigned long long', used: 'unsigned long long' });
const Utilization = koffi.struct({ gpu: 'unsigned int', memory: 'unsigned int' });

type Fn = (...args: unknown[]) => number;

export interface NvmlMemory {
  readonly totalBytes: number;
  readonly usedBytes: number;
}

export interface NvmlProcessSample {
  readonly pid: number;
  readonly timeStampUs: bigint;
  readonly smUtil: number;
}

/** A loaded, initialised NVML. `close()` calls nvmlShutdown once; safe to call twice. */
export class Nvml {
  readonly #lib: koffi.IKoffiLib;
  readonly #fn: Record<string, Fn>;
  readonly #errorString: (code: number) => string;
  #open = true;

  private constructor(lib: koffi.IKoffiLib) {
    this.#lib = lib;
    const u = 'unsigned int';
    const out = (t: koffi.TypeSpec): koffi.IKoffiCType => koffi.out(koffi.pointer(t));
    const def = (name: string, args: koffi.TypeSpec[]): Fn => lib.func(name, 'int', args) as Fn;
    this.#fn = {
      init: def('nvmlInit_v2', []),
      shutdown: def('nvmlShutdown', []),
      count: def('nvmlDeviceGetCount_v2', [out(u)]),
      handle: def('nvmlDeviceGetHandleByIndex_v2', [u, out(DeviceHandle)]),
      name: def('nvmlDeviceGetName', [DeviceHandle, 'void *', u]),
      memory: def('nvmlDeviceGetMemoryInfo', [DeviceHandle, out(MemoryInfo)]),
      energy: def('nvmlDeviceGetTotalEnergyConsumption', [DeviceHandle, out('unsigned long long')]),
      power: def('nvmlDeviceGetPowerUsage', [DeviceHandle, out(u)]),
      limit: def('nvmlDeviceGetEnforcedPowerLimit', [DeviceHandle, out(u)]),
      util: def('nvmlDeviceGetUtilizationRates', [DeviceHandle, out(Utilization)]),
      procUtil: def('nvmlDeviceGetProcessUtilization', [DeviceHandle, 'void *', koffi.inout(koffi.pointer(u)), 'unsigned long long']),
    };
    const es = lib.func('nvmlErrorString', 'const char *', ['int']) as (c: number) => string | null;
    this.#errorString = (c) => es(c) ?? 'unknown';
  }

  /**
   * dlopens NVML (path: KINESIS_NVML_LIB, else the platform's library name) and calls
   * nvmlInit_v2. Throws NvmlError: LIBRARY_NOT_FOUND (12) when there is no library, or
   * the init's own code (e.g. 9 DRIVER_NOT_LOADED).
   */
  static open(path: string = defaultNvmlLibrary()): Nvml {
    let lib: koffi.IKoffiLib;
    try {
      lib = koffi.load(path);
    } catch (cause) {
      const e = new NvmlError(NVML_ERROR_LIBRARY_NOT_FOUND, 'dlopen', `cannot load ${path}`);
      (e as { cause?: unknown }).cause = cause;
      throw e;
    }
    let nvml: Nvml;
    try {
      nvml = new Nvml(lib);
    } catch (cause) {
      lib.unload();
      const e = new NvmlError(NVML_ERROR_LIBRARY_NOT_FOUND, 'dlsym', `${path} lacks an NVML entry point`);
      (e as { cause?: unknown }).cause = cause;
      throw e;
    }
    const rc = nvml.#fn.init!();
    if (rc !== NVML_SUCCESS) {
      const text = nvml.#errorString(rc);
      lib.unload();
      throw new NvmlError(rc, 'nvmlInit_v2', text);
    }
    return nvml;
  }

  #check(call: string, rc: number): void {
    if (rc !== NVML_SUCCESS) throw new NvmlError(rc, call, this.#errorString(rc));
  }

  #call(key: string, call: string, ...args: unknown[]): void {
    if (!this.#open) throw new NvmlError(1, call, 'NVML is shut down');
    this.#check(call, this.#fn[key]!(...args));
  }

  deviceCount(): number {
    const n = [0];
    this.#call('count', 'nvmlDeviceGetCount_v2', n);
    return n[0]!;
  }

  /** An opaque handle for device `index`. */
  handle(index: number): unknown {
    const h: unknown[] = [null];
    this.#call('handle', 'nvmlDeviceGetHandleByIndex_v2', index, h);
    return h[0];
  }

  name(h: unknown): string {
    const buf = Buffer.alloc(NAME_BUFFER);
    this.#call('name', 'nvmlDeviceGetName', h, buf, NAME_BUFFER);
    const end = buf.indexOf(0);
    return buf.toString('utf8', 0, end < 0 ? NAME_BUFFER : end);
  }

  memory(h: unknown): NvmlMemory {
    const m: { total?: number | bigint; used?: number | bigint } = {};
    this.#call('memory', 'nvmlDeviceGetMemoryInfo', h, m);
    return { totalBytes: Number(m.total ?? 0), usedBytes: Number(m.used ?? 0) };
  }

  /** The board's energy counter in mJ since the driver loaded (bigint: it is a u64). */
  totalEnergyMj(h: unknown): bigint {
    const e: Array<number | bigint> = [0];
    this.#call('energy', 'nvmlDeviceGetTotalEnergyConsumption', h, e);
    return BigInt(e[0]!);
  }

  powerMw(h: unknown): number {
    const p = [0];
    this.#call('power', 'nvmlDeviceGetPowerUsage', h, p);
    return p[0]!;
  }

  enforcedPowerLimitMw(h: unknown): number {
    const p = [0];
    this.#call('limit', 'nvmlDeviceGetEnforcedPowerLimit', h, p);
    return p[0]!;
  }

  utilizationGpu(h: unknown): number {
    const u: { gpu?: number } = {};
    this.#call('util', 'nvmlDeviceGetUtilizationRates', h, u);
    return u.gpu ?? 0;
  }

  /**
   * Per-process SM utilization samples newer than `lastSeenUs`. NVML's two-call protocol:
   * a NULL buffer answers INSUFFICIENT_SIZE with the count needed.
   */
  processUtilization(h: unknown, lastSeenUs: bigint): NvmlProcessSample[] {
    if (!this.#open) throw new NvmlError(1, 'nvmlDeviceGetProcessUtilization', 'NVML is shut down');
    const count = [0];
    let rc = this.#fn.procUtil!(h, null, count, lastSeenUs);
    // NOT_FOUND: no process has run on the GPU since lastSeenUs (what a real driver answers).
    if (rc === NVML_SUCCESS || rc === NVML_ERROR_NOT_FOUND) return [];
    if (rc !== NVML_ERROR_INSUFFICIENT_SIZE) this.#check('nvmlDeviceGetProcessUtilization', rc);
    const cap = Math.min(count[0]! + 8, 4096); // room for processes that appear between the calls
    const buf = Buffer.alloc(cap * PROC_SAMPLE_SIZE);
    count[0] = cap;
    rc = this.#fn.procUtil!(h, buf, count, lastSeenUs);
    if (rc === NVML_ERROR_NOT_FOUND) return [];
    this.#check('nvmlDeviceGetProcessUtilization', rc);
    const out: NvmlProcessSample[] = [];
    for (let i = 0; i < Math.min(count[0]!, cap); i++) {
      const o = i * PROC_SAMPLE_SIZE;
      out.push({ pid: buf.readUInt32LE(o), timeStampUs: buf.readBigUInt64LE(o + 8), smUtil: buf.readUInt32LE(o + 16) });
    }
    return out;
  }

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    try {
      this.#fn.shutdown!();
    } finally {
      this.#lib.unload();
    }
  }
}
