// The local chain `npm start` uses: anvil, KUSD + KinesisEscrow deployed, every dev account
// holding KUSD, and a deployment file. With a dataDir the chain persists across restarts
// (anvil --state) and an existing deployment on it is reused. Node only.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wallet, type JsonRpcProvider } from 'ethers';
import { deployContracts, mintTestTokens } from '../deploy.ts';
import { LocalChainError } from '../errors.ts';
import { connectRpc } from '../provider.ts';
import type { Deployment } from '../types.ts';
import { startAnvil, type DevAccount } from './anvil.ts';
import { readDeploymentFile, writeDeploymentFile } from './deployment-file.ts';

export interface LocalChainOptions {
  readonly port?: number;
  readonly dataDir?: string;
  readonly log?: (s: string) => void;
  /** Default one hour. */
  readonly closeGrace?: number;
  /** KUSD minted to each dev account on a fresh chain, in base units; default 1,000,000 KUSD. */
  readonly fundAmount?: bigint;
}

export interface LocalChain {
  readonly rpcUrl: string;
  readonly chainId: number;
  readonly escrow: string;
  readonly token: string;
  readonly accounts: { address: string; privateKey: string }[];
  readonly deployment: Deployment;
  /** Where the deployment file was written. */
  readonly deploymentPath: string;
  stop(): Promise<void>;
}

export const LOCAL_CLOSE_GRACE = 3_600;
export const LOCAL_FUND_AMOUNT = 1_000_000n * 10n ** 6n;

export async function startLocalChain(opts: LocalChainOptions = {}): Promise<LocalChain> {
  const log = opts.log ?? (() => {});
  let dir: string;
  let ownsDir = false;
  if (opts.dataDir) {
    mkdirSync(opts.dataDir, { recursive: true });
    dir = opts.dataDir;
  } else {
    dir = mkdtempSync(join(tmpdir(), 'kinesis-chain-'));
    ownsDir = true;
  }
  const deploymentPath = join(dir, 'deployment.json');
  const anvil = await startAnvil({
    ...(opts.port === undefined ? {} : { port: opts.port }),
    ...(opts.dataDir ? { statePath: join(dir, 'anvil-state.json') } : {}),
    log: (l) => {
      // anvil's banner and per-request lines are noise for `npm start`; keep errors.
      if (/error|warn/i.test(l)) log(l);
    },
  });
  const provider = connectRpc(anvil.rpcUrl, { chainId: anvil.chainId, pollingIntervalMs: 100 });
  const stop = async (): Promise<void> => {
    provider.destroy();
    await anvil.stop();
    if (ownsDir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    const deployer = anvil.accounts[0];
    if (!deployer) throw new LocalChainError('anvil reported no dev accounts');
    let deployment = await reusableDeployment(provider, deploymentPath, anvil.chainId, log);
    if (!deployment) {
      const signer = new Wallet(deployer.privateKey, provider);
      deployment = await deployContracts(signer, { closeGrace: opts.closeGrace ?? LOCAL_CLOSE_GRACE, log });
      const amount = opts.fundAmount ?? LOCAL_FUND_AMOUNT;
      await mintTestTokens(signer, deployment.token, anvil.accounts.map((a: DevAccount) => a.address), amount);
      log(`funded ${anvil.accounts.length} dev accounts with ${amount / 10n ** 6n} KUSD each`);
      writeDeploymentFile(deploymentPath, deployment);
    }
    log(`local chain ${anvil.chainId} at ${anvil.rpcUrl}: escrow ${deployment.escrow}, token ${deployment.token}`);
    return {
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      escrow: deployment.escrow,
      token: deployment.token,
      accounts: anvil.accounts.map((a) => ({ ...a })),
      deployment,
      deploymentPath,
      stop,
    };
  } catch (err) {
    await stop();
    throw err instanceof LocalChainError ? err : new LocalChainError('could not set up the local chain', { cause: err });
  }
}

/** An earlier deployment in dataDir, if the restored chain still has its contracts. */
async function reusableDeployment(provider: JsonRpcProvider, path: string, chainId: number, log: (s: string) => void): Promise<Deployment | undefined> {
  if (!existsSync(path)) return undefined;
  try {
    const d = readDeploymentFile(path);
    if (d.chainId !== chainId) return undefined;
    const [escrowCode, tokenCode] = await Promise.all([provider.getCode(d.escrow), provider.getCode(d.token)]);
    if (escrowCode === '0x' || tokenCode === '0x') return undefined;
    log(`reusing the deployment in ${path}`);
    return d;
  } catch (err) {
    log(`ignoring ${path}: ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  }
}
