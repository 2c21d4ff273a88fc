import { describe, expect, it } from 'vitest';
import { parseCli } from './cli.ts';

describe('kinesis-provider flags', () => {
  it('parses the documented flags', () => {
    const r = parseCli(['--gateway', 'http://127.0.0.1:8888', '--data-dir', '/tmp/d', '--price', '250000', '--name', 'rig', '--kernelspec-dir', '/a', '--kernelspec-dir', '/b']);
    expect(r).toEqual({
      help: false,
      config: { gatewayUrl: 'http://127.0.0.1:8888', dataDir: '/tmp/d', pricePerKwh: 250000n, name: 'rig', kernelspecDirs: ['/a', '/b'], maxKernels: 16, logLevel: 'info', chainId: 31337n, outputBatchMs: 0 },
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
});
