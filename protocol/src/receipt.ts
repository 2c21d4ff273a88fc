// Usage receipts: what a provider signs for every metered execution, as EIP-712 typed
// data (https://eips.ethereum.org/EIPS/eip-712), so that the gateway, the IDE and the
// payer can check who vouched for the energy without trusting the carrier.
//
// One receipt covers a contiguous span [fromMs, toMs] of a kernel's life: the energy the
// meter attributed to the kernel in that span, split into lines:
//   energyMj     the execution window [startMs, endMs] of `msgId` (as far as measured),
//   idleEnergyMj the kernel held the device but ran nothing,
//   carriedMj    energy of *earlier* executions (already answered) that was measured only
//                after their receipts were signed (a receipt never holds up a reply).
// The next receipt's `fromMs` equals this one's `toMs`, so the lines of all receipts of a
// kernel add up exactly to the energy metered over its life, and
//   cumulativeEnergyMj(n) = cumulativeEnergyMj(n-1) + energyMj + idleEnergyMj + carriedMj.
//
// Money: cumulativeAmount = floor(cumulativeEnergyMj * pricePerKwh / 3_600_000_000)
// (1 kWh = 3.6e6 J = 3.6e9 mJ; price in token base units per kWh). Rounding is always
// down, and always applied to the cumulative energy, never summed per receipt, so the
// provider is never paid more than its exact due and the shortfall never exceeds one
// base unit over a kernel's whole life.
import type { TypedDataDomain, TypedDataField } from 'ethers';
import { compileStruct, domainSeparator } from './crypto/eip712.ts';
import { bytesToHex, checksumAddress, fastSigner, hexToBytes, recoverAddressFast, type FastSigner } from './crypto/secp256k1.ts';
import { KinesisError, malformed, tooBig } from './errors.ts';
import { oneOf, record, str, uintString, ADDRESS_RE } from './validate.ts';

export const RECEIPT_DOMAIN_NAME = 'KinesisReceipt';
export const RECEIPT_DOMAIN_VERSION = '1';
/** Millijoules in one kilowatt-hour: 1000 W × 3600 s × 1000 mJ/J. */
export const MJ_PER_KWH = 3_600_000_000n;
/** A signed receipt as JSON is a few hundred bytes; anything far larger is refused unparsed. */
export const MAX_RECEIPT_JSON_BYTES = 8192;
/**
 * Allowance, in mJ, on the power-cap check `total ≤ powerCapMw × (toMs − fromMs) / 1000`:
 * the meter interpolates a counter between samples and splits shared devices in whole
 * millijoules, which can put a span's share up to 3 mJ above its exact value.
 */
export const CAP_SLACK_MJ = 3n;

/** How the energy was obtained. Never a GPU method on a machine without one. */
export const RECEIPT_METHODS = ['nvml-counter', 'nvml-power', 'amdgpu-energy', 'amdgpu-power', 'rapl', 'estimate', 'none'] as const;
export type ReceiptMethod = (typeof RECEIPT_METHODS)[number];

/**
 * measured: a hardware energy counter over a window at least as long as its update period.
 * measured-short: the same, but the window is shorter than the counter's update period
 *   (or two power samples), so its split across windows is interpolated.
 * vendor-modelled: the vendor's own model of energy (RAPL on most parts, instant power).
 * estimated: our estimate (configured package power × CPU time); no energy was measured.
 */
export const RECEIPT_QUALITIES = ['measured', 'measured-short', 'vendor-modelled', 'estimated'] as const;
export type ReceiptQuality = (typeof RECEIPT_QUALITIES)[number];

/** How energy was divided when the device was shared during the receipt's span. */
export const RECEIPT_SPLITS = ['exclusive', 'shared-equal', 'shared-gpu-util', 'shared-cpu-time'] as const;
export type ReceiptSplit = (typeof RECEIPT_SPLITS)[number];

/** EIP-712 struct. Field order is part of the type hash: never reorder, add a version. */
export const RECEIPT_TYPES: Record<string, TypedDataField[]> = {
  UsageReceipt: [
    { name: 'provider', type: 'address' },
    { name: 'kernelId', type: 'string' },
    { name: 'msgId', type: 'string' },
    { name: 'seq', type: 'uint64' },
    { name: 'fromMs', type: 'uint64' },
    { name: 'toMs', type: 'uint64' },
    { name: 'startMs', type: 'uint64' },
    { name: 'endMs', type: 'uint64' },
    { name: 'energyMj', type: 'uint256' },
    { name: 'idleEnergyMj', type: 'uint256' },
    { name: 'carriedMj', type: 'uint256' },
    { name: 'uncertaintyMj', type: 'uint256' },
    { name: 'method', type: 'string' },
    { name: 'quality', type: 'string' },
    { name: 'split', type: 'string' },
    { name: 'device', type: 'string' },
    { name: 'powerCapMw', type: 'uint256' },
    { name: 'pricePerKwh', type: 'uint256' },
    { name: 'cumulativeEnergyMj', type: 'uint256' },
    { name: 'cumulativeAmount', type: 'uint256' },
  ],
};

