// The meter a provider runs: one sampler worker for all devices, one window book per
// device, and a signed usage receipt for every execution. See docs/metering.md.
//
//   const meter = await createMeter({ signer: wallet, pricePerKwh, chainId });
//   meter.attachKernel(id, { pid, deviceIndex });      // kernel launched (deviceIndex: its GPU)
//   meter.onExecutionStart(id, msgId);                  // status: busy for an execute_request
//   const receipt = await meter.onExecutionEnd(id, msgId); // status: idle → put it in the reply
//   await meter.detachKernel(id);                       // kernel gone → closing receipt
//   await meter.dispose();
//
// onExecutionEnd never waits for a sample: it signs what is measured so far (well under a
// millisecond) and the energy still on its way is carried into the next receipt.
import { createHash } from 'node:crypto';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { KinesisError } from '@kinesis/protocol/errors';
import { amountForEnergy, signReceipt } from '@kinesis/protocol/receipt';
import type { DigestSigner, ReceiptMethod, ReceiptQuality, SignedReceipt, UsageReceipt } from '@kinesis/protocol/receipt';
import { defaultNvmlLibrary } from './nvml.ts';
import { defaultPackagePowerW } from './cpu.ts';
import { CpuNormalizer, GpuNormalizer } from './normalize.ts';
import { DeviceWindows, type ReceiptLines } from './windows.ts';
import type { CpuInfo, GpuInfo, HelloMessage, MainToWorker, SamplerConfig, TickMessage, WorkerToMain } from './sampler-protocol.ts';

export class MeterError extends KinesisError {
  override name = 'MeterError';
}

export interface MeterOptions {
  /** Signs receipts: an ethers Wallet (its signingKey signs the EIP-712 digest synchronously). */
  readonly signer: DigestSigner;
  /** Token base units per kWh; the same in every receipt of this meter. */
  readonly pricePerKwh: bigint;
  readonly chainId: bigint | number;
  /** Sampling period, default 100 ms (10 Hz). */
  readonly sampleIntervalMs?: number;
  /** NVML library path; null disables GPUs. Default: KINESIS_NVML_LIB, else libnvidia-ml.so.1 / nvml.dll. */
  readonly nvmlLibrary?: string | null;
  /** Where amdgpu's cards are (amdgpu.ts); null: no AMD GPUs. Default /sys/class/drm on Linux. */
  readonly drmRoot?: string | null;
  readonly cpu?: {
    /** Package power for the CPU estimate; default 10 W per logical CPU, at least 35 W. */
    readonly packagePowerW?: number;
    /**
     * Period of CPU readings; default: every sample (`sampleIntervalMs`). A reading is a
     * pread of each process's already open /proc/<pid>/stat, about 5 µs each.
     */
    readonly sampleIntervalMs?: number;
    readonly raplRoot?: string;
    readonly procRoot?: string;
  };
  /** A GPU counter unchanged this long while power says otherwise is stuck. Default 1000 ms. */
  readonly stuckCounterMs?: number;
  /** How long detachKernel waits for a sample past the detach time. Default 2000 ms. */
  readonly detachTimeoutMs?: number;
  /** Power cap for a GPU whose enforced limit NVML does not report. Default 1 kW. */
  readonly gpuFallbackCapMw?: number;
}

export interface HardwareReport {
  readonly gpus: ReadonlyArray<GpuInfo & { readonly method: ReceiptMethod; readonly capMw: number }>;
  readonly cpu: CpuInfo & { readonly method: 'rapl' | 'estimate'; readonly packagePowerW: number; readonly capMw: number };
  readonly nvml: { readonly library: string | null; readonly error: string | null };
}

export interface AttachOptions {
  /** The kernel process; its process tree's CPU time is measured. */
  readonly pid: number;
  /** The GPU the kernel holds (NVML index); omitted: the kernel is metered on the CPU. */
  readonly deviceIndex?: number;
}

export interface MeterStats {
  readonly ticks: number;
  /** Wall time the sampler spent in device reads. */
  readonly readUsTotal: number;
  readonly lastTickMs: number | null;
  /** CPU time of the sampler thread (updated about once a second); null where /proc says nothing. */
  readonly samplerThreadCpuNs: number | null;
  /** Time the main thread spent turning samples into windows. */
  readonly ingestUsTotal: number;
}

