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

/** One socket of /proc/net/tcp{,6}: its two ends as `a.b.c.d:port` (IPv4-mapped IPv6 as IPv4), state, inode. */
export interface TcpSocket {
  readonly local: string;
  readonly remote: string;
  /** Two hex digits: 01 established, 0A listening... */
  readonly state: string;
  readonly inode: number;
}

/** An address as bytes in network order, IPv4-mapped IPv6 as IPv4 (so both tables compare alike). */
function canonical(b: Uint8Array): string {
  const mapped = b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  const v = mapped ? b.subarray(12) : b;
  return v.length === 4 ? [...v].join('.') : [...v].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/** `addr:port` of an address as Node gives it, in the form parseTcpTable uses; undefined when it is not an IP address. */
export function endKey(addr: string, port: number): string | undefined {
  const b = addressBytes(addr);
  return b ? `${canonical(b)}:${port}` : undefined;
}

/** /proc/net prints each 32-bit word of an address in host order (procHex); back to bytes in network order. */
function fromProcHex(hex: string, le: boolean): Uint8Array | undefined {
  if ((hex.length !== 8 && hex.length !== 32) || !/^[0-9A-Fa-f]+$/.test(hex)) return undefined;
  const out = new Uint8Array(hex.length / 2);
  for (let w = 0; w < hex.length / 8; w++) {
    for (let i = 0; i < 4; i++) out[w * 4 + (le ? 3 - i : i)] = parseInt(hex.slice(w * 8 + i * 2, w * 8 + i * 2 + 2), 16);
  }
  return out;
}

/** The sockets in a /proc/net/tcp or tcp6 text (the header and malformed lines are skipped). */
export function parseTcpTable(text: string, le = endianness() === 'LE'): TcpSocket[] {
  const out: TcpSocket[] = [];
  const end = (s: string | undefined): string | undefined => {
    const m = s ? /^([0-9A-Fa-f]+):([0-9A-Fa-f]{4})$/.exec(s) : null;
    const b = m ? fromProcHex(m[1]!, le) : undefined;
    return m && b ? `${canonical(b)}:${parseInt(m[2]!, 16)}` : undefined;
  };
  for (const line of text.split('\n')) {
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !/^\d+:$/.test(f[0]!)) continue;
    const local = end(f[1]);
    const remote = end(f[2]);
    const inode = Number(f[9]);
    if (!local || !remote || !/^[0-9A-F]{2}$/.test(f[3]!) || !Number.isSafeInteger(inode) || inode <= 0) continue;
    out.push({ local, remote, state: f[3]!, inode });
  }
  return out;
}

/**
 * The inode of the socket at the far end of an established connection (the one whose local
 * end is `ends.remote…` and whose remote end is `ends.local…`), from /proc/net tables.
 * `tables` maps 'tcp' / 'tcp6' to their text (tests pass their own); undefined: not found.
 */
export function findPeerInode(ends: TcpEnds, tables: Partial<Record<'tcp' | 'tcp6', string>>, le = endianness() === 'LE'): number | undefined {
  const kernel = endKey(ends.remoteAddress, ends.remotePort);
  const ours = endKey(ends.localAddress, ends.localPort);
  if (!kernel || !ours) return undefined;
  const t = byEnds([...parseTcpTable(tables.tcp ?? '', le), ...parseTcpTable(tables.tcp6 ?? '', le)]).get(`${kernel} ${ours}`);
  return t?.state === '01' ? t.inode : undefined;
}

/** TCP states in which no more data can come from the peer, or there is no peer: LISTEN, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK. */
const NO_DATA_IN = new Set(['0A', '06', '07', '08', '09']);

/** Sockets that may still take data in, by `local remote` (a TCP connection's two ends name one socket on each side). */
function byEnds(sockets: readonly TcpSocket[]): Map<string, TcpSocket> {
  return new Map(sockets.filter((t) => !NO_DATA_IN.has(t.state)).map((t) => [`${t.local} ${t.remote}`, t]));
}

interface Proc {
  readonly pid: number;
  readonly ppid: number;
  /** Field 22 of /proc/<pid>/stat: with the pid, it names one process (a pid can be reused). */
  readonly start: string;
}

async function statOf(pid: number | 'self', proc: string): Promise<Proc | undefined> {
  try {
    const stat = await readFile(`${proc}/${pid}/stat`, 'latin1');
    // pid (comm) state ppid ... starttime: comm may hold spaces and parentheses, so read after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const p = Number(stat.slice(0, stat.indexOf(' ')));
    const ppid = Number(f[1]);
    if (!Number.isSafeInteger(p) || !Number.isSafeInteger(ppid) || f[19] === undefined) return undefined;
    return { pid: p, ppid, start: f[19] };
  } catch {
    return undefined; // gone meanwhile
  }
}

