// How a provider's hardware becomes part of a kernelspec name, so that a plain Jupyter client
// (which only knows kernel names) picks the hardware class by name: `python3-cpu`,
// `python3-nvidia-rtx-4090-24g`, `python3-2x-nvidia-h100-hbm3-80g`. Jupyter kernel names
// allow [A-Za-z0-9._-] (jupyter_client kernelspec.py `_is_valid_kernel_name`).
import type { DeviceInfo, HardwareInfo } from '@kinesis/protocol/tunnel';

export interface HardwareClass {
  /** Slug used in kernelspec names: `cpu` or e.g. `nvidia-rtx-4090-24g`. */
  readonly slug: string;
  /** Human label: `CPU, 32 GB RAM` or e.g. `NVIDIA RTX 4090 24 GB`, `2× NVIDIA H100 80 GB`. */
  readonly label: string;
  /** The GPU model name, or null for CPU-only providers. */
  readonly gpu: string | null;
  readonly gpuCount: number;
  /** Memory of one GPU (MiB), or the host's memory for CPU-only providers. */
  readonly memoryMiB: number;
}

// Marketing words that add nothing to telling boards apart.
const NOISE = new Set(['geforce', 'tesla', 'corporation', 'graphics']);

function gpus(hw: HardwareInfo): DeviceInfo[] {
  return hw.devices.filter((d) => d.kind === 'gpu');
}

function gib(mib: number): number {
  return Math.max(1, Math.round(mib / 1024));
}

function slugWords(vendor: string, name: string): string[] {
  const v = vendor.toLowerCase().replace(/[^a-z0-9]+/g, '');
  const words = name
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0 && !NOISE.has(w) && !/^\d+gb$/.test(w));
  if (v && words[0] !== v) words.unshift(v);
  return words;
}

/** The hardware class a provider offers: its GPUs (the first model, when boards are mixed) or its CPU. */
export function hardwareClass(hw: HardwareInfo): HardwareClass {
  const boards = gpus(hw);
  const first = boards[0];
  if (!first) return { slug: 'cpu', label: `CPU, ${gib(hw.memoryMiB)} GB RAM`, gpu: null, gpuCount: 0, memoryMiB: hw.memoryMiB };
  const same = boards.filter((b) => b.name === first.name);
  const count = same.length;
  const words = slugWords(first.vendor, first.name);
  const size = gib(first.memoryMiB);
  const slug = [count > 1 ? `${count}x` : '', ...words, `${size}g`].filter(Boolean).join('-').slice(0, 80);
  const display = first.name.replace(/\b(GeForce|Tesla)\s+/gi, '').replace(/\s*\d+\s*GB\b/gi, '').trim();
  const vendorPrefix = display.toLowerCase().startsWith(first.vendor.toLowerCase()) ? '' : `${first.vendor} `;
  const label = `${count > 1 ? `${count}× ` : ''}${vendorPrefix}${display} ${size} GB`;
  return { slug, label, gpu: first.name, gpuCount: count, memoryMiB: first.memoryMiB };
}

export function gatewaySpecName(baseSpec: string, cls: HardwareClass): string {
  return `${baseSpec}-${cls.slug}`;
}

/** Price in base units per kWh, grouped by thousands for reading: `300000` → `300,000`. */
export function formatPrice(pricePerKwh: bigint): string {
  return pricePerKwh.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

export function displayName(baseDisplay: string, cls: HardwareClass, minPrice: bigint, maxPrice: bigint): string {
  const price = minPrice === maxPrice ? formatPrice(minPrice) : `from ${formatPrice(minPrice)}`;
  return `${baseDisplay} · ${cls.label} · ${price} per kWh`;
}

/** For the bare base name: `Python 3 (ipykernel) · cheapest available (CPU / NVIDIA RTX 4090 24 GB) · from 300 per kWh`. */
export function aliasDisplayName(baseDisplay: string, classes: readonly HardwareClass[], minPrice: bigint, maxPrice: bigint): string {
  const price = minPrice === maxPrice ? formatPrice(minPrice) : `from ${formatPrice(minPrice)}`;
  return `${baseDisplay} · cheapest available (${classes.map((c) => c.label).join(' / ')}) · ${price} per kWh`;
}
