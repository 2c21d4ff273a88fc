// Runs the Solidity suite (unit, fuzz, invariant, attack and gas cases) through forge, offline,
// then the gas benchmark against the targets. One file, so the two forge runs never
// race on contracts/out and contracts/cache.
import { describe, expect, it } from 'vitest';
import { runForge } from './forge.ts';
import { runGasBench } from './gas-bench.ts';

describe('forge', () => {
  it('forge test passes (unit, fuzz, invariant)', { timeout: 480_000 }, async () => {
    const res = await runForge(['test'], { timeoutMs: 450_000 });
    const output = `${res.stdout}\n${res.stderr}`;
    if (res.code !== 0) console.error(output);
    expect(res.code, output.slice(-6000)).toBe(0);
    // Guard against a silently empty run (forge exits 0 when no test matches).
    const passed = /(\d+) tests passed, 0 failed/.exec(output);
    expect(Number(passed?.[1] ?? 0)).toBeGreaterThanOrEqual(40);
    expect(output).toMatch(/invariant_solvency/);
  });

  it('gas stays within the targets', { timeout: 240_000 }, async () => {
    const report = await runGasBench({ write: false });
    const byId = Object.fromEntries(report.results.map((r) => [r.id, r]));
    expect(byId['claim-update']?.gas).toBeLessThanOrEqual(60_000);
    expect(byId['claim-first']?.gas).toBeLessThanOrEqual(75_000);
    expect(byId['open-session']?.gas).toBeLessThanOrEqual(110_000);
    expect(byId['batch10-update']?.gas).toBeLessThanOrEqual(40_000);
    expect(report.allWithinTargets).toBe(true);
  });
});