/** Integers travel as decimal strings (uint64 / uint256 do not fit a JSON number). */
export type DecString = string;

export interface UsageReceipt {
  /** The provider's address (EIP-55 checksummed); must equal the signer. */
  readonly provider: string;
  readonly kernelId: string;
  /** The `execute_request` msg_id; '' for a closing receipt that only settles idle/tail energy. */
  readonly msgId: string;
  /** 1, 2, 3, … per kernel, no gaps. */
  readonly seq: DecString;
  /** Span covered, Unix ms; fromMs equals the previous receipt's toMs. */
  readonly fromMs: DecString;
  readonly toMs: DecString;
  /** The execution window (busy → idle), Unix ms; equal to each other on a closing receipt. */
  readonly startMs: DecString;
  readonly endMs: DecString;
  readonly energyMj: DecString;
  readonly idleEnergyMj: DecString;
  readonly carriedMj: DecString;
  /** Absolute uncertainty of energyMj + idleEnergyMj + carriedMj (one sigma-ish bound). */
  readonly uncertaintyMj: DecString;
  readonly method: ReceiptMethod;
  readonly quality: ReceiptQuality;
  readonly split: ReceiptSplit;
  /** e.g. `nvidia:0:NVIDIA H100 80GB HBM3` or `cpu:Intel(R) Xeon(R)`. */
  readonly device: string;
  /** The power limit the readings were capped at, milliwatts. */
  readonly powerCapMw: DecString;
  /** Token base units per kWh. */
  readonly pricePerKwh: DecString;
  readonly cumulativeEnergyMj: DecString;
  readonly cumulativeAmount: DecString;
}

export interface SignedReceipt {
  readonly message: UsageReceipt;
  /** 65-byte r‖s‖v hex signature over the EIP-712 digest. */
  readonly signature: string;
}

/** Something that can sign a digest synchronously: an ethers `Wallet` (or its signingKey). */
export interface DigestSigner {
  readonly address: string;
  readonly signingKey: { sign(digest: string): { serialized: string } };
}

export function receiptDomain(chainId: bigint | number): TypedDataDomain {
  return { name: RECEIPT_DOMAIN_NAME, version: RECEIPT_DOMAIN_VERSION, chainId: BigInt(chainId) };
}

/** The one conversion from energy to money. Apply it to cumulative energy only. */
export function amountForEnergy(cumulativeEnergyMj: bigint, pricePerKwh: bigint): bigint {
  if (cumulativeEnergyMj < 0n || pricePerKwh < 0n) throw new KinesisError('energy and price must be non-negative');
  return (cumulativeEnergyMj * pricePerKwh) / MJ_PER_KWH; // bigint division truncates = floor for ≥ 0
}

// The struct hasher and each chain's domain separator are built once: the digest is on the
// reply path of every execution. Equal to TypedDataEncoder.hash(domain, types, msg)
// (crypto/eip712.test.ts, and receipt.test.ts against ethers' signTypedData).
const HASHER = compileStruct('UsageReceipt', RECEIPT_TYPES['UsageReceipt']!);
const DOMAIN_SEPARATORS = new Map<bigint, Uint8Array>();

function receiptDigestBytes(message: UsageReceipt, chainId: bigint | number): Uint8Array {
  const id = BigInt(chainId);
  let sep = DOMAIN_SEPARATORS.get(id);
  if (sep === undefined) {
    sep = domainSeparator(receiptDomain(id) as Record<string, unknown>);
    if (DOMAIN_SEPARATORS.size < 64) DOMAIN_SEPARATORS.set(id, sep);
  }
  return HASHER.digest(sep, message as unknown as Record<string, unknown>);
}

export function receiptDigest(message: UsageReceipt, chainId: bigint | number): string {
  return bytesToHex(receiptDigestBytes(message, chainId));
}

// A wallet's key is turned into a native signer once (libsecp256k1, ~0.1 ms a signature
// against ~1 ms through ethers' JS); keyed by the wallet object, so keys are never copied
// into a long-lived map of strings.
const FAST_SIGNERS = new WeakMap<object, FastSigner>();

function nativeSigner(signer: DigestSigner): FastSigner | undefined {
  const key = (signer as { privateKey?: unknown }).privateKey;
  if (typeof key !== 'string') return undefined;
  let f = FAST_SIGNERS.get(signer);
  if (!f) {
    f = fastSigner(key);
    FAST_SIGNERS.set(signer, f);
  }
  return f;
}

