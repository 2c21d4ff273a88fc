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
  return hexToBytes(n.toString(16).padStart(64, '0'), 32);
}

type Encoder = (v: unknown) => Uint8Array;

function encoderFor(f: FlatField): Encoder {
  if (f.type === 'string') return (v) => keccak256(te.encode(String(v)));
  if (f.type === 'address')
    return (v) => {
      const out = new Uint8Array(32);
      out.set(hexToBytes(String(v), 20, f.name), 12);
      return out;
    };
  if (f.type === 'bool') return (v) => word(v ? 1n : 0n, 8, f.name);
  if (f.type === 'bytes32') return (v) => hexToBytes(String(v), 32, f.name);
  const m = /^uint(\d+)$/.exec(f.type);
  if (m) {
    const bits = Number(m[1]);
    return (v) => {
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
