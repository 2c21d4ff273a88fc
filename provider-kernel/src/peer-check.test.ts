import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { addressBytes, findPeerInode, procHex, verifyLocalPeer, type TcpEnds } from './peer-check.ts';

describe('addresses as /proc/net prints them', () => {
  it('reads IPv4 and IPv6 text forms, and refuses anything else', () => {
    expect([...addressBytes('127.0.0.1')!]).toEqual([127, 0, 0, 1]);
    expect([...addressBytes('::1')!]).toEqual([...Array<number>(15).fill(0), 1]);
    expect([...addressBytes('::ffff:127.0.0.1')!]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
    expect([...addressBytes('fe80::1:2%eth0')!]).toEqual([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
    expect([...addressBytes('2001:db8:0:0:0:0:0:ff')!]).toEqual([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff]);
    for (const bad of ['', 'localhost', '127.0.0', '1:2:3', '::g', '300.0.0.1']) expect(addressBytes(bad)).toBeUndefined();
  });

  it('prints each 32-bit word in the host byte order', () => {
    expect(procHex(addressBytes('127.0.0.1')!, true)).toBe('0100007F');
    expect(procHex(addressBytes('127.0.0.1')!, false)).toBe('7F000001');
    expect(procHex(addressBytes('::1')!, true)).toBe('00000000000000000000000001000000');
    expect(procHex(addressBytes('::ffff:127.0.0.1')!, true)).toBe('0000000000000000FFFF00000100007F');
  });
});

describe('findPeerInode', () => {
  // Lines as Linux prints them: the kernel's end 127.0.0.1:40000 (0x9C40), ours 127.0.0.1:50000 (0xC350).
  const head = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
  const line = (local: string, rem: string, st: string, inode: number): string => `   0: ${local} ${rem} ${st} 00000000:00000000 00:00000000 00000000  1000        0 ${inode} 1 0000000000000000 20 4 30 10 -1\n`;
  const ends: TcpEnds = { localAddress: '127.0.0.1', localPort: 50000, remoteAddress: '127.0.0.1', remotePort: 40000 };

  it('finds the established socket whose local end is the kernel\'s and whose remote end is ours', () => {
    const tcp =
      head +
      line('0100007F:9C40', '00000000:0000', '0A', 111) + // the listening socket
      line('0100007F:C350', '0100007F:9C40', '01', 222) + // our own end
      line('0100007F:9C40', '0100007F:C351', '01', 333) + // the kernel's end of someone else's connection
      line('0100007F:9C40', '0100007F:C350', '01', 444);
    expect(findPeerInode(ends, { tcp }, true)).toBe(444);
  });

  it('finds it among IPv6 sockets (a dual-stack listener shows IPv4 peers as mapped addresses)', () => {
    const mapped = (port: string): string => `0000000000000000FFFF00000100007F:${port}`;
    const tcp6 = head + line(mapped('9C40'), mapped('C350'), '01', 555);
    expect(findPeerInode(ends, { tcp: head, tcp6 }, true)).toBe(555);
    const v6: TcpEnds = { localAddress: '::1', localPort: 50000, remoteAddress: '::1', remotePort: 40000 };
    const one = '00000000000000000000000001000000';
    expect(findPeerInode(v6, { tcp6: head + line(`${one}:9C40`, `${one}:C350`, '01', 666) }, true)).toBe(666);
  });

  it('finds nothing for a connection not established, a missing table, or a garbled line', () => {
    expect(findPeerInode(ends, { tcp: head + line('0100007F:9C40', '0100007F:C350', '08', 777) }, true)).toBeUndefined();
    expect(findPeerInode(ends, {}, true)).toBeUndefined();
    expect(findPeerInode(ends, { tcp: head + '   0: 0100007F:9C40 0100007F:C350 01\n' + line('0100007F:9C40', '0100007F:C350', '01', 0) }, true)).toBeUndefined();
  });
});

// ---- against real processes and the real /proc ---------------------------------------------

const PY = '/usr/bin/python3';
// Listens on 127.0.0.1 (or ::1), prints its port, accepts one connection and holds it open.
const SERVER = (host: string): string =>
  `import socket,sys\nfam=socket.AF_INET6 if ':' in '${host}' else socket.AF_INET\ns=socket.socket(fam)\ns.bind(('${host}',0))\ns.listen(1)\nprint(s.getsockname()[1],flush=True)\nc,_=s.accept()\nsys.stdin.read()`;

const children: ChildProcess[] = [];
const sockets: net.Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

function run(cmd: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  children.push(c);
  return c;
}

async function portOf(c: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = '';
    c.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\n')) resolve(Number(text.trim()));
    });
    c.once('exit', (code) => reject(new Error(`server exited (${code})`)));
  });
}

