import { describe, expect, it } from 'vitest';
import { parseCli, USAGE } from './cli.ts';
import { ProviderConfigError } from './errors.ts';
import { DEFAULT_PART_BYTES } from './kernel-frame.ts';

describe('kinesis-provider flags', () => {
  it('parses the documented flags', () => {
    const r = parseCli(['--gateway', 'http://127.0.0.1:8888', '--data-dir', '/tmp/d', '--price', '250000', '--name', 'rig', '--kernelspec-dir', '/a', '--kernelspec-dir', '/b']);
    expect(r).toEqual({
      help: false,
      config: { gatewayUrl: 'http://127.0.0.1:8888', dataDir: '/tmp/d', pricePerKwh: 250000n, name: 'rig', kernelspecDirs: ['/a', '/b'], maxKernels: 16, logLevel: 'info', chainId: 31337n, outputBatchMs: 0, partBytes: 1048576, iopubReader: 'js', iopubAuth: 'peer' },
    });
    expect(parseCli(['--help'])).toEqual({ help: true });
    const off = parseCli(['--gateway', 'http://x', '--data-dir', 'd', '--no-metering']);
    expect(off.help === false && off.config.chainId).toBe(undefined);
    expect(() => parseCli(['--gateway', 'http://x', '--data-dir', 'd', '--chain-id', '0x1'])).toThrow(/chain-id/);
  });

  it('rejects bad input with clear messages', () => {
    const base = ['--data-dir', '/tmp/d'];
    expect(() => parseCli(base)).toThrow(/--gateway <url> is required/);
    expect(() => parseCli(['--gateway', 'http://x'])).toThrow(/--data-dir <dir> is required/);
    expect(() => parseCli([...base, '--gateway', 'ftp://x'])).toThrow(/http\(s\)/);
    expect(() => parseCli([...base, '--gateway', 'http://u:p@x'])).toThrow(/credentials/);
    expect(() => parseCli([...base, '--gateway', 'http://x', '--price', '1.5'])).toThrow(/whole number/);
    expect(() => parseCli([...base, '--gateway', 'http://x', '--price', '01'])).toThrow(/whole number/);
    expect(() => parseCli([...base, '--gateway', 'http://x', '--bogus'])).toThrow(/Unknown option/);
    expect(() => parseCli([...base, '--gateway', 'http://x', '--max-kernels', '0'])).toThrow(/max-kernels/);
    expect(() => parseCli([...base, '--gateway', 'http://x', '--log-level', 'loud'])).toThrow(/log-level/);
    for (const bad of ['-1', '1.5', '1001', '08', 'x']) expect(() => parseCli([...base, '--gateway', 'http://x', '--output-batch-ms', bad])).toThrow(/output-batch-ms/);
    const zero = parseCli(['--gateway', 'http://x', '--data-dir', 'd', '--output-batch-ms', '0']);
    expect(zero.help === false && zero.config.outputBatchMs).toBe(0);
  });

  it('--iopub-reader: js (default) or libzmq', () => {
    const base = ['--gateway', 'http://x', '--data-dir', 'd'];
    const reader = (...extra: string[]): string | undefined => {
      const r = parseCli([...base, ...extra]);
      return r.help ? undefined : r.config.iopubReader;
    };
    expect(USAGE).toMatch(/--iopub-reader <r>/);
    expect(reader()).toBe('js');
    expect(reader('--iopub-reader', 'libzmq')).toBe('libzmq');
    expect(reader('--iopub-reader=js')).toBe('js');
    for (const bad of ['', 'zmq', 'JS', 'js ']) expect(() => parseCli([...base, `--iopub-reader=${bad}`]), bad).toThrow(/--iopub-reader must be js or libzmq/);
  });

  it('--iopub-auth: peer (default) or hmac', () => {
    const base = ['--gateway', 'http://x', '--data-dir', 'd'];
    const auth = (...extra: string[]): string | undefined => {
      const r = parseCli([...base, ...extra]);
      return r.help ? undefined : r.config.iopubAuth;
    };
    expect(USAGE).toMatch(/--iopub-auth <a>/);
    expect(auth()).toBe('peer');
    expect(auth('--iopub-auth', 'hmac')).toBe('hmac');
    expect(auth('--iopub-auth=peer')).toBe('peer');
    for (const bad of ['', 'none', 'HMAC', 'off', 'peer ']) expect(() => parseCli([...base, `--iopub-auth=${bad}`]), bad).toThrow(/--iopub-auth must be peer or hmac/);
  });

  it('--part-bytes: 0 (off) or 64 KiB to 16 MiB, 1 MiB by default', () => {
    const base = ['--gateway', 'http://x', '--data-dir', 'd'];
    const partBytes = (...extra: string[]): number | undefined => {
      const r = parseCli([...base, ...extra]);
      return r.help ? undefined : r.config.partBytes;
    };
    expect(USAGE).toMatch(/--part-bytes <n>/);
    expect(partBytes()).toBe(1048576);
    expect(DEFAULT_PART_BYTES).toBe(1048576);
    for (const ok of [0, 65536, 65537, 1 << 20, 16777216]) {
      expect(partBytes('--part-bytes', String(ok))).toBe(ok);
      expect(partBytes(`--part-bytes=${ok}`)).toBe(ok);
    }
    for (const bad of ['1', '65535', '16777217', '999999999', '9999999999', 'x', '', '08', '00', '065536', '65536.0', '1e5', '0x10000', ' 65536', '65536 ', '+65536', '-1']) {
      expect(() => parseCli([...base, `--part-bytes=${bad}`]), bad).toThrow(ProviderConfigError);
      expect(() => parseCli([...base, `--part-bytes=${bad}`]), bad).toThrow(/--part-bytes must be 0 or a whole number of bytes from 65536 to 16777216/);
    }
    // Written apart, a value that starts with a dash is taken for an option: still refused.
    expect(() => parseCli([...base, '--part-bytes', '-1'])).toThrow(/part-bytes/);
    expect(() => parseCli([...base, '--part-bytes'])).toThrow(/part-bytes/);
  });
});
