// What this machine offers: NVIDIA GPUs through nvidia-smi's CSV query when the tool is
// present, else the CPU. Read once at start-up; the meter (src/meter/) measures energy.
//
// nvidia-smi query fields: `nvidia-smi --help-query-gpu`. `--format=csv,noheader,nounits`
// gives one line per GPU, comma+space separated, numbers without units; a field the board
// does not support reads "[N/A]" or "[Not Supported]".
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import type { DeviceInfo, HardwareInfo } from '@kinesis/protocol/tunnel';
import type { Logger } from './logger.ts';

const GPU_QUERY = 'index,name,memory.total,power.limit,uuid';
const NVIDIA_SMI_TIMEOUT_MS = 5000;

export interface DetectOptions {
  /** nvidia-smi executable; `false` skips GPU detection. Default: `nvidia-smi` on PATH. */
  readonly nvidiaSmi?: string | false;
  readonly logger?: Logger;
}

export async function detectHardware(opts: DetectOptions = {}): Promise<HardwareInfo> {
  const cpu = await cpuInfo();
  const memoryMiB = Math.floor(os.totalmem() / 1048576);
  let gpus: DeviceInfo[] = [];
  if (opts.nvidiaSmi !== false) {
    try {
      gpus = parseNvidiaSmiCsv(await runNvidiaSmi(opts.nvidiaSmi ?? 'nvidia-smi'));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') opts.logger?.info('no nvidia-smi on PATH; offering the CPU');
      else opts.logger?.warn('nvidia-smi failed; offering the CPU', { error: e instanceof Error ? e.message : String(e) });
    }
  }
  const devices: DeviceInfo[] =
    gpus.length > 0 ? gpus : [{ kind: 'cpu', vendor: cpu.vendor.slice(0, 64), name: cpu.model.slice(0, 128), index: 0, memoryMiB }];
  // Lengths as the tunnel's validator allows them.
  return { devices, cpu: { model: cpu.model.slice(0, 256), cores: cpu.cores }, memoryMiB, os: `${os.type()} ${os.release()}`.slice(0, 64), arch: os.arch().slice(0, 64) };
}

function runNvidiaSmi(exe: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      exe,
      [`--query-gpu=${GPU_QUERY}`, '--format=csv,noheader,nounits'],
      { timeout: NVIDIA_SMI_TIMEOUT_MS, maxBuffer: 1 << 20, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' } },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    );
  });
}

/** Parses `index, name, memory.total [MiB], power.limit [W], uuid` lines. Throws on anything else. */
export function parseNvidiaSmiCsv(text: string): DeviceInfo[] {
  const out: DeviceInfo[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const f = line.split(',').map((s) => s.trim());
    if (f.length !== 5) throw new Error(`unexpected nvidia-smi line: ${JSON.stringify(line.slice(0, 200))}`);
    const [index, name, mem, power, uuid] = f as [string, string, string, string, string];
    if (!/^\d+$/.test(index)) throw new Error(`bad GPU index ${JSON.stringify(index)}`);
    const memoryMiB = Number(mem);
    if (!Number.isFinite(memoryMiB) || memoryMiB < 0) throw new Error(`bad GPU memory ${JSON.stringify(mem)}`);
    const powerLimitW = Number(power);
    out.push({
      kind: 'gpu',
      vendor: 'NVIDIA',
      name: name.slice(0, 128),
      index: Number(index),
      memoryMiB: Math.floor(memoryMiB),
      // "[N/A]" / "[Not Supported]" on boards that do not report it.
      ...(Number.isFinite(powerLimitW) && powerLimitW > 0 ? { powerLimitW } : {}),
      ...(/^GPU-[0-9a-fA-F-]+$/.test(uuid) ? { uuid } : {}),
    });
  }
  return out;
}

async function cpuInfo(): Promise<{ model: string; vendor: string; cores: number }> {
  const cpus = os.cpus();
  let model = cpus[0]?.model.trim() ?? '';
  let vendor = '';
  try {
    const text = await fs.readFile('/proc/cpuinfo', 'utf8');
    vendor = /^vendor_id\s*:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? '';
    if (!model) model = /^model name\s*:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? '';
  } catch {
    // not Linux: os.cpus() is all we have
  }
  return { model: model || 'unknown CPU', vendor: cpuVendor(vendor), cores: Math.max(1, os.availableParallelism?.() ?? cpus.length) };
}

function cpuVendor(id: string): string {
  if (id === 'GenuineIntel') return 'Intel';
  if (id === 'AuthenticAMD') return 'AMD';
  return id || (os.arch().startsWith('arm') ? 'ARM' : 'unknown');
}
