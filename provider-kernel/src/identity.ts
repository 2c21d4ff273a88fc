// The provider's identity: one secp256k1 key, created on first run in
// <dataDir>/provider-key.json with mode 0600. The provider id on the gateway IS the key's
// address; the provider proves it by an EIP-191 personal_sign of the gateway's challenge
// (docs/protocols.md, "Handshake and identity").
//
// The key is stored unencrypted because the daemon must start unattended; the file
// permissions are the protection, so a key file that group or others can read is refused
// rather than silently used (ssh does the same with private keys).
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { Wallet, isHexString } from 'ethers';
import { ProviderConfigError } from './errors.ts';
import { isRecord } from '@kinesis/protocol/validate';

export const KEY_FILE = 'provider-key.json';
const MAX_KEY_FILE = 4096;

export interface ProviderIdentity {
  readonly address: string;
  /** EIP-191 personal_sign of `text`. */
  signText(text: string): Promise<string>;
  /** The wallet, for the meter (receipts) and the payout client. Never log it. */
  readonly wallet: Wallet;
}

/** Creates the data directory (0700) if needed and checks it is not writable by others. */
export async function ensureDataDir(dataDir: string): Promise<string> {
  const dir = path.resolve(dataDir);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await fs.stat(dir);
  if (!st.isDirectory()) throw new ProviderConfigError(`data dir ${dir} is not a directory`);
  if ((st.mode & 0o022) !== 0) {
    throw new ProviderConfigError(`data dir ${dir} is writable by group or others (mode ${modeText(st.mode)})`, {
      details: `run: chmod 700 ${dir}`,
    });
  }
  return dir;
}

/** Loads <dataDir>/provider-key.json, creating it on first run. */
export async function loadOrCreateIdentity(dataDir: string): Promise<ProviderIdentity> {
  const dir = await ensureDataDir(dataDir);
  const file = path.join(dir, KEY_FILE);
  let wallet: Wallet;
  try {
    wallet = await readKeyFile(file);
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw e;
    try {
      wallet = await createKeyFile(file);
    } catch (e2) {
      // Another provider process created it between our read and our create: use theirs.
      if (errno(e2) !== 'EEXIST') throw e2;
      wallet = await readKeyFile(file);
    }
  }
  return {
    address: wallet.address,
    wallet,
    signText: (text) => wallet.signMessage(text),
  };
}

async function readKeyFile(file: string): Promise<Wallet> {
  // Open without following a symlink: a link planted in the data dir must not make us read
  // (or later trust) some other file.
  const fh = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ProviderConfigError(`key file ${file} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      throw new ProviderConfigError(`key file ${file} is readable or writable by others (mode ${modeText(st.mode)}); refusing to use it`, {
        details: `run: chmod 600 ${file}`,
      });
    }
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
      throw new ProviderConfigError(`key file ${file} belongs to uid ${st.uid}, not to this user`);
    }
    if (st.size > MAX_KEY_FILE) throw new ProviderConfigError(`key file ${file} is too large to be a key file`);
    const text = await fh.readFile('utf8');
    return parseKeyFile(text, file);
  } finally {
    await fh.close();
  }
}

export function parseKeyFile(text: string, file = KEY_FILE): Wallet {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (cause) {
    throw new ProviderConfigError(`key file ${file} is not valid JSON`, { cause });
  }
  if (!isRecord(v) || v['version'] !== 1) throw new ProviderConfigError(`key file ${file} has an unknown format (expected version 1)`);
  const pk = v['privateKey'];
  if (typeof pk !== 'string' || !isHexString(pk, 32)) throw new ProviderConfigError(`key file ${file} has no valid privateKey`);
  let wallet: Wallet;
  try {
    wallet = new Wallet(pk);
  } catch (cause) {
    throw new ProviderConfigError(`key file ${file} holds an invalid secp256k1 key`, { cause });
  }
  if (typeof v['address'] === 'string' && v['address'].toLowerCase() !== wallet.address.toLowerCase()) {
    throw new ProviderConfigError(`key file ${file} names address ${v['address']} but its key is ${wallet.address}`);
  }
  return wallet;
}

async function createKeyFile(file: string): Promise<Wallet> {
  const w = Wallet.createRandom();
  const body = `${JSON.stringify({ version: 1, address: w.address, privateKey: w.privateKey }, null, 2)}\n`;
  // O_EXCL: two providers started at once on one data dir must not overwrite each other's key.
  const fh = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await fh.chmod(0o600); // the umask cannot widen it, but be explicit
    await fh.writeFile(body, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  return new Wallet(w.privateKey);
}

function errno(e: unknown): string | undefined {
  return e instanceof Error ? (e as NodeJS.ErrnoException).code : undefined;
}

function modeText(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}
