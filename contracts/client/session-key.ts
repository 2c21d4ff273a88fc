// A session key: a fresh secp256k1 key the payer authorises once, on-chain, as a session's
// `signer`, so the browser can sign each voucher without a wallet prompt. It can only sign
// vouchers for sessions that name it, and never more than their caps.
import { Wallet, hexlify, randomBytes } from 'ethers';
import { InvalidArgumentError } from './errors.ts';

export function createSessionKey(): Wallet {
  return new Wallet(hexlify(randomBytes(32)));
}

/** Restores a session key from its hex private key (e.g. from the browser's storage). */
export function sessionKeyFromPrivateKey(privateKey: string): Wallet {
  if (!/^0x[0-9a-fA-F]{64}$/.test(privateKey)) throw new InvalidArgumentError('privateKey', 'expected 0x + 64 hex digits');
  try {
    return new Wallet(privateKey);
  } catch (cause) {
    throw new InvalidArgumentError('privateKey', 'not a valid secp256k1 key', { cause });
  }
}
