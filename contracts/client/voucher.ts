// Cumulative vouchers as EIP-712 typed data (https://eips.ethereum.org/EIPS/eip-712), exactly as
// KinesisEscrow verifies them: primary type
//   Voucher(bytes32 sessionId,uint256 cumulativeAmount,uint256 cumulativeEnergyMj)
// in the domain { name: "KinesisEscrow", version: "1", chainId, verifyingContract }.
// Pure: runs in the browser, the gateway and the provider alike.
import { TypedDataEncoder, recoverAddress, type TypedDataDomain } from 'ethers';
import { VoucherError } from './errors.ts';
import {
  MAX_CAP,
  MAX_ENERGY_MJ,
  ZERO_ADDRESS,
  parseAddress,
  parseSignature,
  parseUint,
  parseVoucher,
  type Session,
  type SignedVoucher,
  type Voucher,
} from './types.ts';

export const VOUCHER_TYPES = {
  Voucher: [
    { name: 'sessionId', type: 'bytes32' },
    { name: 'cumulativeAmount', type: 'uint256' },
    { name: 'cumulativeEnergyMj', type: 'uint256' },
  ],
} as const;

/** secp256k1 group order; signatures with s > n/2 are the malleable twin (EIP-2). */
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

export interface EscrowDomain {
  readonly chainId: bigint;
  readonly verifyingContract: string;
}

export function escrowDomain(chainId: bigint | number, escrow: string): EscrowDomain {
  return { chainId: parseUint('chainId', chainId), verifyingContract: parseAddress('escrow', escrow) };
}

function typedDomain(d: EscrowDomain): TypedDataDomain {
  return { name: 'KinesisEscrow', version: '1', chainId: d.chainId, verifyingContract: d.verifyingContract };
}

function typedValue(v: Voucher): Record<string, unknown> {
  return { sessionId: v.sessionId, cumulativeAmount: v.cumulativeAmount, cumulativeEnergyMj: v.cumulativeEnergyMj };
}

/** The digest the contract's `hashVoucher` returns and signatures sign. */
export function hashVoucher(domain: EscrowDomain, voucher: Voucher): string {
  const v = parseVoucher(voucher);
  return TypedDataEncoder.hash(typedDomain(domain), VOUCHER_TYPES as never, typedValue(v));
}

/** Anything that can sign EIP-712 data: an ethers Wallet, a JsonRpcSigner (browser wallet). */
export interface TypedDataSigner {
  signTypedData(domain: TypedDataDomain, types: Record<string, { name: string; type: string }[]>, value: Record<string, unknown>): Promise<string>;
}

export async function signVoucher(signer: TypedDataSigner, domain: EscrowDomain, voucher: Voucher): Promise<SignedVoucher> {
  const v = parseVoucher(voucher);
  if (v.cumulativeEnergyMj > MAX_ENERGY_MJ) {
    throw new VoucherError('out-of-range', `cumulativeEnergyMj ${v.cumulativeEnergyMj} exceeds the escrow's 96-bit limit`);
  }
  if (v.cumulativeAmount > MAX_CAP) throw new VoucherError('out-of-range', `cumulativeAmount ${v.cumulativeAmount} exceeds any cap`);
  const types = { Voucher: VOUCHER_TYPES.Voucher.map((f) => ({ ...f })) };
  const raw = await signer.signTypedData(typedDomain(domain), types, typedValue(v));
  return { voucher: v, signature: canonicalSignature(raw) };
}

/**
 * Some wallets return v in {0, 1} or (rarely) the high-s twin; the escrow only accepts
 * v ∈ {27, 28} with s ≤ n/2 (EIP-2), so rewrite to that form: (r, n − s, v ^ 1) is the same
 * signature.
 */
export function canonicalSignature(raw: string): string {
  const sig = parseSignature('signature', raw);
  const r = sig.slice(2, 66);
  let s = BigInt(`0x${sig.slice(66, 130)}`);
  let v = Number.parseInt(sig.slice(130, 132), 16);
  if (v < 27) v += 27;
  if (v !== 27 && v !== 28) throw new VoucherError('bad-signature', `signature v must be 0, 1, 27 or 28, got ${v}`);
  if (s > SECP256K1_N / 2n) {
    s = SECP256K1_N - s;
    v = v === 27 ? 28 : 27;
  }
  return `0x${r}${s.toString(16).padStart(64, '0')}${v.toString(16)}`;
}

/**
 * Recovers who signed a voucher. Rejects what the contract rejects: anything but 65 bytes, and
 * high-s signatures (OpenZeppelin ECDSA.tryRecover).
 */
export function recoverVoucherSigner(domain: EscrowDomain, voucher: Voucher, signature: string): string {
  let sig: string;
  try {
    sig = parseSignature('signature', signature);
  } catch (cause) {
    throw new VoucherError('bad-signature', 'not a 65-byte signature', { cause });
  }
  const s = BigInt(`0x${sig.slice(66, 130)}`);
  if (s > SECP256K1_N / 2n) throw new VoucherError('malleable-signature', 'signature has a high s value');
  const v = Number.parseInt(sig.slice(130, 132), 16);
  if (v !== 27 && v !== 28) throw new VoucherError('bad-signature', `signature v must be 27 or 28, got ${v}`);
  try {
    return recoverAddress(hashVoucher(domain, voucher), sig);
  } catch (cause) {
    throw new VoucherError('bad-signature', 'signature does not recover to an address', { cause });
  }
}

export interface VerifiedVoucher {
  readonly signer: string;
  /** What a claim of this voucher would pay now: cumulativeAmount − session.claimed. */
  readonly increment: bigint;
}

/**
 * Checks a voucher against a session as the contract's `claim` would, without a transaction.
 * `session` is what `EscrowClient.getSession` returned, or a provider's own record of it with
 * `claimed` raised to the highest voucher it already holds.
 */
export function verifyVoucher(domain: EscrowDomain, session: Session, signed: SignedVoucher): VerifiedVoucher {
  const v = parseVoucher(signed.voucher);
  if (v.sessionId !== session.sessionId.toLowerCase()) {
    throw new VoucherError('wrong-session', `voucher is for ${v.sessionId}, not ${session.sessionId}`);
  }
  if (session.closed) throw new VoucherError('session-closed', `session ${session.sessionId} is closed`);
  if (v.cumulativeAmount <= session.claimed) {
    throw new VoucherError('not-increasing', `cumulative ${v.cumulativeAmount} ≤ already claimed ${session.claimed}`);
  }
  if (v.cumulativeAmount > session.cap) {
    throw new VoucherError('over-cap', `cumulative ${v.cumulativeAmount} > cap ${session.cap}`);
  }
  if (v.cumulativeEnergyMj < session.claimedEnergyMj) {
    throw new VoucherError('energy-decreased', `energy ${v.cumulativeEnergyMj} < ${session.claimedEnergyMj} mJ`);
  }
  if (v.cumulativeEnergyMj > MAX_ENERGY_MJ) throw new VoucherError('out-of-range', 'energy exceeds 96 bits');
  const signer = recoverVoucherSigner(domain, v, signed.signature);
  const allowed = [session.payer, session.signer].filter((a) => a !== ZERO_ADDRESS).map((a) => a.toLowerCase());
  if (!allowed.includes(signer.toLowerCase())) {
    throw new VoucherError('unauthorized-signer', `signed by ${signer}, expected the payer or the session key`);
  }
  return { signer, increment: v.cumulativeAmount - session.claimed };
}
