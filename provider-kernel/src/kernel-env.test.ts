import { describe, expect, it } from 'vitest';
import type { DeviceInfo } from '@kinesis/protocol/tunnel';
import { gpuEnv } from './kernel-env.ts';

describe('gpuEnv', () => {
  it('gives NVIDIA kernels CUDA_VISIBLE_DEVICES by index and AMD kernels ROCR_VISIBLE_DEVICES by place among AMD cards', () => {
    const devices: DeviceInfo[] = [
      { kind: 'gpu', vendor: 'NVIDIA', name: 'RTX 4090', index: 0, memoryMiB: 24564 },
      { kind: 'gpu', vendor: 'NVIDIA', name: 'RTX 4090', index: 1, memoryMiB: 24564 },
      { kind: 'gpu', vendor: 'AMD', name: 'Radeon RX 7900 XTX', index: 2, memoryMiB: 24560 },
      { kind: 'gpu', vendor: 'AMD', name: 'Radeon RX 7900 XTX', index: 3, memoryMiB: 24560 },
    ];
    expect(gpuEnv(devices, 1)).toEqual({ CUDA_VISIBLE_DEVICES: '1', CUDA_DEVICE_ORDER: 'PCI_BUS_ID' });
    expect(gpuEnv(devices, 2)).toEqual({ ROCR_VISIBLE_DEVICES: '0' });
    expect(gpuEnv(devices, 3)).toEqual({ ROCR_VISIBLE_DEVICES: '1' });
  });
});
