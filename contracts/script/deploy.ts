// Deploys KinesisEscrow to any chain and writes a deployment file.
//
//   npx tsx contracts/script/deploy.ts --rpc URL --key-file FILE --out deployment.json
//       [--token 0xERC20] [--close-grace SECONDS] [--chain-id N]
//
// --key-file holds the deployer's hex private key (0x + 64 hex digits, nothing else); the key
// never appears on the command line or in output. Without --token the KUSD *test* token is
// deployed too: fine for a dev chain, never what you want on a public one. --chain-id makes the
// script refuse to run against any other chain.
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Wallet } from 'ethers';
import { deployContracts } from '../client/deploy.ts';
import { ContractsError, InvalidArgumentError, redactUrl } from '../client/errors.ts';
import { writeDeploymentFile } from '../client/node/deployment-file.ts';
import { connectRpc } from '../client/provider.ts';
import { parseAddress, type Deployment } from '../client/types.ts';

export const USAGE = `usage: deploy.ts --rpc URL --key-file FILE --out FILE [--token ADDRESS] [--close-grace SECONDS] [--chain-id N]`;

export interface DeployArgs {
  readonly rpc: string;
  readonly keyFile: string;
  readonly out: string;
  readonly token?: string;
  readonly closeGrace: number;
  readonly chainId?: number;
}

const FLAGS = new Set(['--rpc', '--key-file', '--out', '--token', '--close-grace', '--chain-id']);

export function parseDeployArgs(argv: readonly string[]): DeployArgs {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (!FLAGS.has(flag)) throw new InvalidArgumentError('flag', `unknown argument ${JSON.stringify(arg)}\n${USAGE}`);
    if (values.has(flag)) throw new InvalidArgumentError(flag, 'given twice');
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value === '' || (eq < 0 && value.startsWith('--'))) throw new InvalidArgumentError(flag, 'needs a value');
    values.set(flag, value);
  }
  for (const required of ['--rpc', '--key-file', '--out']) {
    if (!values.has(required)) throw new InvalidArgumentError(required, `is required\n${USAGE}`);
  }
  const rpc = values.get('--rpc') as string;
  let url: URL;
  try {
    url = new URL(rpc);
  } catch (cause) {
    throw new InvalidArgumentError('--rpc', 'not a URL', { cause });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError('--rpc', 'expected an http(s) URL');
  const int = (flag: string, max: number): number | undefined => {
    const v = values.get(flag);
    if (v === undefined) return undefined;
    if (!/^[0-9]{1,16}$/.test(v) || Number(v) > max) throw new InvalidArgumentError(flag, `expected an integer in [0, ${max}], got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const closeGrace = int('--close-grace', 365 * 24 * 3600) ?? 3_600;
  const chainId = int('--chain-id', Number.MAX_SAFE_INTEGER);
  if (chainId === 0) throw new InvalidArgumentError('--chain-id', 'must be positive');
  const token = values.get('--token');
  return {
    rpc,
    keyFile: values.get('--key-file') as string,
    out: values.get('--out') as string,
    ...(token === undefined ? {} : { token: parseAddress('--token', token) }),
    closeGrace,
    ...(chainId === undefined ? {} : { chainId }),
  };
}

export function readKeyFile(path: string): string {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (cause) {
    throw new InvalidArgumentError('--key-file', `cannot read ${path}`, { cause });
  }
  if (size > 1024) throw new InvalidArgumentError('--key-file', 'too large to be a private key file');
  const key = readFileSync(path, 'utf8').trim();
  if (!/^(0x)?[0-9a-fA-F]{64}$/.test(key)) throw new InvalidArgumentError('--key-file', 'must contain one hex private key (0x + 64 hex digits)');
  return key.startsWith('0x') ? key : `0x${key}`;
}

export async function runDeploy(args: DeployArgs, log: (s: string) => void = console.log): Promise<Deployment> {
  const key = readKeyFile(args.keyFile);
  const provider = connectRpc(args.rpc);
  try {
    const network = await provider.getNetwork().catch((cause: unknown) => {
      throw new ContractsError(`cannot reach ${redactUrl(args.rpc)}`, { cause });
    });
    if (args.chainId !== undefined && network.chainId !== BigInt(args.chainId)) {
      throw new InvalidArgumentError('--chain-id', `the RPC endpoint is chain ${network.chainId}, not ${args.chainId}`);
    }
    const signer = new Wallet(key, provider);
    log(`deploying from ${signer.address} to chain ${network.chainId} at ${redactUrl(args.rpc)}`);
    if (args.token === undefined) log('no --token given: deploying the KUSD test token (not money!)');
    const deployment = await deployContracts(signer, {
      closeGrace: args.closeGrace,
      log,
      ...(args.token === undefined ? {} : { token: args.token }),
    });
    writeDeploymentFile(resolve(args.out), deployment);
    log(`wrote ${resolve(args.out)}`);
    return deployment;
  } finally {
    provider.destroy();
  }
}

/** CLI entry: exit 2 on bad flags, 1 on a failed deployment. */
export async function main(argv: readonly string[]): Promise<number> {
  let args: DeployArgs;
  try {
    args = parseDeployArgs(argv);
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    return 2;
  }
  try {
    await runDeploy(args);
    return 0;
  } catch (err) {
    console.error(err instanceof ContractsError ? err.message : `deploy failed: ${String(err)}`);
    return 1;
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