/**
 * Signs synchronously (keccak + secp256k1, ~0.1 ms with a wallet's key) so that the meter
 * can hand a receipt to the reply path without an await on a provider. Equivalent to
 * `wallet.signTypedData(receiptDomain(chainId), RECEIPT_TYPES, message)`.
 */
export function signReceipt(signer: DigestSigner, message: UsageReceipt, chainId: bigint | number): SignedReceipt {
  const checked = validateReceipt(message);
  if (checksumAddress(signer.address) !== checked.provider) {
    throw new KinesisError('receipt provider is not the signer', { details: `${checked.provider} vs ${signer.address}` });
  }
  const digest = receiptDigestBytes(checked, chainId);
  const fast = nativeSigner(signer);
  const signature = fast ? fast.sign(digest) : signer.signingKey.sign(bytesToHex(digest)).serialized;
  return { message: checked, signature };
}

/** Returns the address that signed; throws a ProtocolError for a malformed, malleable (high-s) or unrecoverable signature. */
export function recoverReceiptSigner(signed: SignedReceipt, chainId: bigint | number): string {
  hexToBytes(signed.signature, 65, 'receipt signature');
  return recoverAddressFast(receiptDigestBytes(signed.message, chainId), signed.signature);
}

/** Validates the receipt, then returns the recovered signer (checksummed). */
export function verifyReceipt(signed: unknown, chainId: bigint | number): { receipt: SignedReceipt; signer: string } {
  const receipt = validateSignedReceipt(signed);
  return { receipt, signer: recoverReceiptSigner(receipt, chainId) };
}

/** Parses receipt JSON from an untrusted peer, refusing oversize text before parsing. */
export function parseSignedReceipt(text: string): SignedReceipt {
  // Length in UTF-16 units bounds UTF-8 bytes from below, so check it before encoding.
  if (text.length > MAX_RECEIPT_JSON_BYTES) throw tooBig(text.length, MAX_RECEIPT_JSON_BYTES);
  const bytes = new TextEncoder().encode(text).length; // works in the browser too (no Buffer)
  if (bytes > MAX_RECEIPT_JSON_BYTES) throw tooBig(bytes, MAX_RECEIPT_JSON_BYTES);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (cause) {
    throw malformed('receipt is not valid JSON', cause);
  }
  return validateSignedReceipt(v);
}

export function validateSignedReceipt(v: unknown): SignedReceipt {
  const r = record(v, 'receipt');
  exactKeys(r, ['message', 'signature'], 'receipt');
  const signature = str(r.signature, 'receipt.signature', { re: /^0x[0-9a-fA-F]{130}$/ });
  return { message: validateReceipt(r.message), signature };
}

const UINT64_MAX = (1n << 64n) - 1n;
const UINT256_MAX = (1n << 256n) - 1n;
const ID_RE = /^[\x21-\x7e]{1,256}$/; // printable ASCII, no spaces: ids are UUIDs or similar
const FIELD_NAMES = RECEIPT_TYPES.UsageReceipt!.map((f) => f.name);

/**
 * Strict check of an untrusted receipt message: exact key set, every integer a canonical
 * decimal string in its Solidity type's range, enums, and the receipt's own arithmetic
 * (ordered times, cumulative amount equal to the exact conversion). Throws ProtocolError.
 */