async function connect(host: string, port: number): Promise<{ s: net.Socket; ends: TcpEnds }> {
  const s = net.connect({ host, port });
  sockets.push(s);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  // The peer has accepted once it can see us; give its accept() a moment.
  await new Promise((r) => setTimeout(r, 100));
  return { s, ends: { localAddress: s.localAddress!, localPort: s.localPort!, remoteAddress: s.remoteAddress!, remotePort: s.remotePort! } };
}

describe.runIf(process.platform === 'linux')('verifyLocalPeer on this machine', () => {
  it('says yes for the process holding the far end, and no for a bystander or a pid that does not exist', async () => {
    const server = run(PY, ['-c', SERVER('127.0.0.1')]);
    const { ends } = await connect('127.0.0.1', await portOf(server));
    expect(await verifyLocalPeer(ends, server.pid!)).toEqual({ ok: true, pid: server.pid });
    const bystander = run('sleep', ['30']);
    expect(await verifyLocalPeer(ends, bystander.pid!)).toMatchObject({ ok: false, reason: expect.stringMatching(/not held by kernel process/) });
    expect((await verifyLocalPeer(ends, 2 ** 22 + 12345)).ok).toBe(false);
  });

  it('says yes when a descendant of the launched process holds it (a launcher that forks the kernel)', async () => {
    // `; true` keeps sh as the parent instead of letting it exec python.
    const srvLauncher = run('sh', ['-c', `${PY} -c "$SRV"; true`], { SRV: SERVER('127.0.0.1') });
    const { ends } = await connect('127.0.0.1', await portOf(srvLauncher));
    const v = await verifyLocalPeer(ends, srvLauncher.pid!);
    expect(v.ok).toBe(true);
    expect(v.ok && v.pid).not.toBe(srvLauncher.pid);
  });

  it('says no when another process took the port (here: this test process listens, as an impostor would)', async () => {
    const impostor = net.createServer((c) => sockets.push(c));
    await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
    try {
      const kernel = run('sleep', ['30']); // the "kernel" we launched, which does not hold the port
      const { ends } = await connect('127.0.0.1', (impostor.address() as net.AddressInfo).port);
      expect(await verifyLocalPeer(ends, kernel.pid!)).toMatchObject({ ok: false, reason: expect.stringMatching(/not held by kernel process/) });
    } finally {
      impostor.close();
    }
  });

  it('says no when the holder relays: it also holds a connection it made to someone outside its tree and this process', async () => {
    // The "kernel" listens, and connects out to an upstream run by another process (the bytes it would write come from there).
    const upstream = run(PY, ['-c', SERVER('127.0.0.1')]);
    const upPort = await portOf(upstream);
    const relay = run(PY, ['-c', `import socket\nu=socket.create_connection(('127.0.0.1',${upPort}))\n` + SERVER('127.0.0.1')]);
    const { ends } = await connect('127.0.0.1', await portOf(relay));
    expect(await verifyLocalPeer(ends, relay.pid!)).toMatchObject({ ok: false, reason: expect.stringMatching(/may be relaying/) });
    // The same process tree without the upstream connection would pass: the upstream is what fails it.
    const plain = run(PY, ['-c', SERVER('127.0.0.1')]);
    const p2 = await connect('127.0.0.1', await portOf(plain));
    expect(await verifyLocalPeer(p2.ends, plain.pid!)).toEqual({ ok: true, pid: plain.pid });
  });

  it.runIf(Object.values(os.networkInterfaces()).flat().some((i) => i?.address === '::1'))('works over IPv6 loopback', async () => {
    const server = run(PY, ['-c', SERVER('::1')]);
    const { ends } = await connect('::1', await portOf(server));
    expect(await verifyLocalPeer(ends, server.pid!)).toEqual({ ok: true, pid: server.pid });
  });

  it('says no, without throwing, for a connection that is not loopback, a bad pid, or a /proc it cannot read', async () => {
    const server = run(PY, ['-c', SERVER('127.0.0.1')]);
    const { ends } = await connect('127.0.0.1', await portOf(server));
    expect(await verifyLocalPeer({ ...ends, remoteAddress: '10.1.2.3' }, server.pid!)).toMatchObject({ ok: false, reason: expect.stringMatching(/not a loopback/) });
    expect(await verifyLocalPeer({ ...ends, remoteAddress: 'nonsense' }, server.pid!)).toMatchObject({ ok: false });
    expect(await verifyLocalPeer(ends, 0)).toMatchObject({ ok: false });
    expect(await verifyLocalPeer(ends, server.pid!, '/nonexistent-proc')).toMatchObject({ ok: false });
  });
});
