// Data shapes shared by the escrow client, and validators for everything that arrives from
// outside (JSON files, RPC results, other processes). Amounts are bigint base units of the
// token; energy is millijoules; times are Unix seconds.
import { getAddress, isHexString } from 'ethers';
import { InvalidArgumentError } from './errors.ts';

/** Mirrors IKinesisEscrow.Voucher. */
export interface Voucher {
  readonly sessionId: string;
  readonly cumulativeAmount: bigint;
  readonly cumulativeEnergyMj: bigint;
}

export interface SignedVoucher {
  readonly voucher: Voucher;
  /** 65-byte r‖s‖v hex signature over the EIP-712 digest. */
  readonly signature: string;
}

/** Mirrors IKinesisEscrow.Session, plus its id. */
export interface Session {
  readonly sessionId: string;
  readonly payer: string;
  readonly provider: string;
  /** Session key allowed to sign besides the payer; the zero address when there is none. */
  readonly signer: string;
  readonly cap: bigint;
  readonly claimed: bigint;
  readonly claimedEnergyMj: bigint;
  readonly expiresAt: bigint;
  readonly closed: boolean;
}

/** What a deploy writes to its deployment file. */
export interface Deployment {
  readonly format: 'kinesis-deployment/1';
  readonly chainId: number;
  readonly escrow: string;
  readonly token: string;
  readonly tokenSymbol: string;
  readonly tokenDecimals: number;
  readonly closeGrace: number;
  readonly deployer: string;
  /** Block of the escrow's deployment: where to start following events. */
  readonly blockNumber: number;
  readonly deployedAt: string;
  /** True when the token is the KUSD test stablecoin deployed alongside. */
  readonly testToken: boolean;
}

export const ZERO_ADDRESS = '0x0000000000000000000000000000000000000000';
export const MAX_UINT256 = (1n << 256n) - 1n;
/** Storage bounds in KinesisEscrow: caps are uint128, energy uint96, free balances uint192. */
export const MAX_CAP = (1n << 128n) - 1n;
export const MAX_ENERGY_MJ = (1n << 96n) - 1n;

export function parseAddress(name: string, value: unknown): string {
  if (typeof value !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(value)) {
    throw new InvalidArgumentError(name, `expected a 0x-prefixed 20-byte hex address, got ${describe(value)}`);
  }
  try {
    return getAddress(value);
  } catch (cause) {
    throw new InvalidArgumentError(name, 'bad EIP-55 checksum', { cause });
  }
}

export function parseBytes32(name: string, value: unknown): string {
  if (typeof value !== 'string' || !isHexString(value, 32)) {
    throw new InvalidArgumentError(name, `expected 0x-prefixed 32-byte hex, got ${describe(value)}`);
  }
  return value.toLowerCase();
}

/** Accepts bigint, safe integer numbers and decimal strings; rejects anything out of [0, max]. */
export function parseUint(name: string, value: unknown, max: bigint = MAX_UINT256): bigint {
  let n: bigint;
  if (typeof value === 'bigint') n = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) n = BigInt(value);
  else if (typeof value === 'string' && /^[0-9]{1,78}$/.test(value)) n = BigInt(value);
  else throw new InvalidArgumentError(name, `expected a non-negative integer, got ${describe(value)}`);
  if (n < 0n || n > max) throw new InvalidArgumentError(name, `${n} is outside [0, ${max}]`);
  return n;
}

export function parseSignature(name: string, value: unknown): string {
  if (typeof value !== 'string' || !isHexString(value, 65)) {
    throw new InvalidArgumentError(name, `expected a 65-byte hex signature, got ${describe(value)}`);
  }
  return value.toLowerCase();
}

export function parseVoucher(value: unknown): Voucher {
  const o = asRecord('voucher', value);
  return {
    sessionId: parseBytes32('voucher.sessionId', o.sessionId),
    cumulativeAmount: parseUint('voucher.cumulativeAmount', o.cumulativeAmount),
    cumulativeEnergyMj: parseUint('voucher.cumulativeEnergyMj', o.cumulativeEnergyMj),
  };
}

export function parseSignedVoucher(value: unknown): SignedVoucher {
  const o = asRecord('signed voucher', value);
  return { voucher: parseVoucher(o.voucher), signature: parseSignature('signature', o.signature) };
}

/** A voucher as JSON (bigints as decimal strings), e.g. for the wire or a database. */
export function voucherToJson(v: Voucher): { sessionId: string; cumulativeAmount: string; cumulativeEnergyMj: string } {
  return { sessionId: v.sessionId, cumulativeAmount: v.cumulativeAmount.toString(), cumulativeEnergyMj: v.cumulativeEnergyMj.toString() };
}

export function parseDeployment(value: unknown): Deployment {
  const o = asRecord('deployment', value);
  if (o.format !== 'kinesis-deployment/1') {
    throw new InvalidArgumentError('deployment.format', `expected "kinesis-deployment/1", got ${describe(o.format)}`);
  }
  const int = (k: string, max: number): number => Number(parseUint(`deployment.${k}`, o[k], BigInt(max)));
  if (typeof o.tokenSymbol !== 'string' || o.tokenSymbol.length > 32) {
    throw new InvalidArgumentError('deployment.tokenSymbol', 'expected a string of at most 32 characters');
  }
  if (typeof o.deployedAt !== 'string' || Number.isNaN(Date.parse(o.deployedAt))) {
    throw new InvalidArgumentError('deployment.deployedAt', 'expected an ISO date');
  }
  if (typeof o.testToken !== 'boolean') throw new InvalidArgumentError('deployment.testToken', 'expected a boolean');
  return {
    format: 'kinesis-deployment/1',
    chainId: int('chainId', Number.MAX_SAFE_INTEGER),
    escrow: parseAddress('deployment.escrow', o.escrow),
    token: parseAddress('deployment.token', o.token),
    tokenSymbol: o.tokenSymbol,
    tokenDecimals: int('tokenDecimals', 255),
    closeGrace: int('closeGrace', Number.MAX_SAFE_INTEGER),
    deployer: parseAddress('deployment.deployer', o.deployer),
    blockNumber: int('blockNumber', Number.MAX_SAFE_INTEGER),
    deployedAt: o.deployedAt,
    testToken: o.testToken,
  };
}

function asRecord(name: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(name, `expected an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return value.length > 80 ? `a ${value.length}-character string` : JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null) return 'null';
  return Array.isArray(value) ? 'an array' : typeof value;
}
