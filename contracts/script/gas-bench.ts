// Gas benchmark: forge's gas report on the dedicated cases in contracts/test/gas/, each run
// alone with --isolate (every call its own transaction: 21,000 intrinsic + calldata + cold
// storage, i.e. what a user pays). Writes bench/results/gas.md and gas.json.
//
//   npx tsx contracts/script/gas-bench.ts          (bench/run.ts imports runGasBench)
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTRACTS_DIR, runForge } from './forge.ts';

interface GasCase {
  readonly id: string;
  readonly contract: string;
  readonly test: string;
  readonly fn: string;
  /** Gas is divided by this (per session in a batch). */
  readonly per: number;
  readonly what: string;
  readonly target?: number;
  readonly references?: readonly { readonly name: string; readonly gas: number }[];
}

const CLAIM = 'claim((bytes32,uint256,uint256),bytes)';
const BATCH = 'claimBatch((bytes32,uint256,uint256)[],bytes[])';

export const GAS_CASES: readonly GasCase[] = [
  {
    id: 'claim-update', contract: 'GasClaimUpdate', test: 'test_gas_claimUpdate', fn: CLAIM, per: 1,
    what: 'claim, updating (session already claimed once)', target: 60_000,
    references: [{ name: 'straightforward OpenZeppelin implementation', gas: 62_615 }, { name: 'machinomy claim', gas: 39_805 }],
  },
  {
    id: 'claim-first', contract: 'GasClaimFirst', test: 'test_gas_claimFirst', fn: CLAIM, per: 1,
    what: "claim, a session's first (provider already holds KUSD)", target: 75_000,
    references: [{ name: 'straightforward OpenZeppelin implementation', gas: 79_715 }],
  },
  { id: 'open-session', contract: 'GasOpenSession', test: 'test_gas_openSession', fn: 'openSession(address,address,uint256,uint64)', per: 1, what: 'openSession with a session key', target: 110_000 },
  { id: 'batch10-update', contract: 'GasClaimBatch10Update', test: 'test_gas_claimBatch10Update', fn: BATCH, per: 10, what: 'claimBatch of 10 updating vouchers, one provider (per session)', target: 40_000 },
  { id: 'batch10-first', contract: 'GasClaimBatch10First', test: 'test_gas_claimBatch10First', fn: BATCH, per: 10, what: 'claimBatch of 10 first vouchers, one provider (per session)', target: 40_000 },
  { id: 'close-provider', contract: 'GasCloseSession', test: 'test_gas_closeSessionByProvider', fn: 'closeSession(bytes32)', per: 1, what: 'closeSession by the provider' },
  { id: 'top-up', contract: 'GasBalances', test: 'test_gas_topUp', fn: 'topUp(bytes32,uint256,uint64)', per: 1, what: 'topUp (cap and expiry)' },
  { id: 'deposit', contract: 'GasBalances', test: 'test_gas_deposit', fn: 'deposit(uint256)', per: 1, what: 'deposit (approved; payer already has a balance)' },
  { id: 'withdraw', contract: 'GasBalances', test: 'test_gas_withdraw', fn: 'withdraw(uint256)', per: 1, what: 'withdraw' },
];

export interface GasResult {
  readonly id: string;
  readonly what: string;
  readonly gas: number;
  readonly totalGas: number;
  readonly per: number;
  readonly target: number | null;
  readonly withinTarget: boolean | null;
  readonly references: readonly { readonly name: string; readonly gas: number }[];
}

export interface GasBenchReport {
  readonly tool: string;
  readonly method: string;
  readonly measuredAt: string;
  readonly results: readonly GasResult[];
  readonly allWithinTargets: boolean;
}

interface ForgeGasReport {
  contract: string;
  functions: Record<string, { calls: number; min: number; max: number; mean: number; median: number }>;
}

