import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ProcTicksReader, cpuModel, findRaplZones, processTree, raplDeltaUj, readProcTicks, readRaplUj, readSystemTicks } from './cpu.ts';

const root = mkdtempSync(join(tmpdir(), 'cpu-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function put(path: string, text: string): void {
  mkdirSync(join(root, path, '..'), { recursive: true });
  writeFileSync(join(root, path), text);
}

describe('RAPL reader on a fake sysfs', () => {
  it('finds readable package zones, skips sub-zones and broken ones', () => {
    put('powercap/intel-rapl:0/energy_uj', '123456\n');
    put('powercap/intel-rapl:0/max_energy_range_uj', '262143328850\n');
    put('powercap/intel-rapl:0/constraint_0_max_power_uw', '125000000\n');
    put('powercap/intel-rapl:0:0/energy_uj', '5\n'); // core sub-zone: inside the package figure
    put('powercap/intel-rapl:0:0/max_energy_range_uj', '262143328850\n');
    put('powercap/intel-rapl:1/energy_uj', '99\n');
    put('powercap/intel-rapl:1/max_energy_range_uj', '1000\n');
    put('powercap/intel-rapl:2/energy_uj', 'garbage\n'); // unreadable value
    put('powercap/intel-rapl:2/max_energy_range_uj', '1000\n');
    const zones = findRaplZones(join(root, 'powercap'));
    expect(zones.map((z) => z.name)).toEqual(['intel-rapl:0', 'intel-rapl:1']);
    expect(zones[0]).toMatchObject({ maxRangeUj: 262143328850, maxPowerUw: 125000000 });
    expect(zones[1]!.maxPowerUw).toBeNull();
    expect(readRaplUj(zones[0]!)).toBe(123456);
    expect(findRaplZones(join(root, 'nope'))).toEqual([]);
  });

  it('handles counter wrap', () => {
    expect(raplDeltaUj(100, 250, 1000)).toBe(150);
    expect(raplDeltaUj(900, 50, 1000)).toBe(150);
  });
});

describe('procfs readers on a fake /proc', () => {
  it('sums utime+stime+cutime+cstime, with a comm holding spaces and parentheses', () => {
    // Fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime …
    put('proc/100/stat', '100 (python3 (ipy) k) S 1 100 100 0 -1 4194560 1 2 3 4 250 50 7 3 20 0 5 0\n');
    expect(readProcTicks(100, join(root, 'proc'))).toBe(310);
    put('proc/101/stat', '101 (x) S 1 100 100 0 -1 4194560 1 2 3 4 abc 50 7 3\n');
    expect(readProcTicks(101, join(root, 'proc'))).toBeNull();
    expect(readProcTicks(999, join(root, 'proc'))).toBeNull();
  });

  it('walks the tree through every thread’s children file', () => {
    put('proc/200/task/200/children', '201 202 ');
    put('proc/200/task/205/children', '203');
    put('proc/201/task/201/children', '204');
    put('proc/202/task/202/children', '');
    put('proc/203/task/203/children', '200'); // a cycle must not loop
    put('proc/204/task/204/children', '');
    expect(processTree(200, join(root, 'proc')).sort()).toEqual([201, 202, 203, 204]);
  });

  it('reads system busy ticks and the CPU model', () => {
    put('proc/stat', 'cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n');
    expect(readSystemTicks(join(root, 'proc'))).toEqual({ busy: 161, total: 1181 });
    put('proc/cpuinfo', 'processor\t: 0\nmodel name\t: Test CPU @ 3.0GHz\n');
    expect(cpuModel(join(root, 'proc'))).toBe('Test CPU @ 3.0GHz');
  });

  it('reads this process from the real /proc, also through a kept-open file', () => {
    const t = readProcTicks(process.pid);
    expect(t).not.toBeNull();
    const reader = new ProcTicksReader();
    const a = reader.read(process.pid)!;
    // Burn CPU until the kept-open file shows more of it (bounded, for a starved machine).
    let b = a;
    const until = Date.now() + 5000;
    while (b <= a && Date.now() < until) b = reader.read(process.pid)!;
    expect(b).toBeGreaterThan(a);
    expect(Math.abs(a - t!)).toBeLessThan(50);
    expect(reader.read(2 ** 22 + 12345)).toBeNull();
    reader.close();
    reader.close();
    expect(readSystemTicks()!.total).toBeGreaterThan(0);
  });
});
