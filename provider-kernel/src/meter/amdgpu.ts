// AMD GPUs through the amdgpu driver's sysfs files (Linux), read by the sampler worker.
// No library and no root needed: the driver exposes, per card,
//   /sys/class/drm/cardN/device/vendor                 0x1002 for AMD
//   /sys/class/drm/cardN/device/mem_info_vram_total    VRAM bytes
//   /sys/class/drm/cardN/device/gpu_busy_percent       utilization, 0-100
//   /sys/class/drm/cardN/device/product_name           marketing name (newer kernels)
//   /sys/class/drm/cardN/device/hwmon/hwmonM/energy1_input   accumulated energy, µJ (where
//                                                             the ASIC reports it)
//   …/hwmonM/power1_average (or power1_input)           board power, µW
//   …/hwmonM/power1_cap                                 enforced power cap, µW
// (https://docs.kernel.org/gpu/amdgpu/thermal.html). The energy counter is preferred, as
// NVML's is; power is integrated where it is missing. Everything is read as text, and an
// unreadable or malformed file reads as "not available" rather than failing the sampler.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export interface AmdGpu {
  readonly card: string;
  readonly name: string;
  readonly memoryTotalBytes: number;
  readonly powerLimitMw: number | null;
  readonly energyFile: string | null;
  readonly powerFile: string | null;
  readonly busyFile: string | null;
}

const AMD_VENDOR = '0x1002';

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'latin1').trim();
  } catch {
    return null;
  }
}

/** A non-negative integer file, or null. */
function readUint(path: string | null): number | null {
  if (path === null) return null;
  const t = readText(path);
  if (t === null || !/^[0-9]{1,20}$/.test(t)) return null;
  const n = Number(t);
  return Number.isSafeInteger(n) ? n : null;
}

function readable(path: string): boolean {
  return readText(path) !== null;
}

/** The AMD GPUs under `drmRoot` (normally /sys/class/drm), in card order. */
export function findAmdGpus(drmRoot: string): AmdGpu[] {
  let cards: string[];
  try {
    cards = readdirSync(drmRoot).filter((c) => /^card[0-9]+$/.test(c));
  } catch {
    return [];
  }
  cards.sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)));
  const out: AmdGpu[] = [];
  for (const card of cards) {
    const dev = join(drmRoot, card, 'device');
    if (readText(join(dev, 'vendor'))?.toLowerCase() !== AMD_VENDOR) continue;
    let hwmon: string | null = null;
    try {
      const h = readdirSync(join(dev, 'hwmon')).filter((d) => /^hwmon[0-9]+$/.test(d)).sort()[0];
      if (h) hwmon = join(dev, 'hwmon', h);
    } catch {
      hwmon = null;
    }
    const energyFile = hwmon && readUint(join(hwmon, 'energy1_input')) !== null ? join(hwmon, 'energy1_input') : null;
    const powerFile = hwmon ? ([join(hwmon, 'power1_average'), join(hwmon, 'power1_input')].find((p) => readUint(p) !== null) ?? null) : null;
    const capUw = hwmon ? readUint(join(hwmon, 'power1_cap')) : null;
    const busyFile = readable(join(dev, 'gpu_busy_percent')) ? join(dev, 'gpu_busy_percent') : null;
    const product = readText(join(dev, 'product_name'));
    const device = readText(join(dev, 'device'));
    out.push({
      card,
      name: (product && /^[\x20-\x7e]{1,128}$/.test(product) ? product : `AMD GPU ${device ?? card}`).slice(0, 128),
      memoryTotalBytes: readUint(join(dev, 'mem_info_vram_total')) ?? 0,
      powerLimitMw: capUw !== null && capUw > 0 ? Math.round(capUw / 1000) : null,
      energyFile,
      powerFile,
      busyFile,
    });
  }
  return out;
}

/** Accumulated energy in mJ (from µJ, read as a bigint: the counter outgrows 2^53 µJ), or null. */
export function readAmdEnergyMj(g: AmdGpu): bigint | null {
  if (g.energyFile === null) return null;
  const t = readText(g.energyFile);
  return t !== null && /^[0-9]{1,24}$/.test(t) ? BigInt(t) / 1000n : null;
}

/** Board power in mW (from µW), or null. */
export function readAmdPowerMw(g: AmdGpu): number | null {
  const uw = readUint(g.powerFile);
  return uw === null ? null : Math.round(uw / 1000);
}

/** Utilization 0-100, or null. */
export function readAmdBusyPercent(g: AmdGpu): number | null {
  const p = readUint(g.busyFile);
  return p === null || p > 100 ? null : p;
}