async function measure(c: GasCase): Promise<number> {
  const res = await runForge(['test', '--match-contract', `^${c.contract}$`, '--match-test', `^${c.test}\\(`, '--gas-report', '--isolate', '--json']);
  if (res.code !== 0) throw new Error(`forge failed on ${c.contract}.${c.test}:\n${res.stdout.slice(-3000)}\n${res.stderr.slice(-3000)}`);
  const line = res.stdout.split('\n').reverse().find((l) => l.trim().startsWith('[{'));
  if (!line) throw new Error(`no JSON gas report from forge for ${c.test}:\n${res.stdout.slice(-2000)}`);
  const reports = JSON.parse(line) as ForgeGasReport[];
  const escrow = reports.find((r) => r.contract.endsWith(':KinesisEscrow'));
  const f = escrow?.functions[c.fn];
  if (!f) throw new Error(`${c.fn} missing from the gas report of ${c.test}`);
  // setUp never calls the measured function (see test/gas/EscrowGas.t.sol): one call, one figure.
  if (f.calls !== 1) throw new Error(`${c.fn} was called ${f.calls} times in ${c.test}; expected exactly one`);
  return f.max;
}

export async function runGasBench(opts: { write?: boolean; log?: (s: string) => void } = {}): Promise<GasBenchReport> {
  const log = opts.log ?? (() => {});
  const build = await runForge(['build']);
  if (build.code !== 0) throw new Error(`forge build failed:\n${build.stdout.slice(-3000)}\n${build.stderr.slice(-3000)}`);
  const results: GasResult[] = [];
  for (const c of GAS_CASES) {
    const total = await measure(c);
    const gas = Math.round(total / c.per);
    const target = c.target ?? null;
    results.push({ id: c.id, what: c.what, gas, totalGas: total, per: c.per, target, withinTarget: target === null ? null : gas <= target, references: c.references ?? [] });
    log(`${c.id}: ${gas}${target === null ? '' : ` (target ≤ ${target})`}`);
  }
  const report: GasBenchReport = {
    tool: 'forge test --gas-report --isolate (forge 1.x, solc 0.8.30 via solc-js, via-IR, optimizer 10,000 runs, EVM cancun)',
    method: 'Each case in contracts/test/gas/EscrowGas.t.sol runs alone; the figure is the whole transaction (21,000 intrinsic + calldata + execution) as forge reports it with --isolate. Batch figures are the batch transaction divided by 10. The token is KUSD (OpenZeppelin ERC20, same compiler settings); a proxied token such as USDC adds its own overhead to every transfer.',
    measuredAt: new Date().toISOString(),
    results,
    allWithinTargets: results.every((r) => r.withinTarget !== false),
  };
  if (opts.write ?? true) writeGasResults(report);
  return report;
}

const RESULTS_DIR = join(CONTRACTS_DIR, '..', 'bench', 'results');

export function renderGasMarkdown(r: GasBenchReport): string {
  const fmt = (n: number): string => n.toLocaleString('en-US');
  const rows = r.results.map((x) => {
    const target = x.target === null ? '–' : `≤ ${fmt(x.target)}`;
    const status = x.withinTarget === null ? '' : x.withinTarget ? 'met' : '**over**';
    const refs = x.references.map((ref) => `${ref.name}: ${fmt(ref.gas)}`).join('; ') || '–';
    const total = x.per > 1 ? ` (${fmt(x.totalGas)} for the batch)` : '';
    return `| ${x.what} | ${fmt(x.gas)}${total} | ${target} | ${status} | ${refs} |`;
  });
  return [
    '# Escrow gas',
    '',
    `Measured ${r.measuredAt} with ${r.tool}.`,
    '',
    r.method,
    '',
    '| operation | gas | target | | reference |',
    '| --- | ---: | ---: | --- | --- |',
    ...rows,
    '',
    `All targets met: ${r.allWithinTargets ? 'yes' : 'NO'}.`,
    '',
    'Regenerate: `npx tsx contracts/script/gas-bench.ts` (also part of `npm run bench`).',
    'Why the figures are what they are: docs/contracts.md, "Gas".',
    '',
  ].join('\n');
}

export function writeGasResults(r: GasBenchReport): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'gas.json'), `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(join(RESULTS_DIR, 'gas.md'), renderGasMarkdown(r));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const report = await runGasBench({ log: console.log });
  console.log(`wrote ${join(dirname(RESULTS_DIR), 'results')}/gas.{md,json}; all targets met: ${report.allWithinTargets}`);
  if (!report.allWithinTargets) process.exitCode = 1;
}
