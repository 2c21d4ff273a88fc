// EIP-712 hashing for flat structs (https://eips.ethereum.org/EIPS/eip-712), compiled once
// per type: the type hash and each domain separator are computed once, and a message costs
// one keccak per string field plus one for the struct. The receipt digest is on the reply
// path of every execution, where ethers' generic encoder costs milliseconds. Checked
// against ethers' TypedDataEncoder in eip712.test.ts.
import { malformed } from '../errors.ts';
import { hexToBytes, keccak256 } from './secp256k1.ts';

export type FlatFieldType = 'address' | 'string' | 'bool' | 'bytes32' | `uint${number}`;
export interface FlatField { readonly name: string; readonly type: string }

const te = new TextEncoder();

function word(n: bigint, bits: number, field: string): Uint8Array {
  if (n < 0n || n >= 1n << BigInt(bits)) throw malformed(`${field} does not fit uint${bits}`);
  const out = new Uint8Array(32);
  // Big-endian, 8 bits at a time from the low end (no hex string round trip).
  for (let i = 31; i >= 0 && n > 0n; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

type Encoder = (v: unknown) => Uint8Array;

/** At most 15 decimal digits: always below 2^53, so exact as a Number. */
const SMALL_DEC = /^[0-9]{1,15}$/;

function smallWord(x: number): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 31; x > 0; i--) {
    out[i] = x % 256;
    x = Math.floor(x / 256);
  }
  return out;
}

// A receipt repeats most of its string fields (kernel id, method, quality, split, device)
// from one execution to the next, and a keccak is the largest part of hashing one: the
// hashes of recent short strings are kept. Bounded, and cleared whole when full (cheaper
// than LRU bookkeeping on this path; refilling costs one hash per string).
const STRING_HASHES = new Map<string, Uint8Array>();
const STRING_HASHES_MAX = 4096;
const STRING_CACHE_MAX_LENGTH = 256;
// Likewise the word of each recent address (a provider's own, every receipt).
const ADDRESS_WORDS = new Map<string, Uint8Array>();

function hashString(s: string): Uint8Array {
  if (s.length > STRING_CACHE_MAX_LENGTH) return keccak256(te.encode(s));
  let h = STRING_HASHES.get(s);
  if (h === undefined) {
    h = keccak256(te.encode(s));
    if (STRING_HASHES.size >= STRING_HASHES_MAX) STRING_HASHES.clear();
    STRING_HASHES.set(s, h);
  }
  return h;
}

function encoderFor(f: FlatField): Encoder {
  // The cached array is only ever copied out (`buf.set`), never handed to callers.
  if (f.type === 'string') return (v) => hashString(String(v));
  if (f.type === 'address')
    return (v) => {
      const a = String(v);
      let out = ADDRESS_WORDS.get(a);
      if (out === undefined) {
        out = new Uint8Array(32);
        out.set(hexToBytes(a, 20, f.name), 12);
        if (ADDRESS_WORDS.size >= STRING_HASHES_MAX) ADDRESS_WORDS.clear();
        ADDRESS_WORDS.set(a, out);
      }
      return out;
    };
  if (f.type === 'bool') return (v) => word(v ? 1n : 0n, 8, f.name);
  if (f.type === 'bytes32') return (v) => hexToBytes(String(v), 32, f.name);
  const m = /^uint(\d+)$/.exec(f.type);
  if (m) {
    const bits = Number(m[1]);
    return (v) => {
      // Receipt fields are decimal strings that nearly always fit a double exactly: a
      // Number path avoids ~30 BigInt operations per field on the reply path.
      const small = typeof v === 'number' ? (Number.isSafeInteger(v) && v >= 0 ? v : -1) : typeof v === 'string' && SMALL_DEC.test(v) ? Number(v) : -1;
      if (small >= 0 && (bits >= 53 || small < 2 ** bits)) return smallWord(small);
      let n: bigint;
      try {
        n = BigInt(v as string | number | bigint);
      } catch (cause) {
        throw malformed(`${f.name} is not an integer`, cause);
      }
      return word(n, bits, f.name);
    };
  }
  throw new Error(`unsupported EIP-712 field type ${f.type} (flat structs only)`);
}

export interface StructHasher {
  readonly typeHash: Uint8Array;
  hashStruct(message: Readonly<Record<string, unknown>>): Uint8Array;
  /** keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(message)) */
  digest(domainSeparator: Uint8Array, message: Readonly<Record<string, unknown>>): Uint8Array;
}

export function compileStruct(typeName: string, fields: readonly FlatField[]): StructHasher {
  const typeHash = keccak256(te.encode(`${typeName}(${fields.map((f) => `${f.type} ${f.name}`).join(',')})`));
  const encoders = fields.map((f) => [f.name, encoderFor(f)] as const);
  const hashStruct = (message: Readonly<Record<string, unknown>>): Uint8Array => {
    const buf = new Uint8Array(32 * (1 + encoders.length));
    buf.set(typeHash, 0);
    encoders.forEach(([name, enc], i) => buf.set(enc(message[name]), 32 * (i + 1)));
    return keccak256(buf);
  };
  return {
    typeHash,
    hashStruct,
    digest(sep, message) {
      const buf = new Uint8Array(66);
      buf[0] = 0x19;
      buf[1] = 0x01;
      buf.set(sep, 2);
      buf.set(hashStruct(message), 34);
      return keccak256(buf);
    },
  };
}

const DOMAIN_FIELDS: Record<string, string> = { name: 'string', version: 'string', chainId: 'uint256', verifyingContract: 'address', salt: 'bytes32' };

/** The domain separator of `{ name?, version?, chainId?, verifyingContract?, salt? }`, fields in EIP-712 order. */
export function domainSeparator(domain: Readonly<Record<string, unknown>>): Uint8Array {
  const fields = Object.keys(DOMAIN_FIELDS)
    .filter((k) => domain[k] !== undefined && domain[k] !== null)
    .map((k) => ({ name: k, type: DOMAIN_FIELDS[k]! }));
  return compileStruct('EIP712Domain', fields).hashStruct(domain);
}
