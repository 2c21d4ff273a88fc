// CPU energy sources, read from sysfs and procfs (both rooted at a configurable path so
// tests can point them at a fake tree):
// - RAPL through the powercap framework (https://docs.kernel.org/power/powercap/powercap.html):
//   /sys/class/powercap/intel-rapl:<n>/energy_uj is a package's energy counter in µJ that
//   wraps at max_energy_range_uj. Since Linux 5.10 it is readable by root only (a side
//   channel, CVE-2020-8694), so most providers fall back to the estimate.
// - The estimate: the kernel process tree's CPU time from /proc/<pid>/stat (utime, stime,
//   cutime, cstime; proc(5)) × the package power per core.
import { closeSync, openSync, readFileSync, readSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

export interface RaplZone {
  readonly name: string;
  readonly energyPath: string;
  /** The counter wraps to 0 after this many µJ. */
  readonly maxRangeUj: number;
  /** Long-term power limit of the package, if the zone says (µW). */
  readonly maxPowerUw: number | null;
}

/**
 * Top-level RAPL package zones (`intel-rapl:0`, `intel-rapl:1`, …) whose counters this
 * process can read. Sub-zones (cores, uncore, dram) are skipped: cores and uncore are
 * inside the package figure already. Returns [] where RAPL is absent or unreadable.
 */
export function findRaplZones(root = '/sys/class/powercap'): RaplZone[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  const zones: RaplZone[] = [];
  for (const name of names.filter((n) => /^intel-rapl:\d+$/.test(n)).sort()) {
    const dir = join(root, name);
    const energyPath = join(dir, 'energy_uj');
    const maxRangeUj = readInt(join(dir, 'max_energy_range_uj'));
    if (readInt(energyPath) === null || maxRangeUj === null || maxRangeUj <= 0) continue;
    const maxPowerUw = readInt(join(dir, 'constraint_0_max_power_uw')) ?? readInt(join(dir, 'constraint_0_power_limit_uw'));
    zones.push({ name, energyPath, maxRangeUj, maxPowerUw: maxPowerUw && maxPowerUw > 0 ? maxPowerUw : null });
  }
  return zones;
}

export function readRaplUj(zone: RaplZone): number | null {
  return readInt(zone.energyPath);
}

/** Counter delta across one wrap at most (the meter reads far more often than it wraps). */
export function raplDeltaUj(prev: number, next: number, maxRangeUj: number): number {
  return next >= prev ? next - prev : maxRangeUj - prev + next;
}

/** utime + stime + cutime + cstime of one process, in clock ticks; null if it is gone. */
export function readProcTicks(pid: number, procRoot = '/proc'): number | null {
  let text: string;
  try {
    text = readFileSync(join(procRoot, String(pid), 'stat'), 'latin1');
  } catch {
    return null;
  }
  return parseStatTicks(text);
}

/**
 * readProcTicks for a sampler that reads the same processes 10 times a second: each
 * /proc/<pid>/stat stays open and is re-read with pread at offset 0 (procfs regenerates
 * it), which saves an open/close and the allocations per read. An open fd also pins the
 * process: once it exits, reads fail (ESRCH) and a recycled pid is never mistaken for it.
 */
export class ProcTicksReader {
  readonly #procRoot: string;
  readonly #fds = new Map<number, number>();
  readonly #buf = Buffer.alloc(2048);

  constructor(procRoot = '/proc') {
    this.#procRoot = procRoot;
  }

  read(pid: number): number | null {
    let fd = this.#fds.get(pid);
    if (fd === undefined) {
      try {
        fd = openSync(join(this.#procRoot, String(pid), 'stat'), 'r');
      } catch {
        return null;
      }
      this.#fds.set(pid, fd);
    }
    let n: number;
    try {
      n = readSync(fd, this.#buf, 0, this.#buf.length, 0);
    } catch {
      this.#drop(pid);
      return null;
    }
    if (n <= 0) {
      this.#drop(pid);
      return null;
    }
    return parseStatTicks(this.#buf.toString('latin1', 0, n));
  }

  /** Closes the files of processes no longer of interest. */
  retain(pids: ReadonlySet<number>): void {
    for (const pid of [...this.#fds.keys()]) if (!pids.has(pid)) this.#drop(pid);
  }

  close(): void {
    for (const pid of [...this.#fds.keys()]) this.#drop(pid);
  }

  #drop(pid: number): void {
    const fd = this.#fds.get(pid);
    this.#fds.delete(pid);
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
  }
}

function parseStatTicks(text: string): number | null {
  // Field 2 (comm) is in parentheses and may itself hold spaces and ')': split after the last ')'.
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const f = text.slice(close + 2).split(' ');
  // After comm: f[0] is field 3 (state); utime..cstime are fields 14..17 → f[11..14].
  const ticks = [11, 12, 13, 14].map((i) => Number(f[i]));
  if (ticks.some((t) => !Number.isFinite(t) || t < 0)) return null;
  return ticks.reduce((a, b) => a + b, 0);
}

/** Live descendants of `pid` (not itself), through /proc/<pid>/task/<tid>/children. */
export function processTree(pid: number, procRoot = '/proc', maxProcs = 4096): number[] {
  const out: number[] = [];
  const seen = new Set<number>([pid]);
  const queue = [pid];
  while (queue.length > 0 && out.length < maxProcs) {
    const p = queue.shift()!;
    let tasks: string[];
    try {
      tasks = readdirSync(join(procRoot, String(p), 'task'));
    } catch {
      continue;
    }
    for (const tid of tasks) {
      let text = '';
      try {
        text = readFileSync(join(procRoot, String(p), 'task', tid, 'children'), 'latin1');
      } catch {
        continue;
      }
      for (const c of text.split(/\s+/)) {
        const child = Number(c);
        if (c && Number.isInteger(child) && !seen.has(child)) {
          seen.add(child);
          out.push(child);
          queue.push(child);
        }
      }
    }
  }
  return out;
}

/** Busy and total ticks of all CPUs from the `cpu` line of /proc/stat. */
export function readSystemTicks(procRoot = '/proc'): { busy: number; total: number } | null {
  let text: string;
  try {
    text = readFileSync(join(procRoot, 'stat'), 'latin1');
  } catch {
    return null;
  }
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return null;
  // user nice system idle iowait irq softirq steal (guest time is already inside user).
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (v.length < 8 || v.some((x) => !Number.isFinite(x))) return null;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = v as [number, number, number, number, number, number, number, number];
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait };
}

export function cpuModel(procRoot = '/proc'): string {
  try {
    const text = readFileSync(join(procRoot, 'cpuinfo'), 'latin1');
    const m = /^model name\s*:\s*(.+)$/m.exec(text) ?? /^Hardware\s*:\s*(.+)$/m.exec(text);
    if (m?.[1]) return m[1].trim().replace(/[^\x20-\x7e]/g, '');
  } catch {
    // fall through
  }
  return 'unknown CPU';
}

export function cpuCount(): number {
  return Math.max(1, availableParallelism());
}

/** USER_HZ from `getconf CLK_TCK`; 100 on every mainstream Linux build. */
export function clockTicksPerSecond(): number {
  try {
    const v = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    if (Number.isInteger(v) && v > 0) return v;
  } catch {
    // fall through
  }
  return 100;
}

/**
 * Package power used by the estimate when none is configured: 10 W per logical CPU,
 * at least 35 W. A rough typical-load figure for server and desktop parts; every receipt
 * that uses it says `estimate`, quality `estimated`, with ±50% uncertainty.
 */
export function defaultPackagePowerW(cores = cpuCount()): number {
  return Math.max(35, 10 * cores);
}

function readInt(path: string): number | null {
  try {
    const v = Number(readFileSync(path, 'latin1').trim());
    return Number.isSafeInteger(v) ? v : null;
  } catch {
    return null;
  }
}
