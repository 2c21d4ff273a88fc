// Deploying the escrow (and, on test chains, the KUSD stablecoin) with any ethers Signer.
// Pure ethers: the Node-only parts (files, anvil) live in client/node/.
import { Contract, ContractFactory, type Signer } from 'ethers';
import { KinesisEscrowAbi, KUSDAbi } from './artifacts/abi.ts';
import { KinesisEscrowBytecode, KUSDBytecode } from './artifacts/bytecode.ts';
import { ChainError, InvalidArgumentError } from './errors.ts';
import { toContractsError } from './revert.ts';
import { parseAddress, parseUint, type Deployment } from './types.ts';

export interface DeployOptions {
  /** An existing ERC-20 to pay in; omitted → deploy the KUSD test stablecoin. */
  readonly token?: string;
  /** Seconds after a session's expiry before its payer may close it. */
  readonly closeGrace: number;
  readonly log?: (line: string) => void;
}

export async function deployContracts(signer: Signer, opts: DeployOptions): Promise<Deployment> {
  const closeGrace = Number(parseUint('closeGrace', opts.closeGrace, (1n << 64n) - 1n));
  const log = opts.log ?? (() => {});
  if (!signer.provider) throw new InvalidArgumentError('signer', 'must be connected to a provider');
  let chainId: bigint;
  let deployer: string;
  try {
    chainId = (await signer.provider.getNetwork()).chainId;
    deployer = await signer.getAddress();
  } catch (err) {
    throw toContractsError(err, 'connecting to the chain');
  }

  let token: string;
  const testToken = opts.token === undefined;
  if (opts.token === undefined) {
    const kusd = await deployOne(signer, 'KUSD', KUSDAbi, KUSDBytecode, [deployer]);
    token = kusd.address;
    log(`KUSD test token deployed at ${token}`);
  } else {
    token = parseAddress('token', opts.token);
  }

  const tokenContract = new Contract(token, KUSDAbi as never, signer);
  let tokenSymbol: string;
  let tokenDecimals: number;
  try {
    tokenSymbol = String(await tokenContract.getFunction('symbol').staticCall()).slice(0, 32);
    tokenDecimals = Number(await tokenContract.getFunction('decimals').staticCall());
  } catch (err) {
    throw new ChainError(`token ${token} does not answer symbol()/decimals(): is it an ERC-20 on chain ${chainId}?`, { cause: err });
  }

  const escrow = await deployOne(signer, 'KinesisEscrow', KinesisEscrowAbi, KinesisEscrowBytecode, [token, closeGrace]);
  log(`KinesisEscrow deployed at ${escrow.address} (closeGrace ${closeGrace}s, token ${tokenSymbol})`);
  return {
    format: 'kinesis-deployment/1',
    chainId: Number(chainId),
    escrow: escrow.address,
    token,
    tokenSymbol,
    tokenDecimals,
    closeGrace,
    deployer,
    blockNumber: escrow.blockNumber,
    deployedAt: new Date().toISOString(),
    testToken,
  };
}

async function deployOne(
  signer: Signer,
  name: string,
  abi: readonly unknown[],
  bytecode: string,
  args: unknown[],
): Promise<{ address: string; blockNumber: number }> {
  try {
    const factory = new ContractFactory(abi as never, bytecode, signer);
    const contract = await factory.deploy(...args);
    const tx = contract.deploymentTransaction();
    const receipt = tx ? await tx.wait() : null;
    if (!receipt || receipt.status !== 1) throw new ChainError(`${name} deployment failed`);
    return { address: await contract.getAddress(), blockNumber: receipt.blockNumber };
  } catch (err) {
    throw toContractsError(err, `deploying ${name}`);
  }
}

/** Mints KUSD to each address (the signer must be KUSD's owner, i.e. its deployer). */
export async function mintTestTokens(signer: Signer, token: string, to: readonly string[], amount: bigint): Promise<void> {
  const kusd = new Contract(parseAddress('token', token), KUSDAbi as never, signer);
  const a = parseUint('amount', amount);
  for (const addr of to) {
    try {
      const tx = await kusd.getFunction('mint').send(parseAddress('recipient', addr), a);
      await tx.wait();
    } catch (err) {
      throw toContractsError(err, `minting KUSD to ${addr}`);
    }
  }
}
