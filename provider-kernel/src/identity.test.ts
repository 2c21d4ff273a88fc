import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { verifyMessage } from 'ethers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { authText } from '@kinesis/protocol/tunnel';
import { ProviderConfigError } from './errors.ts';
import { KEY_FILE, loadOrCreateIdentity } from './identity.ts';

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kinesis-id-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('provider identity', () => {
  it('creates a 0600 key file on first run and loads the same key after', async () => {
    const data = path.join(dir, 'data');
    const a = await loadOrCreateIdentity(data);
    const st = await fs.stat(path.join(data, KEY_FILE));
    expect(st.mode & 0o777).toBe(0o600);
    expect((await fs.stat(data)).mode & 0o777).toBe(0o700);
    const b = await loadOrCreateIdentity(data);
    expect(b.address).toBe(a.address);
    expect(a.address).toMatch(/^0x[0-9a-fA-F]{40}$/);
  });

  it('proves itself by personal_sign of the challenge text', async () => {
    const id = await loadOrCreateIdentity(dir);
    const text = authText('gw-1', 'ab'.repeat(32));
    const sig = await id.signText(text);
    expect(verifyMessage(text, sig)).toBe(id.address);
    expect(verifyMessage(authText('gw-2', 'ab'.repeat(32)), sig)).not.toBe(id.address);
  });

  it('refuses a key file that others can read', async () => {
    await loadOrCreateIdentity(dir);
    await fs.chmod(path.join(dir, KEY_FILE), 0o644);
    await expect(loadOrCreateIdentity(dir)).rejects.toThrow(/readable or writable by others/);
    await fs.chmod(path.join(dir, KEY_FILE), 0o640);
    await expect(loadOrCreateIdentity(dir)).rejects.toBeInstanceOf(ProviderConfigError);
  });

  it('refuses a data dir others can write, a symlinked key, and a corrupt key', async () => {
    await fs.chmod(dir, 0o777);
    await expect(loadOrCreateIdentity(dir)).rejects.toThrow(/writable by group or others/);
    await fs.chmod(dir, 0o700);
    const other = path.join(dir, 'elsewhere.json');
    await fs.writeFile(other, '{}', { mode: 0o600 });
    await fs.symlink(other, path.join(dir, KEY_FILE));
    await expect(loadOrCreateIdentity(dir)).rejects.toThrow();
    await fs.rm(path.join(dir, KEY_FILE));
    await fs.writeFile(path.join(dir, KEY_FILE), '{"version":1,"privateKey":"0x1234"}', { mode: 0o600 });
    await expect(loadOrCreateIdentity(dir)).rejects.toThrow(/no valid privateKey/);
    await fs.writeFile(path.join(dir, KEY_FILE), 'not json', { mode: 0o600 });
    await expect(loadOrCreateIdentity(dir)).rejects.toThrow(/not valid JSON/);
  });

  it('two providers starting at once on one data dir end up with one key', async () => {
    const [a, b] = await Promise.all([loadOrCreateIdentity(dir), loadOrCreateIdentity(dir)]);
    expect(a.address).toBe(b.address);
  });
});
