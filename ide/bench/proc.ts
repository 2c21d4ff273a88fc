// What /proc says about a Chromium launched by the benchmark: its renderer processes,
// their memory, and how much CPU their main threads used.
import { readFileSync, readdirSync } from 'node:fs';

/** Renderer processes (`--type=renderer`) descending from `rootPid`, the browser's pid. */
export function rendererPids(rootPid: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch {
      // the process ended meanwhile
    }
  }
  const out: number[] = [];
  const walk = (pid: number): void => {
    for (const c of children.get(pid) ?? []) {
      try {
        if (readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('--type=renderer')) out.push(c);
      } catch {
        // ended
      }
      walk(c);
    }
  };
  walk(rootPid);
  return out;
}

/**
 * RSS in MiB of the tab: the largest renderer under `rootPid` (Chromium also keeps a
 * spare renderer and one for about:blank).
 */
export function rendererRssMiB(rootPid: number): number {
  let max = 0;
  for (const pid of rendererPids(rootPid)) {
    try {
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      max = Math.max(max, Number(rss?.[1] ?? 0) / 1024);
    } catch {
      // ended
    }
  }
  return max;
}

/**
 * CPU time (ms) each renderer's main thread has run so far, by pid. The main thread's
 * tid is the process id; schedstat's first field is its time on a CPU in ns. Unlike
 * the wall time of its tasks, this does not grow while other processes on the
 * machine hold the CPU.
 */
export function rendererMainCpuMs(rootPid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of rendererPids(rootPid)) {
    try {
      out.set(pid, Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6);
    } catch {
      // ended
    }
  }
  return out;
}