/** pid and its descendants, nearest first (from each process's ppid in /proc/<pid>/stat). */
async function processTree(root: Proc, proc: string): Promise<Proc[]> {
  const all: Proc[] = [];
  for (const name of await readdir(proc)) {
    if (!/^\d+$/.test(name) || Number(name) === root.pid) continue;
    const p = await statOf(Number(name), proc);
    if (p) all.push(p);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) for (const p of all) if (p.ppid === tree[i]!.pid && !tree.includes(p)) tree.push(p);
  return tree;
}

/** The socket inodes among a process's open files; undefined when they cannot be read (another user's process, gone). */
async function socketsOf(pid: number | 'self', proc: string): Promise<Set<number> | undefined> {
  const out = new Set<number>();
  let fds: string[];
  try {
    fds = await readdir(`${proc}/${pid}/fd`);
  } catch {
    return undefined;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(await readlink(`${proc}/${pid}/fd/${fd}`));
      if (m) out.add(Number(m[1]));
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/**
 * Is the far end of this loopback connection a socket held by `rootPid` or one of its
 * descendants, in a process tree that takes data over TCP from no one but itself and this
 * provider? The second half turns away a relay (an `ssh -L`, a port forward, socat to another
 * port) in the kernel's tree: it holds the kernel's end, but the bytes it writes come from
 * its upstream, which the per-message signature check still has to vouch for. Only loopback
 * connections qualify: a connection that left this machine could end anywhere. Never throws.
 */
export async function verifyLocalPeer(ends: TcpEnds, rootPid: number, proc = '/proc'): Promise<PeerVerdict> {
  try {
    const kernel = addressBytes(ends.remoteAddress);
    const ours = addressBytes(ends.localAddress);
    if (!kernel || !ours) return { ok: false, reason: 'not an IP connection' };
    if (!isLoopback(kernel)) return { ok: false, reason: `the kernel's address ${ends.remoteAddress} is not a loopback address` };
    if (!Number.isSafeInteger(rootPid) || rootPid <= 0) return { ok: false, reason: 'no kernel process' };
    // pids read from a /proc of another pid namespace would name other processes.
    if ((await readlink(`${proc}/self`).catch(() => '')) !== String(process.pid)) return { ok: false, reason: `${proc} is not this process's pid namespace` };
    const texts: Partial<Record<'tcp' | 'tcp6', string>> = {};
    for (const f of ['tcp', 'tcp6'] as const) {
      try {
        texts[f] = await readFile(`${proc}/net/${f}`, 'latin1');
      } catch {
        // no IPv6
      }
    }
    const sockets = [...parseTcpTable(texts.tcp ?? ''), ...parseTcpTable(texts.tcp6 ?? '')];
    const open = byEnds(sockets);
    const connection = open.get(`${endKey(ends.remoteAddress, ends.remotePort)} ${endKey(ends.localAddress, ends.localPort)}`);
    const inode = connection?.state === '01' ? connection.inode : undefined;
    if (inode === undefined) return { ok: false, reason: `no established connection ${ends.remoteAddress}:${ends.remotePort} → ${ends.localAddress}:${ends.localPort} in ${proc}/net` };
    const root = await statOf(rootPid, proc);
    if (!root) return { ok: false, reason: `kernel process ${rootPid} is gone` };
    const tree = await processTree(root, proc);
    const held = new Map<number, Set<number>>();
    for (const p of tree) {
      const sockets = await socketsOf(p.pid, proc);
      // A process of the tree whose files cannot be read could be holding anything.
      if (!sockets) return { ok: false, reason: `cannot read the open files of process ${p.pid} of the kernel's tree` };
      held.set(p.pid, sockets);
    }
    const holder = tree.find((p) => held.get(p.pid)!.has(inode));
    if (!holder) return { ok: false, reason: `the kernel's end (socket ${inode}) is not held by kernel process ${rootPid} or its descendants` };
    // Every TCP connection the tree holds must lead back into the tree or to this provider.
    const treeSockets = new Set([...held.values()].flatMap((x) => [...x]));
    const mine = (await socketsOf('self', proc)) ?? new Set<number>();
    for (const t of open.values()) {
      if (!treeSockets.has(t.inode)) continue;
      const peer = open.get(`${t.remote} ${t.local}`);
      if (!peer || !(treeSockets.has(peer.inode) || mine.has(peer.inode))) {
        return { ok: false, reason: `the kernel's process tree takes data from outside it and this provider (its connection ${t.local} → ${t.remote}): it may be relaying` };
      }
    }
    // No process of the tree was replaced while it was read (a pid reused by another process).
    for (const p of tree) {
      const now = await statOf(p.pid, proc);
      if (!now || now.start !== p.start || now.ppid !== p.ppid) return { ok: false, reason: `process ${p.pid} of the kernel's tree changed while it was checked` };
    }
    return { ok: true, pid: holder.pid };
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
