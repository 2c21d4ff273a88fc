// The public surface, written out so that any change to it is a deliberate one, and a check
// that the browser entry never reaches Node-only modules or the contract bytecode.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as browser from './browser.ts';
import * as index from './index.ts';

const here = dirname(fileURLToPath(import.meta.url));

const BROWSER_EXPORTS = [
  'ChainError', 'ContractsError', 'canonicalSignature', 'EscrowClient', 'EscrowRevertError', 'InvalidArgumentError', 'KUSDAbi', 'KinesisEscrowAbi',
  'LocalChainError', 'MAX_CAP', 'MAX_ENERGY_MJ', 'MAX_UINT256', 'SessionNotFoundError', 'VOUCHER_TYPES', 'VoucherError', 'ZERO_ADDRESS',
  'connectRpc', 'createSessionKey', 'decodeEscrowLog', 'decodeRevert', 'escrowDomain', 'followEscrowEvents', 'hashVoucher',
  'parseAddress', 'parseBytes32', 'parseDeployment', 'parseSignature', 'parseSignedVoucher', 'parseUint', 'parseVoucher',
  'queryEscrowEvents', 'recoverVoucherSigner', 'redactUrl', 'sessionKeyFromPrivateKey', 'signVoucher', 'tokenBalance',
  'verifyVoucher', 'voucherToJson',
];
const NODE_EXPORTS = [
  'LOCAL_CLOSE_GRACE', 'LOCAL_FUND_AMOUNT', 'anvilBinaryPath', 'deployContracts', 'mintTestTokens', 'readDeploymentFile',
  'startAnvil', 'startLocalChain', 'writeDeploymentFile',
];

/** Every module reachable from `entry` through relative imports. */
function importGraph(entry: string, seen = new Set<string>()): Set<string> {
  if (seen.has(entry)) return seen;
  seen.add(entry);
  const src = readFileSync(entry, 'utf8');
  for (const m of src.matchAll(/from '(\.[^']+)'/g)) importGraph(resolve(dirname(entry), m[1]!), seen);
  return seen;
}

describe('public exports', () => {
  it('browser entry', () => {
    expect(Object.keys(browser).sort()).toEqual([...BROWSER_EXPORTS].sort());
  });

  it('node entry = browser + node', () => {
    expect(Object.keys(index).sort()).toEqual([...BROWSER_EXPORTS, ...NODE_EXPORTS].sort());
  });

  it('browser entry imports nothing Node-only and no bytecode', () => {
    for (const file of importGraph(join(here, 'browser.ts'))) {
      const src = readFileSync(file, 'utf8');
      expect(src, file).not.toMatch(/from 'node:/);
      expect(file).not.toMatch(/bytecode\.ts$|\/node\//);
    }
  });
});
