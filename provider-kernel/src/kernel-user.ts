// Running kernels as a separate Unix user: the strongest isolation this program can set up
// by itself. User code then cannot read the provider's key (0600, owned by the provider's
// user) or other files of the owner. The provider must run as root: when root's child
// switches to a non-zero uid, the kernel clears all its capabilities (capabilities(7),
// "Effect of user ID changes on capabilities"). A non-root provider given CAP_SETUID as an
// *ambient* capability would pass that capability on to every kernel, which could then
// switch back to the provider's user and read the key: that setup is refused.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { RunAs } from './connection.ts';
import { ProviderConfigError } from './errors.ts';

const NAME_RE = /^[a-z_][a-z0-9_-]{0,31}\$?$/i;

function idOf(flag: '-u' | '-g', user: string): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile('id', [flag, '--', user], { timeout: 5000, env: { PATH: '/usr/bin:/bin' } }, (err, stdout) => {
      if (err) return reject(new ProviderConfigError(`no Unix user ${JSON.stringify(user)} on this machine`, { cause: err }));
      const n = Number(stdout.trim());
      if (!Number.isInteger(n) || n < 0) return reject(new ProviderConfigError(`cannot read the id of user ${JSON.stringify(user)}`));
      resolve(n);
    });
  });
}

/** Resolves a user name (or numeric uid) to its uid and primary gid. Refuses root and the provider's own user. */
export async function resolveKernelUser(user: string): Promise<RunAs> {
  if (!NAME_RE.test(user) && !/^[0-9]{1,10}$/.test(user)) throw new ProviderConfigError(`--kernel-user ${JSON.stringify(user)} is not a user name or uid`);
  const [uid, gid] = await Promise.all([idOf('-u', user), idOf('-g', user)]);
  if (uid === 0) throw new ProviderConfigError('kernels must not run as root');
  if (typeof process.getuid === 'function' && uid === process.getuid()) {
    throw new ProviderConfigError(`--kernel-user ${user} is the provider's own user: that separates nothing`);
  }
  checkNoAmbientCapabilities();
  return { uid, gid };
}

/** Refuses a non-root provider that holds ambient capabilities (its kernels would inherit them). */
export function checkNoAmbientCapabilities(status = safeRead('/proc/self/status'), uid = process.getuid?.()): void {
  if (uid === 0 || status === undefined) return;
  const amb = /^CapAmb:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (amb !== undefined && BigInt(`0x${amb}`) !== 0n) {
    throw new ProviderConfigError('--kernel-user needs the provider to run as root: with ambient capabilities every kernel would inherit them', {
      details: 'see "Security" in docs/provider-runbook.md',
    });
  }
}

function safeRead(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
