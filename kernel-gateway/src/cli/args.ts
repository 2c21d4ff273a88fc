// Command-line flags of `kinesis-gateway`, parsed and validated apart from the process entry
// so they can be tested without starting anything.
import { parseArgs } from 'node:util';
import { GatewayError } from '../errors.ts';
import type { CullOptions } from '../kernels/culler.ts';
import type { LogLevel } from '../logger.ts';

export const USAGE = `Usage: kinesis-gateway --token <token> --data-dir <dir> [options]

Serves the Jupyter Server REST + WebSocket API (any Jupyter client works) and places kernels
on the providers that dial into it at /api/tunnel.

Options:
  --port <n>                 TCP port (default 8888; 0 picks a free one)
  --host <addr>              address to listen on (default 127.0.0.1)
  --token <token>            API token clients must present (required; or KINESIS_TOKEN)
  --data-dir <dir>           gateway state (its id, notebooks by default) (required)
  --notebook-dir <dir>       root of /api/contents (default <data-dir>/notebooks)
  --ide-dist <dir>           built IDE to serve at / (default: none)
  --buffer-bytes <n>         output kept per disconnected client session (default 16777216)
  --cull-idle-timeout <s>    shut down kernels idle this many seconds (default 0: never)
  --cull-interval <s>        seconds between culling checks (default 300)
  --cull-connected           also cull kernels that have clients connected
  --cull-busy                also cull busy kernels
  --grace <ms>               how long a disconnected provider's kernels wait (default 5000)
  --log-level <level>        debug, info, warn, error (default info)
  -h, --help                 this text

Stop with Ctrl-C (SIGINT) or SIGTERM. Kernels keep running on their providers and are
re-attached when the gateway comes back.`;

export interface GatewayCliConfig {
  readonly port: number;
  readonly host: string;
  readonly token: string;
  readonly dataDir: string;
  readonly notebookDir?: string;
  readonly ideDistDir?: string;
  readonly bufferBytes?: number;
  readonly cull: CullOptions;
  readonly graceMs?: number;
  readonly logLevel: LogLevel;
}

export type CliResult = { readonly help: true } | { readonly help: false; readonly config: GatewayCliConfig };

export class CliError extends GatewayError {
  override name = 'CliError';
}

/** Throws CliError with a message fit for the terminal. */
export function parseCli(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = {}): CliResult {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        token: { type: 'string' },
        'data-dir': { type: 'string' },
        'notebook-dir': { type: 'string' },
        'ide-dist': { type: 'string' },
        'buffer-bytes': { type: 'string' },
        'cull-idle-timeout': { type: 'string' },
        'cull-interval': { type: 'string' },
        'cull-connected': { type: 'boolean' },
        'cull-busy': { type: 'boolean' },
        grace: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }) as { values: Record<string, string | boolean | undefined> });
  } catch (cause) {
    throw new CliError(cause instanceof Error ? cause.message : String(cause), { cause });
  }
  if (values['help']) return { help: true };
  const s = (k: string): string | undefined => values[k] as string | undefined;
  const token = s('token') ?? env['KINESIS_TOKEN'];
  if (!token) throw new CliError('--token is required (or set KINESIS_TOKEN)');
  const dataDir = s('data-dir');
  if (!dataDir) throw new CliError('--data-dir is required');
  const port = intFlag('--port', s('port') ?? '8888', 0, 65535);
  const host = s('host') ?? '127.0.0.1';
  if (!/^[A-Za-z0-9.:-]{1,253}$/.test(host)) throw new CliError(`--host ${JSON.stringify(host)} is not a host name or address`);
  const logLevel = s('log-level') ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new CliError('--log-level must be debug, info, warn or error');
  const cull: CullOptions = {
    ...(s('cull-idle-timeout') !== undefined ? { cull_idle_timeout: numFlag('--cull-idle-timeout', s('cull-idle-timeout')!) } : {}),
    ...(s('cull-interval') !== undefined ? { cull_interval: numFlag('--cull-interval', s('cull-interval')!, 0.01) } : {}),
    ...(values['cull-connected'] ? { cull_connected: true } : {}),
    ...(values['cull-busy'] ? { cull_busy: true } : {}),
  };
  return {
    help: false,
    config: {
      port,
      host,
      token,
      dataDir,
      cull,
      logLevel: logLevel as LogLevel,
      ...(s('notebook-dir') ? { notebookDir: s('notebook-dir')! } : {}),
      ...(s('ide-dist') ? { ideDistDir: s('ide-dist')! } : {}),
      ...(s('buffer-bytes') !== undefined ? { bufferBytes: intFlag('--buffer-bytes', s('buffer-bytes')!, 0, 2 ** 40) } : {}),
      ...(s('grace') !== undefined ? { graceMs: intFlag('--grace', s('grace')!, 0, 86_400_000) } : {}),
    },
  };
}

function intFlag(name: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw new CliError(`${name} must be a whole number, got ${JSON.stringify(v)}`);
  const n = Number(v);
  if (n < min || n > max) throw new CliError(`${name} must be between ${min} and ${max}`);
  return n;
}

function numFlag(name: string, v: string, min = 0): number {
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !Number.isFinite(n) || n < min) throw new CliError(`${name} must be a number of seconds ≥ ${min}, got ${JSON.stringify(v)}`);
  return n;
}