export interface Meter {
  describeHardware(): HardwareReport;
  attachKernel(kernelId: string, opts: AttachOptions): void;
  /**
   * The kernel's process was replaced (a restart under the same kernel id): meter the new
   * pid from now on, with no closing receipt; the receipt chain simply goes on. The device
   * must stay the same (detach and attach to move a kernel). Throws MeterError.
   */
  retrackKernel(kernelId: string, opts: AttachOptions): void;
  onExecutionStart(kernelId: string, msgId: string, tMs?: number): void;
  onExecutionEnd(kernelId: string, msgId: string, tMs?: number): Promise<SignedReceipt>;
  /** onExecutionEnd without the promise, for a reply path that must not yield. Throws MeterError. */
  executionEndSync(kernelId: string, msgId: string, tMs?: number): SignedReceipt;
  /** Closes the kernel's books: waits (bounded) for the last sample, returns the closing receipt. */
  detachKernel(kernelId: string): Promise<SignedReceipt>;
  /** What sampling costs so far, for tests and benchmarks. */
  stats(): MeterStats;
  dispose(): Promise<void>;
}

/** Readings are drained at least this often when no receipt asks for them. */
const DRAIN_INTERVAL_MS = 500;
/** How often a detach looks for the sample that closes the kernel's books. */
const DETACH_POLL_MS = 50;

/** How long createMeter waits for the sampler to report the hardware. */
const START_TIMEOUT_MS = 30_000;

/** Detached kernels whose chain a re-attach can continue. */
const MAX_CLOSED_BOOKS = 10_000;

/** Windows shorter than this are `measured-short` (the counter updates every 20-100 ms). */
/** Each GPU vendor's methods: its energy counter, and its integrated power. */
const GPU_METHODS = {
  nvidia: { counter: 'nvml-counter', power: 'nvml-power' },
  amd: { counter: 'amdgpu-energy', power: 'amdgpu-power' },
} as const satisfies Record<GpuInfo['vendor'], { counter: ReceiptMethod; power: ReceiptMethod }>;

const SHORT_MS: Partial<Record<ReceiptMethod, number>> = { 'nvml-counter': 100, 'nvml-power': 1000, 'amdgpu-energy': 100, 'amdgpu-power': 1000 };

interface Device {
  readonly label: string;
  readonly windows: DeviceWindows;
  readonly capMw: number;
  readonly primary: ReceiptMethod;
  /** A GPU's counter and power methods (its vendor's names). */
  readonly methods?: { readonly counter: ReceiptMethod; readonly power: ReceiptMethod };
}

interface KernelBook {
  readonly device: Device;
  seq: bigint;
  cumulativeMj: bigint;
  open: { msgId: string; startMs: number } | null;
  closing: Promise<SignedReceipt> | null;
}

