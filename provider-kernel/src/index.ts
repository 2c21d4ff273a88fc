// The provider host's public API: startProvider() for `npm start`, tests and embedders;
// the CLI (main.ts) is a thin shell over it.
import type { SignedReceipt } from '@kinesis/protocol/receipt';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { detectHardware } from './hardware.ts';
import { resolveKernelUser } from './kernel-user.ts';
import { loadOrCreateIdentity } from './identity.ts';
import { discoverKernelspecs } from './kernelspecs.ts';
import { tunnelUrl } from './link.ts';
import { consoleLogger, type Logger } from './logger.ts';
import type { ExecutionMeter } from './metering.ts';
import { createProviderMeter, type ProviderMeter } from './meter-adapter.ts';
import { Provider, type ProviderOptions } from './provider.ts';
import type { IopubReader } from './zmq-channels.ts';
import type { IopubAuth } from './kernel.ts';
import { ProviderConfigError } from './errors.ts';

export interface StartProviderOptions {
  /** http(s)://host:port of the gateway; the tunnel is <gatewayUrl>/api/tunnel over ws(s). */
  readonly gatewayUrl: string;
  /** Holds provider-key.json, kernel working dirs and connection files. Created 0700. */
  readonly dataDir: string;
  /** Shown to users; default: the host name. */
  readonly name?: string;
  /** Payment-token base units per kWh (default 0: free). */
  readonly pricePerKwh?: bigint;
  /** Kernelspec directories to search instead of Jupyter's standard ones. */
  readonly kernelspecDirs?: readonly string[];
  readonly logger?: Logger;
  /**
   * Energy metering (src/meter): on by default, signing receipts for chain `chainId`
   * (default 31337, the local anvil of `npm start`). `false` runs without receipts.
   * `meter` replaces the built-in meter (tests, other hardware).
   */
  readonly metering?: false | { readonly chainId?: bigint | number; readonly sampleIntervalMs?: number; readonly nvmlLibrary?: string | null };
  readonly meter?: ExecutionMeter;
  /** nvidia-smi to query; false to skip GPU detection. */
  readonly nvidiaSmi?: string | false;
  readonly maxKernels?: number;
  /** The first this-many ms of a cell's messages leave in one write (batch.ts; default 0: off). */
  readonly outputBatchMs?: number;
  readonly partBytes?: number;
  /** Who reads kernels' iopub (default 'js': large output goes on while it arrives). */
  readonly iopubReader?: IopubReader;
  /** How the js reader authenticates kernel output (default 'peer'; kernel.ts). */
  readonly iopubAuth?: IopubAuth;
  /** With the js reader: output with a part over this many bytes is skipped, with a notice (default 1 GiB). */
  readonly maxIopubFrameBytes?: number;
  /** Provider environment variables passed through to kernels (default: GPU selection and library paths). */
  readonly passEnv?: readonly string[];
  /** Resolve only once the first handshake with the gateway completed. */
  readonly waitForConnection?: boolean;
  /**
   * Run kernels as this Unix user (name or uid), so user code cannot read the provider's key.
   * The provider must run as root (see kernel-user.ts for why capabilities are not enough).
   */
  readonly kernelUser?: string;
  /** Tunnel tuning (backoff, timeouts, frame limit). */
  readonly link?: ProviderOptions['link'];
  /** Flow-control tuning (high-water mark, per-kernel queue bound). */
  readonly outbox?: ProviderOptions['outbox'];
}

export interface RunningProvider {
  /** The provider's id on the gateway: its key's address. */
  readonly address: string;
  /** Shuts every kernel down (no orphans) and closes the tunnel. Safe to call twice. */
  close(): Promise<void>;
  /** Finds the installed kernelspecs again and advertises them (the CLI does this on SIGHUP). */
  rescanKernelspecs(): Promise<void>;
  /** The internals, for tests and status pages. */
  readonly provider: Provider;
}

const MAX_PRICE = 2n ** 256n - 1n;

