// Who is at the other end of a local TCP connection? On Linux, /proc answers: the
// connection's socket inode is in /proc/net/tcp (or tcp6), and a process holds it when one of
// its /proc/<pid>/fd links reads `socket:[inode]`.
//
// The provider uses this to authenticate a kernel's iopub connection once, when it is made,
// instead of checking the HMAC of every message on it (docs/protocols.md, "Who may speak for
// a kernel"): when the socket at the kernel's end is held by the kernel process the provider
// launched (or one of its descendants), every byte on the connection was written by that
// process tree, which holds the signing key anyway. Anything else (another OS, a kernel in
// another network namespace, a /proc it may not read, a socket it cannot find) is "not
// verified", and the caller keeps checking signatures. Nothing here ever says yes on doubt.
import { readFile, readdir, readlink } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { endianness } from 'node:os';

export interface TcpEnds {
  /** Our end (the provider's socket). */
  readonly localAddress: string;
  readonly localPort: number;
  /** The kernel's end. */
  readonly remoteAddress: string;
  readonly remotePort: number;
}

export type PeerVerdict = { readonly ok: true; readonly pid: number } | { readonly ok: false; readonly reason: string };

/** The 16 (IPv6) or 4 (IPv4) bytes of an address in text form; undefined when it is neither. */
export function addressBytes(addr: string): Uint8Array | undefined {
  if (isIPv4(addr)) return Uint8Array.from(addr.split('.').map(Number));
  if (!isIPv6(addr)) return undefined;
  let text = addr.replace(/%.*$/, ''); // a zone index is not part of the address
  const tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    tail.push(...v4[1]!.split('.').map(Number));
    text = text.slice(0, -v4[1]!.length) + '0:0'; // two placeholder groups, replaced below
  }
  const [head, rest] = text.includes('::') ? text.split('::') : [text, undefined];
  const groups = (s: string | undefined): string[] => (s ? s.split(':').filter((g) => g !== '') : []);
  const h = groups(head);
  const r = groups(rest);
  const all = rest === undefined ? h : [...h, ...Array<string>(8 - h.length - r.length).fill('0'), ...r];
  if (all.length !== 8) return undefined;
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  if (tail.length === 4) out.set(tail, 12);
  return out;
}

/**
 * An address as /proc/net/tcp{,6} prints it: each 32-bit word of the address in the host's
 * byte order, as %08X.
 */
export function procHex(bytes: Uint8Array, le = endianness() === 'LE'): string {
  let s = '';
  for (let w = 0; w < bytes.length; w += 4) {
    const word = bytes.subarray(w, w + 4);
    const ordered = le ? [word[3]!, word[2]!, word[1]!, word[0]!] : [...word];
    s += ordered.map((b) => b.toString(16).padStart(2, '0')).join('');
  }
  return s.toUpperCase();
}

const portHex = (p: number): string => p.toString(16).toUpperCase().padStart(4, '0');

/** The forms an address may take in /proc/net: [file, hex] pairs (IPv4 also as v4-mapped IPv6). */
function procForms(addr: string, le: boolean): Array<readonly ['tcp' | 'tcp6', string]> {
  const b = addressBytes(addr);
  if (!b) return [];
  if (b.length === 4) {
    const mapped = new Uint8Array(16);
    mapped[10] = mapped[11] = 0xff;
    mapped.set(b, 12);
    return [['tcp', procHex(b, le)], ['tcp6', procHex(mapped, le)]];
  }
  return [['tcp6', procHex(b, le)]];
}

/**
 * The inode of the socket at the far end of an established connection (the one whose local
 * end is `ends.remote…` and whose remote end is `ends.local…`), from /proc/net tables.
 * `tables` maps 'tcp' / 'tcp6' to their text (tests pass their own); undefined: not found.
 */
