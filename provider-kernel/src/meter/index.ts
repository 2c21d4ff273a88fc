// Energy metering for the provider: see docs/metering.md.
export { createMeter, MeterError } from './meter.ts';
export type { AttachOptions, HardwareReport, Meter, MeterOptions, MeterStats } from './meter.ts';
export { Nvml, NvmlError, defaultNvmlLibrary } from './nvml.ts';
