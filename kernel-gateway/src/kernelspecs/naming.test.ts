import { describe, expect, it } from 'vitest';
import type { DeviceInfo, HardwareInfo } from '@kinesis/protocol/tunnel';
import { displayName, gatewaySpecName, hardwareClass } from './naming.ts';

const hw = (devices: DeviceInfo[], memoryMiB = 65536): HardwareInfo => ({ devices, cpu: { model: 'AMD EPYC', cores: 16 }, memoryMiB, os: 'Linux', arch: 'x64' });
const gpu = (name: string, memoryMiB: number, index = 0): DeviceInfo => ({ kind: 'gpu', vendor: 'NVIDIA', name, index, memoryMiB });

describe('hardware class naming', () => {
  it('names a CPU-only provider `cpu`', () => {
    const c = hardwareClass(hw([{ kind: 'cpu', vendor: 'AMD', name: 'AMD EPYC', index: 0, memoryMiB: 65536 }]));
    expect(c).toMatchObject({ slug: 'cpu', label: 'CPU, 64 GB RAM', gpu: null, memoryMiB: 65536 });
    expect(gatewaySpecName('python3', c)).toBe('python3-cpu');
  });

  it('names a GeForce board by model and memory', () => {
    const c = hardwareClass(hw([gpu('NVIDIA GeForce RTX 4090', 24564)]));
    expect(c.slug).toBe('nvidia-rtx-4090-24g');
    expect(c.label).toBe('NVIDIA RTX 4090 24 GB');
    expect(gatewaySpecName('python3', c)).toBe('python3-nvidia-rtx-4090-24g');
  });

  it('counts identical boards and drops the memory word from the model', () => {
    const c = hardwareClass(hw([gpu('NVIDIA H100 80GB HBM3', 81559, 0), gpu('NVIDIA H100 80GB HBM3', 81559, 1)]));
    expect(c.slug).toBe('2x-nvidia-h100-hbm3-80g');
    expect(c.gpuCount).toBe(2);
    expect(c.label).toBe('2× NVIDIA H100 HBM3 80 GB');
  });

  it('yields names Jupyter accepts', () => {
    const c = hardwareClass(hw([gpu('Weird/Name (rev 2) ++', 8000)]));
    expect(gatewaySpecName('ir', c)).toMatch(/^[A-Za-z0-9._-]+$/);
  });

  it('shows hardware and price in the display name', () => {
    const c = hardwareClass(hw([gpu('NVIDIA GeForce RTX 4090', 24564)]));
    expect(displayName('Python 3 (ipykernel)', c, 300000n, 300000n)).toBe('Python 3 (ipykernel) · NVIDIA RTX 4090 24 GB · 300,000 per kWh');
    expect(displayName('Python 3', c, 1000n, 2000n)).toContain('from 1,000 per kWh');
  });
});
