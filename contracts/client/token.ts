// Reading the payment token (an ERC-20; KUSD on local chains). Pure.
import { Contract, type ContractRunner } from 'ethers';
import { KUSDAbi } from './artifacts/abi.ts';
import { toContractsError } from './revert.ts';
import { parseAddress } from './types.ts';

/** Reads an ERC-20 balance (the token of a deployment, for instance). */
export async function tokenBalance(runner: ContractRunner, token: string, owner: string): Promise<bigint> {
  const c = new Contract(parseAddress('token', token), KUSDAbi as never, runner);
  try {
    return (await c.getFunction('balanceOf').staticCall(parseAddress('owner', owner))) as bigint;
  } catch (err) {
    throw toContractsError(err, 'token.balanceOf()');
  }
}