export async function startProvider(opts: StartProviderOptions): Promise<RunningProvider> {
  const logger = opts.logger ?? consoleLogger('info');
  tunnelUrl(opts.gatewayUrl); // validates the URL before anything touches the disk
  const price = opts.pricePerKwh ?? 0n;
  if (price < 0n || price > MAX_PRICE) throw new ProviderConfigError('pricePerKwh must be between 0 and 2^256-1');
  if (opts.name !== undefined && (opts.name.length === 0 || opts.name.length > 128)) throw new ProviderConfigError('name must be 1 to 128 characters');
  const kernelUser = opts.kernelUser === undefined ? undefined : await resolveKernelUser(opts.kernelUser);
  const identity = await loadOrCreateIdentity(opts.dataDir);
  // The kernel user must pass through the data dir to its own working dir (0711: through,
  // not list); the key file stays 0600 and unreadable to it.
  if (kernelUser) await fs.chmod(path.resolve(opts.dataDir), 0o711);
  if (kernelUser && process.getuid?.() !== 0) logger.warn('--kernel-user needs the provider to run as root; kernels will fail to start');
  // The meter exists before the provider (it tells the provider what hardware it meters);
  // closing receipts reach the provider, and through it the gateway, once it exists.
  let closingReceipt: (kernelId: string, r: SignedReceipt) => void = () => undefined;
  let builtIn: ProviderMeter | undefined;
  if (!opts.meter && opts.metering !== false) {
    const m = opts.metering ?? {};
    try {
      builtIn = await createProviderMeter({
        signer: identity.wallet,
        pricePerKwh: price,
        chainId: m.chainId ?? 31337,
        logger,
        ...(m.sampleIntervalMs !== undefined ? { sampleIntervalMs: m.sampleIntervalMs } : {}),
        ...(m.nvmlLibrary !== undefined ? { nvmlLibrary: m.nvmlLibrary } : {}),
        onClosingReceipt: (kernelId, r) => {
          logger.info('closing receipt', { kernelId, seq: r.message.seq, cumulativeEnergyMj: r.message.cumulativeEnergyMj, cumulativeAmount: r.message.cumulativeAmount });
          closingReceipt(kernelId, r);
        },
      });
    } catch (e) {
      // Kernels still run; without a meter their replies carry no receipts, so say it loudly.
      logger.error('metering could not start: replies will carry no receipts', { error: e instanceof Error ? e.message : String(e) });
    }
  }
  const meterGpus = builtIn?.gpus() ?? [];
  const [detected, kernelspecs] = await Promise.all([
    // The meter already asked NVML: its GPU numbering is the one kernels are metered by.
    detectHardware({ logger, ...(meterGpus.length > 0 ? { nvidiaSmi: false as const } : opts.nvidiaSmi !== undefined ? { nvidiaSmi: opts.nvidiaSmi } : {}) }),
    discoverKernelspecs({ logger, ...(opts.kernelspecDirs ? { dirs: opts.kernelspecDirs } : {}) }),
  ]);
  // Every device says the power cap its readings are held to; the gateway refuses receipts
  // that claim more (docs/metering.md).
  const cpuCapW = builtIn?.cpuCapW();
  const hardware =
    meterGpus.length > 0
      ? { ...detected, devices: meterGpus }
      : { ...detected, devices: detected.devices.map((d) => (d.kind === 'cpu' && cpuCapW && d.powerLimitW === undefined ? { ...d, powerLimitW: cpuCapW } : d)) };
  const meter = opts.meter ?? builtIn;
  if (kernelspecs.length === 0) logger.warn('no usable Jupyter kernelspecs found; install one (e.g. Debian python3-ipykernel) to offer kernels');
  logger.info('provider identity', { address: identity.address });
  logger.info('offering', { devices: hardware.devices.map((d) => `${d.kind}:${d.name}`), kernelspecs: kernelspecs.map((s) => s.name), pricePerKwh: price.toString() });
  const provider = new Provider({
    gatewayUrl: opts.gatewayUrl,
    dataDir: opts.dataDir,
    pricePerKwh: price,
    identity,
    hardware,
    kernelspecs,
    logger,
    ...(opts.name !== undefined ? { name: opts.name } : {}),
    ...(meter ? { meter } : {}),
    ...(opts.maxKernels !== undefined ? { maxKernels: opts.maxKernels } : {}),
    ...(opts.outputBatchMs !== undefined ? { outputBatchMs: opts.outputBatchMs } : {}),
    ...(opts.partBytes !== undefined ? { partBytes: opts.partBytes } : {}),
    ...(opts.iopubReader !== undefined ? { iopubReader: opts.iopubReader } : {}),
    ...(opts.iopubAuth !== undefined ? { iopubAuth: opts.iopubAuth } : {}),
    ...(opts.maxIopubFrameBytes !== undefined ? { maxIopubFrameBytes: opts.maxIopubFrameBytes } : {}),
    ...(opts.passEnv ? { passEnv: opts.passEnv } : {}),
    ...(kernelUser ? { kernelUser } : {}),
    ...(opts.link ? { link: opts.link } : {}),
    ...(opts.outbox ? { outbox: opts.outbox } : {}),
  });
  closingReceipt = (kernelId, r) => provider.sendClosingReceipt(kernelId, r);
  provider.start();
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      await provider.close();
      await builtIn?.dispose();
    })());
  if (opts.waitForConnection) await provider.link.whenOpen();
  const rescanKernelspecs = async (): Promise<void> => {
    const specs = await discoverKernelspecs({ logger, ...(opts.kernelspecDirs ? { dirs: opts.kernelspecDirs } : {}) });
    provider.setKernelspecs(specs);
    logger.info('kernelspecs rescanned', { kernelspecs: specs.map((s) => s.name) });
  };
  return { address: identity.address, provider, close, rescanKernelspecs };
}

export { Provider } from './provider.ts';
export type { ExecutionMeter } from './metering.ts';
export type { Logger } from './logger.ts';
export { consoleLogger, silentLogger } from './logger.ts';
