// Command-line flags of `kinesis-provider`, parsed and validated apart from the process
// entry so they can be tested without starting anything.
import { parseArgs } from 'node:util';
import { ProviderConfigError } from './errors.ts';
import { tunnelUrl } from './link.ts';
import type { LogLevel } from './logger.ts';
import { DEFAULT_OUTPUT_BATCH_MS } from './batch.ts';
import { DEFAULT_PART_BYTES } from './kernel-frame.ts';
import type { IopubReader } from './zmq-channels.ts';
import type { IopubAuth } from './kernel.ts';

export const USAGE = `Usage: kinesis-provider --gateway <url> --data-dir <dir> [options]

Runs Jupyter kernels on this machine for a Kinesis gateway. Dials out to the gateway
(no inbound port needed), proves its identity with the key in <dir>/provider-key.json
(created on first run, mode 0600) and offers this machine's kernelspecs and hardware.

Options:
  --gateway <url>      gateway base URL, http(s)://host:port (required)
  --data-dir <dir>     where the key, kernel working dirs and connection files live (required)
  --price <n>          price in payment-token base units per kWh (default 0)
  --name <name>        name shown to users (default: the host name)
  --kernelspec-dir <d> search this kernelspec dir instead of Jupyter's standard ones (repeatable)
  --max-kernels <n>    most kernels at once (default 16)
  --kernel-user <user> run kernels as this Unix user (the provider must run as root)
  --chain-id <n>       chain id the usage receipts are signed for (default 31337, local anvil)
  --no-metering        run without the energy meter (replies carry no receipts)
  --output-batch-ms <n> the first n ms of a cell's messages leave in one write
                       (default 0: off; 6 fits a short cell; at most 1000; see
                       docs/protocols.md for a Jupyter Server 1.23 caveat)
  --part-bytes <n>     output larger than n bytes crosses the tunnel in parts of n
                       bytes, forwarded by the gateway as they arrive (default
                       1048576; 0: whole messages only; 65536 to 16777216)
  --iopub-reader <r>   how kernel output is read: js (default; large output goes
                       on while it arrives) or libzmq (the zeromq package's SUB)
  --iopub-auth <a>     how the js reader authenticates kernel output: peer
                       (default; a connection verified through /proc as the
                       kernel process's own is not HMAC-checked per message,
                       any other is) or hmac (every message is checked)
  --log-level <level>  debug, info, warn, error (default info)
  -h, --help           this text

Stop with Ctrl-C (SIGINT) or SIGTERM: every kernel is shut down first.
SIGHUP rescans the kernelspec folders and advertises what changed.`;

export interface CliConfig {
  readonly gatewayUrl: string;
  readonly dataDir: string;
  readonly pricePerKwh: bigint;
  readonly name?: string;
  readonly kernelspecDirs?: string[];
  readonly kernelUser?: string;
  readonly maxKernels: number;
  readonly logLevel: LogLevel;
  /** undefined: metering off. */
  readonly chainId: bigint | undefined;
  readonly outputBatchMs: number;
  readonly partBytes: number;
  readonly iopubReader: IopubReader;
  readonly iopubAuth: IopubAuth;
}

export type CliResult = { readonly help: true } | { readonly help: false; readonly config: CliConfig };

/** Throws ProviderConfigError with a message fit for the terminal. */
export function parseCli(argv: readonly string[]): CliResult {
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        gateway: { type: 'string' },
        'data-dir': { type: 'string' },
        price: { type: 'string' },
        name: { type: 'string' },
        'kernelspec-dir': { type: 'string', multiple: true },
        'max-kernels': { type: 'string' },
        'log-level': { type: 'string' },
        'chain-id': { type: 'string' },
        'no-metering': { type: 'boolean' },
        'kernel-user': { type: 'string' },
        'output-batch-ms': { type: 'string' },
        'part-bytes': { type: 'string' },
        'iopub-reader': { type: 'string' },
        'iopub-auth': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw new ProviderConfigError(e instanceof Error ? e.message : String(e));
  }
  if (values['help']) return { help: true };
  const gateway = values['gateway'];
  if (typeof gateway !== 'string' || gateway === '') throw new ProviderConfigError('--gateway <url> is required (e.g. --gateway http://127.0.0.1:8888)');
  tunnelUrl(gateway);
  const dataDir = values['data-dir'];
  if (typeof dataDir !== 'string' || dataDir === '') throw new ProviderConfigError('--data-dir <dir> is required');
  const priceText = values['price'] ?? '0';
  if (typeof priceText !== 'string' || !/^(0|[1-9][0-9]{0,77})$/.test(priceText)) {
    throw new ProviderConfigError(`--price must be a whole number of base units per kWh, got ${JSON.stringify(priceText)}`);
  }
  const price = BigInt(priceText);
  if (price >= 2n ** 256n) throw new ProviderConfigError('--price is over 2^256-1');
  const name = values['name'];
  if (name !== undefined && (typeof name !== 'string' || name.length === 0 || name.length > 128)) throw new ProviderConfigError('--name must be 1 to 128 characters');
  const maxText = values['max-kernels'] ?? '16';
  if (typeof maxText !== 'string' || !/^[1-9][0-9]{0,3}$/.test(maxText)) throw new ProviderConfigError('--max-kernels must be a whole number from 1 to 9999');
  const level = values['log-level'] ?? 'info';
  if (level !== 'debug' && level !== 'info' && level !== 'warn' && level !== 'error') throw new ProviderConfigError('--log-level must be debug, info, warn or error');
  const chainText = values['chain-id'] ?? '31337';
  if (typeof chainText !== 'string' || !/^[1-9][0-9]{0,19}$/.test(chainText)) throw new ProviderConfigError('--chain-id must be a positive whole number');
  const batchText = values['output-batch-ms'] ?? String(DEFAULT_OUTPUT_BATCH_MS);
  if (typeof batchText !== 'string' || !/^(0|[1-9][0-9]{0,3})$/.test(batchText) || Number(batchText) > 1000) {
    throw new ProviderConfigError('--output-batch-ms must be a whole number of milliseconds from 0 to 1000');
  }
  const partText = values['part-bytes'] ?? String(DEFAULT_PART_BYTES);
  const partBytes = typeof partText === 'string' && /^(0|[1-9][0-9]{0,8})$/.test(partText) ? Number(partText) : NaN;
  if (!(partBytes === 0 || (partBytes >= 65536 && partBytes <= 16 * 1024 * 1024))) {
    throw new ProviderConfigError('--part-bytes must be 0 or a whole number of bytes from 65536 to 16777216');
  }
  const reader = values['iopub-reader'] ?? 'js';
  if (reader !== 'js' && reader !== 'libzmq') throw new ProviderConfigError('--iopub-reader must be js or libzmq');
  const auth = values['iopub-auth'] ?? 'peer';
  if (auth !== 'peer' && auth !== 'hmac') throw new ProviderConfigError('--iopub-auth must be peer or hmac');
  const dirs = values['kernelspec-dir'];
  return {
    help: false,
    config: {
      gatewayUrl: gateway,
      dataDir,
      pricePerKwh: price,
      ...(typeof name === 'string' ? { name } : {}),
      ...(Array.isArray(dirs) ? { kernelspecDirs: dirs } : {}),
      ...(typeof values['kernel-user'] === 'string' ? { kernelUser: values['kernel-user'] } : {}),
      maxKernels: Number(maxText),
      logLevel: level,
      chainId: values['no-metering'] ? undefined : BigInt(chainText),
      outputBatchMs: Number(batchText),
      partBytes,
      iopubReader: reader,
      iopubAuth: auth,
    },
  };
}
