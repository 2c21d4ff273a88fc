// Connection files: how a Jupyter kernel learns its five ports and its HMAC key.
// Spec: https://jupyter-client.readthedocs.io/en/stable/kernels.html#connection-files
// Ports are random free ports on 127.0.0.1 (the kernel is never reachable from the
// network); the key is 32 random bytes, hex; the file lives in a 0700 directory with mode
// 0600 and is removed when the kernel is gone.
import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface ConnectionInfo {
  readonly transport: 'tcp';
  readonly ip: '127.0.0.1';
  readonly shell_port: number;
  readonly iopub_port: number;
  readonly stdin_port: number;
  readonly control_port: number;
  readonly hb_port: number;
  readonly key: string;
  readonly signature_scheme: 'hmac-sha256';
  readonly kernel_name: string;
}

/**
 * Asks the OS for `n` distinct free ports by binding them all at once, then releases them.
 * There is a window in which another process could take one; jupyter_client accepts the same
 * race, and a kernel that cannot bind dies at once, which the caller sees and retries.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      servers.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve());
      });
      ports.push((s.address() as net.AddressInfo).port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

export async function newConnectionInfo(kernelName: string): Promise<ConnectionInfo> {
  const [shell, iopub, stdin, control, hb] = (await freePorts(5)) as [number, number, number, number, number];
  return {
    transport: 'tcp',
    ip: '127.0.0.1',
    shell_port: shell,
    iopub_port: iopub,
    stdin_port: stdin,
    control_port: control,
    hb_port: hb,
    key: randomBytes(32).toString('hex'),
    signature_scheme: 'hmac-sha256',
    kernel_name: kernelName,
  };
}

/** The Unix user kernels run as, when it is not the provider's own. */
export interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

/**
 * Creates `dir` with `mode` (default 0700) and sets that mode if it already existed. 0711 lets
 * a kernel running as another user pass through to its own dir without listing the others.
 */
export async function privateDir(dir: string, mode = 0o700): Promise<string> {
  await fs.mkdir(dir, { recursive: true, mode });
  await fs.chmod(dir, mode);
  return dir;
}

/** Writes the connection file (0600); owned by `owner` when kernels run as another user. */
export async function writeConnectionFile(runtimeDir: string, kernelId: string, info: ConnectionInfo, owner?: RunAs): Promise<string> {
  await privateDir(runtimeDir, owner ? 0o711 : 0o700);
  const file = path.join(runtimeDir, `kernel-${kernelId}.json`);
  await fs.rm(file, { force: true });
  const fh = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await fh.writeFile(JSON.stringify(info, null, 1), 'utf8');
    if (owner) await fh.chown(owner.uid, owner.gid);
  } finally {
    await fh.close();
  }
  return file;
}

export function zmqUrl(info: ConnectionInfo, port: number): string {
  return `${info.transport}://${info.ip}:${port}`;
}
