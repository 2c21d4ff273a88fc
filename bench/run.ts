// `npm run bench`: every benchmark, each side by side with its reference in one run.
// Results go to bench/results/<name>.json (and a <name>.md where the bench writes one).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './lib/stack.ts';

const only = process.argv.slice(2);
const results = join(repoRoot, 'bench', 'results');
mkdirSync(results, { recursive: true });

type Bench = () => Promise<object>;
const benches: Record<string, () => Promise<Bench>> = {
  kernel: async () => (await import('./kernel-bench.ts')).runKernelBench,
  metering: async () => (await import('../provider-kernel/src/meter/bench.ts')).runMeterBench,
  gas: async () => {
    const { runGasBench } = await import('../contracts/script/gas-bench.ts');
    return () => runGasBench({ write: true });
  },
  ide: async () => (await import('../ide/bench/notebook-bench.ts')).runIdeBench,
};

const summary: Record<string, unknown> = {};
let failed = false;
for (const [name, load] of Object.entries(benches)) {
  if (only.length > 0 && !only.includes(name)) continue;
  process.stderr.write(`[bench] ${name}…\n`);
  try {
    const r = await (await load())();
    summary[name] = r;
    writeFileSync(join(results, `${name}.json`), JSON.stringify({ measuredAt: new Date().toISOString(), machine: machine(), ...r }, null, 2) + '\n');
  } catch (e) {
    failed = true;
    summary[name] = { error: String(e instanceof Error ? e.stack : e) };
    process.stderr.write(`[bench] ${name} failed: ${String(e instanceof Error ? e.stack : e)}\n`);
  }
}
console.log(JSON.stringify(summary, null, 2));
process.exit(failed ? 1 : 0);

// The load average goes with every result: other work on a 2-core machine inflates timings.
function machine(): object {
  return { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? null, platform: process.platform, loadavg: loadavg().map((x) => +x.toFixed(2)) };
}