export function validateReceipt(v: unknown): UsageReceipt {
  const r = record(v, 'receipt.message');
  exactKeys(r, FIELD_NAMES, 'receipt.message');
  const u64 = (k: string): DecString => uintIn(r[k], `receipt.message.${k}`, UINT64_MAX);
  const u256 = (k: string): DecString => uintIn(r[k], `receipt.message.${k}`, UINT256_MAX);
  const providerRaw = str(r.provider, 'receipt.message.provider', { re: ADDRESS_RE });
  let provider: string;
  try {
    provider = checksumAddress(providerRaw); // also rejects a wrong mixed-case checksum
  } catch (cause) {
    throw malformed('receipt.message.provider has a bad checksum', cause);
  }
  const msg: UsageReceipt = {
    provider,
    kernelId: str(r.kernelId, 'receipt.message.kernelId', { re: ID_RE }),
    msgId: str(r.msgId, 'receipt.message.msgId', { max: 256, re: /^[\x21-\x7e]*$/ }),
    seq: u64('seq'),
    fromMs: u64('fromMs'),
    toMs: u64('toMs'),
    startMs: u64('startMs'),
    endMs: u64('endMs'),
    energyMj: u256('energyMj'),
    idleEnergyMj: u256('idleEnergyMj'),
    carriedMj: u256('carriedMj'),
    uncertaintyMj: u256('uncertaintyMj'),
    method: oneOf(r.method, 'receipt.message.method', RECEIPT_METHODS),
    quality: oneOf(r.quality, 'receipt.message.quality', RECEIPT_QUALITIES),
    split: oneOf(r.split, 'receipt.message.split', RECEIPT_SPLITS),
    device: str(r.device, 'receipt.message.device', { min: 1, max: 256, re: /^[\x20-\x7e]+$/ }),
    powerCapMw: u256('powerCapMw'),
    pricePerKwh: u256('pricePerKwh'),
    cumulativeEnergyMj: u256('cumulativeEnergyMj'),
    cumulativeAmount: u256('cumulativeAmount'),
  };
  if (BigInt(msg.seq) < 1n) throw malformed('receipt.message.seq starts at 1');
  if (BigInt(msg.fromMs) > BigInt(msg.toMs)) throw malformed('receipt.message.fromMs is after toMs');
  if (BigInt(msg.startMs) > BigInt(msg.endMs)) throw malformed('receipt.message.startMs is after endMs');
  const lines = BigInt(msg.energyMj) + BigInt(msg.idleEnergyMj) + BigInt(msg.carriedMj);
  if (lines > BigInt(msg.cumulativeEnergyMj)) throw malformed('receipt.message energy lines exceed cumulativeEnergyMj');
  const due = amountForEnergy(BigInt(msg.cumulativeEnergyMj), BigInt(msg.pricePerKwh));
  if (due !== BigInt(msg.cumulativeAmount)) {
    throw malformed(`receipt.message.cumulativeAmount must be floor(cumulativeEnergyMj × pricePerKwh / ${MJ_PER_KWH}) = ${due}`);
  }
  return msg;
}

/**
 * Delivery. The provider puts the receipt in `execute_reply` at `metadata.kinesis.receipt`
 * and sends it to clients as an iopub message of this type, whose parent_header is the
 * `execute_request` (Jupyter clients ignore iopub types they do not know). The gateway
 * adds its verdict to both before passing them on, so a client learns of a rejection.
 */
export const USAGE_MSG_TYPE = 'kinesis_usage';
export const RECEIPT_METADATA_KEY = 'kinesis';

export interface ReceiptVerdict {
  readonly accepted: boolean;
  /** The ledger's reject reason (`sequence`, `bad-signature`, …) when not accepted. */
  readonly reason?: string;
  readonly detail?: string;
}

/** Content of a `kinesis_usage` iopub message, and of `metadata.kinesis` in an execute_reply. */
export interface UsageNotice {
  readonly receipt: SignedReceipt;
  readonly verdict?: ReceiptVerdict;
}

export function validateUsageNotice(v: unknown): UsageNotice {
  const r = record(v, 'usage');
  exactKeys(r, r.verdict === undefined ? ['receipt'] : ['receipt', 'verdict'], 'usage');
  const receipt = validateSignedReceipt(r.receipt);
  if (r.verdict === undefined) return { receipt };
  const d = record(r.verdict, 'usage.verdict');
  for (const k of Object.keys(d)) if (!['accepted', 'reason', 'detail'].includes(k)) throw malformed('usage.verdict has an unknown field');
  if (typeof d.accepted !== 'boolean') throw malformed('usage.verdict.accepted must be a boolean');
  const verdict: { accepted: boolean; reason?: string; detail?: string } = { accepted: d.accepted };
  if (d.reason !== undefined) verdict.reason = str(d.reason, 'usage.verdict.reason', { max: 64 });
  if (d.detail !== undefined) verdict.detail = str(d.detail, 'usage.verdict.detail', { max: 1000 });
  return { receipt, verdict };
}

/** Total energy a receipt bills: its three lines. */
export function receiptTotalMj(m: UsageReceipt): bigint {
  return BigInt(m.energyMj) + BigInt(m.idleEnergyMj) + BigInt(m.carriedMj);
}

/** The power-cap bound for a receipt's span, with the documented rounding allowance. */
export function receiptCapMj(m: UsageReceipt): bigint {
  return (BigInt(m.powerCapMw) * (BigInt(m.toMs) - BigInt(m.fromMs))) / 1000n + CAP_SLACK_MJ;
}

function uintIn(v: unknown, field: string, max: bigint): DecString {
  const s = uintString(v, field);
  if (BigInt(s) > max) throw malformed(`${field} is out of range`);
  return s;
}

function exactKeys(r: Record<string, unknown>, keys: readonly string[], field: string): void {
  for (const k of Object.keys(r)) if (!keys.includes(k)) throw malformed(`${field} has an unknown field ${JSON.stringify(k.slice(0, 64))}`);
  for (const k of keys) if (!(k in r)) throw malformed(`${field}.${k} is missing`);
}