/** Starts the sampler worker and resolves once it has reported the hardware. Throws MeterError. */
export async function createMeter(opts: MeterOptions): Promise<Meter> {
  if (opts.pricePerKwh < 0n) throw new MeterError('pricePerKwh must be non-negative');
  const periodMs = opts.sampleIntervalMs ?? 100;
  if (!Number.isInteger(periodMs) || periodMs < 10 || periodMs > 10_000) throw new MeterError('sampleIntervalMs must be an integer in [10, 10000]');
  const cpuPeriod = opts.cpu?.sampleIntervalMs;
  if (cpuPeriod !== undefined && (!Number.isInteger(cpuPeriod) || cpuPeriod < periodMs || cpuPeriod > 10_000)) {
    throw new MeterError('cpu.sampleIntervalMs must be an integer in [sampleIntervalMs, 10000]');
  }
  const config: SamplerConfig = {
    nvmlLibrary: opts.nvmlLibrary === undefined ? defaultNvmlLibrary() : opts.nvmlLibrary,
    drmRoot: opts.drmRoot === undefined ? (process.platform === 'linux' ? '/sys/class/drm' : null) : opts.drmRoot,
    raplRoot: opts.cpu?.raplRoot ?? '/sys/class/powercap',
    procRoot: opts.cpu?.procRoot ?? '/proc',
    periodMs,
    cpuPeriodMs: opts.cpu?.sampleIntervalMs ?? periodMs,
  };
  // Readings travel on their own port, which the main thread never listens to: they queue
  // there and are drained synchronously (receiveMessageOnPort) when a receipt is due and
  // twice a second otherwise. So the event loop is not woken 10 times a second, and a
  // receipt holds every sample taken up to the moment the execution ended.
  const { port1: samples, port2 } = new MessageChannel();
  const worker = new Worker(new URL('./sampler-worker.mjs', import.meta.url), { workerData: { ...config, samplePort: port2 }, transferList: [port2] });
  worker.unref(); // metering never keeps a provider process alive on its own
  const hello = await new Promise<HelloMessage>((resolve, reject) => {
    const fail = (e: unknown): void => {
      clearTimeout(timer);
      samples.close();
      void worker.terminate();
      reject(new MeterError('the sampler worker failed to start', { cause: e }));
    };
    // Loading NVML can hang on a wedged driver: never let that hang the provider's start.
    const timer = setTimeout(() => fail(new Error(`no hello within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    const onExit = (code: number): void => fail(new Error(`exit code ${code}`));
    worker.once('error', fail);
    worker.once('exit', onExit);
    worker.once('message', (m: WorkerToMain) => {
      if (m.type !== 'hello') return fail(new Error(m.type === 'fatal' ? m.message : 'unexpected first message'));
      clearTimeout(timer);
      worker.off('error', fail);
      worker.off('exit', onExit);
      resolve(m);
    });
  });
  return new MeterImpl(opts, config, worker, samples, hello);
}

class MeterImpl implements Meter {
  readonly #opts: MeterOptions;
  readonly #config: SamplerConfig;
  readonly #worker: Worker;
  readonly #samples: MessagePort;
  readonly #drainTimer: NodeJS.Timeout;
  readonly #hello: HelloMessage;
  readonly #gpuDevices: Device[];
  readonly #gpuNorms: GpuNormalizer[];
  readonly #cpuDevice: Device;
  readonly #cpuNorm: CpuNormalizer;
  readonly #cpuPackagePowerW: number;
  readonly #books = new Map<string, KernelBook>();
  /** Final seq and cumulative energy of detached kernels, oldest first, for re-attach. */
  readonly #closedBooks = new Map<string, { seq: bigint; cumulativeMj: bigint }>();
  #healthy = true;
  #disposed: Promise<void> | null = null;
  #ticks = 0;
  #readUs = 0;
  #lastTick: number | null = null;
  #threadCpuNs: number | null = null;
  #ingestUs = 0;

  constructor(opts: MeterOptions, config: SamplerConfig, worker: Worker, samples: MessagePort, hello: HelloMessage) {
    this.#opts = opts;
    this.#config = config;
    this.#worker = worker;
    this.#samples = samples;
    this.#drainTimer = setInterval(() => this.#drain(), DRAIN_INTERVAL_MS);
    this.#drainTimer.unref();
    this.#hello = hello;
    const stuckAfterMs = opts.stuckCounterMs ?? 1000;
    this.#gpuDevices = hello.gpus.map((g) => {
      const capMw = g.powerLimitMw ?? opts.gpuFallbackCapMw ?? 1_000_000;
      const m = GPU_METHODS[g.vendor];
      const primary: ReceiptMethod = g.energyCounter ? m.counter : g.powerReading ? m.power : 'none';
      return { label: deviceLabel(`${g.vendor}:${g.index}:${g.name}`), windows: new DeviceWindows({ policy: 'gpu', capMw }), capMw, primary, methods: m };
    });
    this.#gpuNorms = this.#gpuDevices.map((d) => new GpuNormalizer({ capMw: d.capMw, stuckAfterMs, methods: d.methods }));
    const cpu = hello.cpu;
    this.#cpuPackagePowerW = opts.cpu?.packagePowerW ?? defaultPackagePowerW(cpu.cores);
    const packagePowerMw = Math.round(this.#cpuPackagePowerW * 1000);
    const rapl = cpu.raplZones.length > 0;
    const raplCap = cpu.raplZones.every((z) => z.maxPowerUw !== null) ? cpu.raplZones.reduce((a, z) => a + Math.round(z.maxPowerUw! / 1000), 0) : 2 * packagePowerMw;
    const cpuCap = rapl ? raplCap : packagePowerMw;
    this.#cpuNorm = new CpuNormalizer({ raplZones: rapl ? cpu.raplZones : null, capMw: cpuCap, packagePowerMw, ticksPerSecond: cpu.ticksPerSecond, cores: cpu.cores });
    // secp256k1 builds its precomputed tables on the first signature (tens of ms): pay that
    // now, not on the first execute_reply.
    opts.signer.signingKey.sign('0x' + '00'.repeat(31) + '01');
    this.#cpuDevice = { label: deviceLabel(`cpu:${cpu.model}`), windows: new DeviceWindows({ policy: 'cpu', capMw: cpuCap }), capMw: cpuCap, primary: this.#cpuNorm.method };
    worker.on('message', (m: WorkerToMain) => {
      if (m.type === 'fatal') console.error('[meter] sampler error:', m.message);
    });
    worker.on('error', (e) => this.#onDead(e));
    worker.on('exit', () => this.#onDead(null));
  }

  describeHardware(): HardwareReport {
    const h = this.#hello;
    return {
      gpus: h.gpus.map((g, i) => ({ ...g, method: this.#gpuDevices[i]!.primary, capMw: this.#gpuDevices[i]!.capMw })),
      cpu: { ...h.cpu, method: this.#cpuNorm.method, packagePowerW: this.#cpuPackagePowerW, capMw: this.#cpuDevice.capMw },
      nvml: { library: this.#config.nvmlLibrary, error: h.nvmlError },
    };
  }

  stats(): MeterStats {
    return { ticks: this.#ticks, readUsTotal: this.#readUs, lastTickMs: this.#lastTick, samplerThreadCpuNs: this.#threadCpuNs, ingestUsTotal: Math.round(this.#ingestUs) };
  }

  attachKernel(kernelId: string, opts: AttachOptions): void {
    this.#live();
    if (!KERNEL_ID_RE.test(kernelId)) throw new MeterError('kernelId must be 1-256 printable ASCII characters without spaces');
    if (this.#books.has(kernelId)) throw new MeterError(`kernel ${kernelId} is already attached`);
    if (!Number.isInteger(opts.pid) || opts.pid <= 0) throw new MeterError('pid must be a positive integer');
    let device = this.#cpuDevice;
    if (opts.deviceIndex !== undefined) {
      const d = this.#gpuDevices[opts.deviceIndex];
      if (!d) throw new MeterError(`no GPU with index ${opts.deviceIndex} (this machine has ${this.#gpuDevices.length})`);
      device = d;
    }
    device.windows.attach(kernelId, Date.now());
    // A kernel re-attached under the same id (a restart) continues its receipt chain: the
    // gateway wants seq and cumulative figures to go on, and allows the unbilled gap.
    const past = this.#closedBooks.get(kernelId);
    this.#closedBooks.delete(kernelId);
    this.#books.set(kernelId, { device, seq: past?.seq ?? 0n, cumulativeMj: past?.cumulativeMj ?? 0n, open: null, closing: null });
    this.#send({ type: 'track', kernelId, pid: opts.pid, gpu: opts.deviceIndex ?? null });
  }

  retrackKernel(kernelId: string, opts: AttachOptions): void {
    this.#live();
    const b = this.#book(kernelId);
    if (b.closing) throw new MeterError(`kernel ${kernelId} is being detached`);
    if (!Number.isInteger(opts.pid) || opts.pid <= 0) throw new MeterError('pid must be a positive integer');
    const device = opts.deviceIndex === undefined ? this.#cpuDevice : this.#gpuDevices[opts.deviceIndex];
    if (device !== b.device) throw new MeterError('retrackKernel cannot move a kernel to another device; detach and attach it');
    // The new process's CPU time starts below the old one's: the normalizer counts a drop as
    // zero for one reading and then follows the new process.
    this.#send({ type: 'track', kernelId, pid: opts.pid, gpu: opts.deviceIndex ?? null });
  }

  onExecutionStart(kernelId: string, msgId: string, tMs: number = Date.now()): void {
    const b = this.#book(kernelId);
    const t = Math.round(tMs);
    // With the sampler gone no interval will ever consume events: do not pile them up.
    if (this.#healthy) b.device.windows.start(kernelId, msgId, t);
    b.open = { msgId, startMs: t };
  }

  onExecutionEnd(kernelId: string, msgId: string, tMs: number = Date.now()): Promise<SignedReceipt> {
    try {
      return Promise.resolve(this.executionEndSync(kernelId, msgId, tMs));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  executionEndSync(kernelId: string, msgId: string, tMs: number = Date.now()): SignedReceipt {
    const b = this.#book(kernelId);
    const t = Math.round(tMs);
    this.#drain(); // every sample taken so far goes into this receipt
    if (this.#healthy) b.device.windows.end(kernelId, msgId, t);
    // An end without its start (the provider missed a status message) gets an empty window.
    const startMs = b.open?.msgId === msgId ? Math.min(b.open.startMs, t) : t;
    b.open = null;
    return this.#sign(kernelId, b, b.device.windows.take(kernelId, msgId), msgId, startMs, t);
  }

  detachKernel(kernelId: string): Promise<SignedReceipt> {
    const b = this.#books.get(kernelId);
    if (!b) return Promise.reject(new MeterError(`kernel ${kernelId} is not attached`));
    b.closing ??= this.#close(kernelId, b);
    return b.closing;
  }

  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      this.#healthy = false;
      clearInterval(this.#drainTimer);
      await Promise.allSettled([...this.#books.values()].map((b) => b.closing).filter((p) => p !== null));
      this.#send({ type: 'stop' });
      this.#samples.close();
      await this.#worker.terminate();
    })();
    return this.#disposed;
  }

  async #close(kernelId: string, b: KernelBook): Promise<SignedReceipt> {
    const t = Date.now();
    const w = b.device.windows;
    w.detach(kernelId, t);
    const deadline = t + (this.#opts.detachTimeoutMs ?? 2000);
    for (;;) {
      this.#drain();
      if (w.isClosed(kernelId) || !this.#healthy || Date.now() >= deadline) break;
      await new Promise<void>((resolve) => setTimeout(resolve, Math.min(DETACH_POLL_MS, Math.max(1, deadline - Date.now()))));
    }
    // No sample past the detach time arrived (sampler stopped or slow): close at what is measured.
    const lines = w.take(kernelId, null);
    const open = b.open;
    const msgId = open?.msgId ?? '';
    const end = Math.max(lines.toMs, open?.startMs ?? 0);
    const receipt = this.#sign(kernelId, b, lines, msgId, open ? open.startMs : end, end);
    w.forget(kernelId);
    this.#books.delete(kernelId);
    this.#closedBooks.set(kernelId, { seq: b.seq, cumulativeMj: b.cumulativeMj });
    if (this.#closedBooks.size > MAX_CLOSED_BOOKS) this.#closedBooks.delete(this.#closedBooks.keys().next().value!);
    this.#send({ type: 'untrack', kernelId });
    return receipt;
  }

  #sign(kernelId: string, b: KernelBook, lines: ReceiptLines, msgId: string, startMs: number, endMs: number): SignedReceipt {
    const total = BigInt(lines.execMj + lines.idleMj + lines.carriedMj);
    const cumulativeMj = b.cumulativeMj + total;
    const seq = b.seq + 1n;
    const method: ReceiptMethod = lines.method ?? (this.#healthy ? b.device.primary : 'none');
    const quality = qualityOf(method, endMs - startMs, msgId !== '');
    // A short window's split between it and its neighbours is interpolation: its own size is the bound.
    const uncertainty = lines.uncertaintyMj + (quality === 'measured-short' ? lines.execMj : 0);
    const price = this.#opts.pricePerKwh;
    const message: UsageReceipt = {
      provider: this.#opts.signer.address,
      kernelId,
      msgId: receiptMsgId(msgId),
      seq: seq.toString(),
      fromMs: String(lines.fromMs),
      toMs: String(lines.toMs),
      startMs: String(startMs),
      endMs: String(endMs),
      energyMj: String(lines.execMj),
      idleEnergyMj: String(lines.idleMj),
      carriedMj: String(lines.carriedMj),
      uncertaintyMj: String(uncertainty),
      method,
      quality,
      split: lines.split,
      device: b.device.label,
      powerCapMw: String(b.device.capMw),
      pricePerKwh: price.toString(),
      cumulativeEnergyMj: cumulativeMj.toString(),
      cumulativeAmount: amountForEnergy(cumulativeMj, price).toString(),
    };
    const signed = signReceipt(this.#opts.signer, message, this.#opts.chainId);
    // Commit only once signed: a failure leaves seq and cumulative figures consistent.
    b.seq = seq;
    b.cumulativeMj = cumulativeMj;
    return signed;
  }

  /** Takes every queued reading off the sample port, in order. */
  #drain(): void {
    if (!this.#healthy) return;
    const t0 = performance.now();
    for (;;) {
      const r = receiveMessageOnPort(this.#samples);
      if (r === undefined) break;
      const m = r.message as TickMessage;
      this.#ingest(m);
      if (m.threadCpuNs !== undefined) this.#threadCpuNs = m.threadCpuNs;
    }
    this.#ingestUs += (performance.now() - t0) * 1000;
  }

  #ingest(m: TickMessage): void {
    this.#ticks++;
    this.#readUs += m.readUs;
    this.#lastTick = m.tMs;
    for (const g of m.gpus) {
      const iv = this.#gpuNorms[g.index]?.push({ tMs: m.tMs, counterMj: g.counterMj, powerMw: g.powerMw, utilGpu: g.utilGpu, ...(g.weights ? { weights: g.weights } : {}) });
      if (iv) this.#gpuDevices[g.index]!.windows.push(iv);
    }
    if (!m.cpu) return;
    const iv = this.#cpuNorm.push({ tMs: m.tMs, raplUj: m.cpu.raplUj, kernelTicks: m.cpu.kernelTicks, systemBusyTicks: m.cpu.systemBusyTicks });
    if (iv) this.#cpuDevice.windows.push(iv);
  }

  #onDead(e: unknown): void {
    if (!this.#healthy) return;
    this.#healthy = false;
    if (e) console.error('[meter] sampler worker died; receipts now say method "none":', e);
  }

  #book(kernelId: string): KernelBook {
    const b = this.#books.get(kernelId);
    if (!b) throw new MeterError(`kernel ${kernelId} is not attached`);
    return b;
  }

  #live(): void {
    if (this.#disposed) throw new MeterError('the meter is disposed');
  }

  #send(m: MainToWorker): void {
    if (!this.#healthy && m.type !== 'stop') return;
    try {
      this.#worker.postMessage(m);
    } catch {
      // the worker is gone; #onDead has handled it
    }
  }
}

function qualityOf(method: ReceiptMethod, windowMs: number, isExecution: boolean): ReceiptQuality {
  switch (method) {
    case 'nvml-counter':
    case 'nvml-power':
    case 'amdgpu-energy':
    case 'amdgpu-power':
      return isExecution && windowMs < (SHORT_MS[method] ?? 0) ? 'measured-short' : 'measured';
    case 'rapl':
      return 'vendor-modelled';
    default:
      return 'estimated';
  }
}

const KERNEL_ID_RE = /^[\x21-\x7e]{1,256}$/;

/**
 * Receipt msgIds are printable ASCII without spaces (at most 256). Jupyter msg_ids are
 * (UUID-like) in practice; any other string a client chose is named by its SHA-256.
 */
function receiptMsgId(msgId: string): string {
  return /^[\x21-\x7e]{0,256}$/.test(msgId) ? msgId : `sha256:${createHash('sha256').update(msgId).digest('hex')}`;
}

/** Receipt device strings are printable ASCII, at most 200 characters. */
function deviceLabel(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 200) || 'unknown';
}
