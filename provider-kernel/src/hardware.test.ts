import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateHardware } from '@kinesis/protocol/tunnel';
import { detectHardware, parseNvidiaSmiCsv } from './hardware.ts';

describe('hardware detection', () => {
  it('parses nvidia-smi CSV, including boards without a power limit', () => {
    const devs = parseNvidiaSmiCsv(
      '0, NVIDIA H100 80GB HBM3, 81559, 700.00, GPU-4a2b1c3d-0000-1111-2222-333344445555\n1, Tesla T4, 15360, [N/A], GPU-aaaa\n',
    );
    expect(devs).toEqual([
      { kind: 'gpu', vendor: 'NVIDIA', name: 'NVIDIA H100 80GB HBM3', index: 0, memoryMiB: 81559, powerLimitW: 700, uuid: 'GPU-4a2b1c3d-0000-1111-2222-333344445555' },
      { kind: 'gpu', vendor: 'NVIDIA', name: 'Tesla T4', index: 1, memoryMiB: 15360, uuid: 'GPU-aaaa' },
    ]);
    expect(() => parseNvidiaSmiCsv('garbage')).toThrow(/unexpected nvidia-smi line/);
    expect(() => parseNvidiaSmiCsv('x, a, 1, 2, GPU-1')).toThrow(/bad GPU index/);
  });

  it('offers the CPU when there is no nvidia-smi', async () => {
    const hw = await detectHardware({ nvidiaSmi: '/nonexistent/nvidia-smi' });
    expect(hw.devices).toHaveLength(1);
    expect(hw.devices[0]?.kind).toBe('cpu');
    expect(hw.cpu.cores).toBeGreaterThanOrEqual(1);
    expect(hw.memoryMiB).toBe(Math.floor(os.totalmem() / 1048576));
    expect(validateHardware(hw)).toEqual(hw);
  });

  // This machine has no GPU: a stand-in nvidia-smi prints what a real one prints.
  it('reads GPUs through an nvidia-smi executable', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kinesis-smi-'));
    try {
      const exe = path.join(dir, 'nvidia-smi');
      await fs.writeFile(exe, `#!/bin/sh\n[ "$1" = "--query-gpu=index,name,memory.total,power.limit,uuid" ] || exit 9\necho "0, NVIDIA A100-SXM4-40GB, 40960, 400.00, GPU-12345678-abcd"\n`, { mode: 0o755 });
      const hw = await detectHardware({ nvidiaSmi: exe });
      expect(hw.devices).toEqual([{ kind: 'gpu', vendor: 'NVIDIA', name: 'NVIDIA A100-SXM4-40GB', index: 0, memoryMiB: 40960, powerLimitW: 400, uuid: 'GPU-12345678-abcd' }]);
      await fs.writeFile(exe, '#!/bin/sh\necho "NVIDIA-SMI has failed" >&2\nexit 9\n', { mode: 0o755 });
      expect((await detectHardware({ nvidiaSmi: exe })).devices[0]?.kind).toBe('cpu');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
