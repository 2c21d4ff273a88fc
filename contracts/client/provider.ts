// A JSON-RPC provider set up for sending transactions back to back. ethers v6 shares identical
// requests made within 250 ms (`cacheTimeout`), so a second eth_getTransactionCount right after
// a mined transaction can return the stale nonce ("nonce too low"). Turning that cache off
// costs nothing against a local chain and little against a remote one.
import { JsonRpcProvider, Network } from 'ethers';
import { InvalidArgumentError } from './errors.ts';

export interface RpcOptions {
  /** Known chain id: skips eth_chainId detection and pins the network. */
  readonly chainId?: number;
  /** How often wait() polls for receipts; default 1000 ms (100 ms suits a local anvil). */
  readonly pollingIntervalMs?: number;
}

export function connectRpc(rpcUrl: string, opts: RpcOptions = {}): JsonRpcProvider {
  let url: URL;
  try {
    url = new URL(rpcUrl);
  } catch (cause) {
    throw new InvalidArgumentError('rpcUrl', 'not a URL', { cause });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError('rpcUrl', 'expected http(s)://');
  const network = opts.chainId === undefined ? undefined : Network.from(opts.chainId);
  const provider = new JsonRpcProvider(rpcUrl, network, {
    cacheTimeout: -1,
    staticNetwork: network ?? false,
    pollingInterval: opts.pollingIntervalMs ?? 1_000,
  });
  return provider;
}
