// Fast secp256k1 for the per-execution paths (signing each usage receipt on the provider,
// recovering its signer on the gateway). ethers' pure-JS path costs ~1 ms to sign and ~5 ms
// to recover on our 2-core machines, on the reply path of every cell; libsecp256k1
// (the `secp256k1` package's prebuilt native binding, no compiler needed) does each in
// ~0.1 ms. Where the binding cannot load, the package falls back to elliptic (slower, same
// results). Signatures are Ethereum's 65-byte r‖s‖v with v ∈ {27, 28}, low-s (EIP-2).
import secp from 'secp256k1';
import sha3 from 'js-sha3';
import { malformed } from '../errors.ts';

const HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

// No Buffer here: receipts are also checked in the browser (where `secp256k1` resolves to
// its elliptic fallback through the package's "browser" field).
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function hexToBytes(hex: string, expectLen?: number, field = 'hex'): Uint8Array {
  const h = hex.startsWith('0x') ? hex.slice(2) : hex;
  if (h.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(h)) throw malformed(`${field} is not hex`);
  if (expectLen !== undefined && h.length !== expectLen * 2) throw malformed(`${field} must be ${expectLen} bytes`);
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(b: Uint8Array): string {
  let s = '0x';
  for (let i = 0; i < b.length; i++) s += HEX[b[i]!]!;
  return s;
}

// js-sha3's Keccak-f runs ~5× faster than @noble/hashes' here (~5 µs against ~24 µs for a
// short input on this machine; .scratch measurements quoted in docs/metering.md), and a
// receipt costs several hashes on each side. Node's crypto has SHA3-256, whose padding
// differs from Keccak-256 (0x06 against 0x01), so it cannot stand in.
export const keccak256 = (data: Uint8Array): Uint8Array => new Uint8Array(sha3.keccak256.arrayBuffer(data));

function eip55(lower: string): string {
  const hash = bytesToHex(keccak256(new TextEncoder().encode(lower))).slice(2);
  let out = '0x';
  for (let i = 0; i < 40; i++) out += parseInt(hash[i]!, 16) >= 8 ? lower[i]!.toUpperCase() : lower[i]!;
  return out;
}

/** EIP-55 checksummed address of an uncompressed public key (65 bytes, 0x04 ‖ x ‖ y). */
export function publicKeyToAddress(pub: Uint8Array): string {
  return eip55(bytesToHex(keccak256(pub.subarray(1)).subarray(12)).slice(2));
}

// Every receipt names its provider's address, and the few providers a gateway knows repeat
// endlessly: checksums of recent addresses are kept (bounded, cleared whole when full).
const CHECKSUMS = new Map<string, string>();
const CHECKSUMS_MAX = 4096;
const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/;

/**
 * The EIP-55 checksummed form of a 20-byte hex address, as ethers' `getAddress` gives for
 * such input (https://eips.ethereum.org/EIPS/eip-55): all-lower or all-upper hex is
 * accepted; mixed case must already be the correct checksum. Throws a ProtocolError (1007).
 */
export function checksumAddress(address: string): string {
  let out = CHECKSUMS.get(address);
  if (out !== undefined) return out;
  if (!ADDRESS_RE.test(address)) throw malformed('address must be 0x and 40 hex digits');
  const body = address.slice(2);
  out = eip55(body.toLowerCase());
  const mixed = body !== body.toLowerCase() && body !== body.toUpperCase();
  if (mixed && out !== address) throw malformed('address has a bad EIP-55 checksum');
  if (CHECKSUMS.size >= CHECKSUMS_MAX) CHECKSUMS.clear();
  CHECKSUMS.set(address, out);
  return out;
}

/** A signer holding its key bytes; `sign` returns the 65-byte hex signature of a 32-byte digest. */
export interface FastSigner {
  readonly address: string;
  sign(digest: Uint8Array): string;
}

export function fastSigner(privateKeyHex: string): FastSigner {
  const key = hexToBytes(privateKeyHex, 32, 'private key');
  if (!secp.privateKeyVerify(key)) throw malformed('private key is not a valid secp256k1 scalar');
  const address = publicKeyToAddress(secp.publicKeyCreate(key, false));
  return {
    address,
    sign(digest) {
      // libsecp256k1 signs deterministically (RFC 6979) and always returns low-s.
      const { signature, recid } = secp.ecdsaSign(digest, key);
      const out = new Uint8Array(65);
      out.set(signature, 0);
      out[64] = 27 + recid;
      return bytesToHex(out);
    },
  };
}

/**
 * Recovers the signer's checksummed address. Rejects what Ethereum rejects: a malformed
 * signature, v outside {27, 28} (or {0, 1}), and high-s (malleable) signatures.
 */
export function recoverAddressFast(digest: Uint8Array, signatureHex: string): string {
  const sig = hexToBytes(signatureHex, 65, 'signature');
  let v = sig[64]!;
  if (v >= 27) v -= 27;
  if (v !== 0 && v !== 1) throw malformed('signature v must be 27 or 28');
  const s = BigInt(bytesToHex(sig.subarray(32, 64)));
  if (s === 0n || s > HALF_N) throw malformed('signature s is zero or in the upper half of the curve order (malleable)');
  try {
    return publicKeyToAddress(secp.ecdsaRecover(sig.subarray(0, 64), v, digest, false));
  } catch (cause) {
    throw malformed('signature does not recover to a public key', cause);
  }
}