export function findPeerInode(ends: TcpEnds, tables: Partial<Record<'tcp' | 'tcp6', string>>, le = endianness() === 'LE'): number | undefined {
  const kernelForms = procForms(ends.remoteAddress, le);
  const ourForms = procForms(ends.localAddress, le);
  for (const [file, kernelHex] of kernelForms) {
    const ours = ourForms.find(([f]) => f === file);
    const text = tables[file];
    if (!ours || text === undefined) continue;
    const want = `${kernelHex}:${portHex(ends.remotePort)}`;
    const peer = `${ours[1]}:${portHex(ends.localPort)}`;
    for (const line of text.split('\n')) {
      // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[1] !== want || f[2] !== peer || f[3] !== '01') continue;
      const inode = Number(f[9]);
      if (Number.isSafeInteger(inode) && inode > 0) return inode;
    }
  }
  return undefined;
}

/** pid and its descendants, nearest first (from each process's ppid in /proc/<pid>/stat). */
async function processTree(root: number, proc: string): Promise<number[]> {
  const parentOf = new Map<number, number>();
  for (const name of await readdir(proc)) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`${proc}/${name}/stat`, 'latin1');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (Number.isSafeInteger(ppid)) parentOf.set(Number(name), ppid);
    } catch {
      // gone meanwhile
    }
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) for (const [pid, ppid] of parentOf) if (ppid === tree[i] && !tree.includes(pid)) tree.push(pid);
  return tree;
}

/** Does `pid` hold the socket `inode` among its open files? */
async function holds(pid: number, inode: number, proc: string): Promise<boolean> {
  const want = `socket:[${inode}]`;
  let fds: string[];
  try {
    fds = await readdir(`${proc}/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      if ((await readlink(`${proc}/${pid}/fd/${fd}`)) === want) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

/**
 * Is the far end of this loopback connection a socket held by `rootPid` or one of its
 * descendants? Only loopback connections qualify: a connection that left this machine could
 * end anywhere. Never throws.
 */
export async function verifyLocalPeer(ends: TcpEnds, rootPid: number, proc = '/proc'): Promise<PeerVerdict> {
  try {
    const kernel = addressBytes(ends.remoteAddress);
    const ours = addressBytes(ends.localAddress);
    if (!kernel || !ours) return { ok: false, reason: 'not an IP connection' };
    if (!isLoopback(kernel)) return { ok: false, reason: `the kernel's address ${ends.remoteAddress} is not a loopback address` };
    if (!Number.isSafeInteger(rootPid) || rootPid <= 0) return { ok: false, reason: 'no kernel process' };
    const tables: Partial<Record<'tcp' | 'tcp6', string>> = {};
    for (const f of ['tcp', 'tcp6'] as const) {
      try {
        tables[f] = await readFile(`${proc}/net/${f}`, 'latin1');
      } catch {
        // no IPv6, or no /proc at all (then nothing is found below)
      }
    }
    const inode = findPeerInode(ends, tables);
    if (inode === undefined) return { ok: false, reason: `no established connection ${ends.remoteAddress}:${ends.remotePort} → ${ends.localAddress}:${ends.localPort} in ${proc}/net` };
    if (await holds(rootPid, inode, proc)) return { ok: true, pid: rootPid };
    for (const pid of (await processTree(rootPid, proc)).slice(1)) if (await holds(pid, inode, proc)) return { ok: true, pid };
    return { ok: false, reason: `the kernel's end (socket ${inode}) is not held by kernel process ${rootPid} or its descendants` };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

/** 127.0.0.0/8, ::1, or 127.0.0.0/8 mapped into IPv6. */
function isLoopback(b: Uint8Array): boolean {
  if (b.length === 4) return b[0] === 127;
  const zeros = (from: number, to: number): boolean => b.subarray(from, to).every((x) => x === 0);
  if (zeros(0, 15) && b[15] === 1) return true;
  return zeros(0, 10) && b[10] === 0xff && b[11] === 0xff && b[12] === 127;
}
