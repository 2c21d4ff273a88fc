// startLocalChain with a data directory (state survives a restart, the deployment is reused),
// clean shutdown, and the deploy CLI against a real anvil.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wallet } from 'ethers';
import { afterAll, describe, expect, it } from 'vitest';
import { main, parseDeployArgs } from '../../script/deploy.ts';
import { EscrowClient } from '../escrow.ts';
import { InvalidArgumentError } from '../errors.ts';
import { connectRpc } from '../provider.ts';
import { startAnvil } from './anvil.ts';
import { readDeploymentFile } from './deployment-file.ts';
import { startLocalChain } from './local-chain.ts';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'kinesis-chain-test-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('startLocalChain', () => {
  it('persists the chain in dataDir and reuses the deployment on restart', async () => {
    const dataDir = tempDir();
    const lines: string[] = [];
    const first = await startLocalChain({ dataDir, log: (s) => lines.push(s) });
    expect(readDeploymentFile(join(dataDir, 'deployment.json'))).toEqual(first.deployment);
    expect(first.accounts).toHaveLength(10);
    const provider = connectRpc(first.rpcUrl, { chainId: first.chainId, pollingIntervalMs: 50 });
    const payer = new EscrowClient(first.escrow, new Wallet(first.accounts[4]!.privateKey, provider));
    await payer.deposit(123_456n);
    provider.destroy();
    await first.stop();
    await first.stop(); // idempotent

    const second = await startLocalChain({ dataDir, log: (s) => lines.push(s) });
    try {
      expect(second.escrow).toBe(first.escrow);
      expect(lines.some((l) => l.includes('reusing the deployment'))).toBe(true);
      const p2 = connectRpc(second.rpcUrl, { chainId: second.chainId });
      expect(await new EscrowClient(second.escrow, p2).balanceOf(first.accounts[4]!.address)).toBe(123_456n);
      p2.destroy();
    } finally {
      await second.stop();
    }
  });

  it('leaves no anvil process behind, and reports a taken port clearly', async () => {
    const anvil = await startAnvil({});
    expect(alive(anvil.pid)).toBe(true);
    const port = Number(new URL(anvil.rpcUrl).port);
    await expect(startAnvil({ port, startTimeoutMs: 10_000 })).rejects.toThrow(/anvil exited during start-up/);
    await anvil.stop();
    expect(alive(anvil.pid)).toBe(false);
    await expect(startAnvil({ port: 70_000 })).rejects.toThrow(InvalidArgumentError);
  });
});

describe('deploy CLI', () => {
  it('validates its flags', () => {
    const ok = parseDeployArgs(['--rpc', 'http://127.0.0.1:8545', '--key-file', 'k', '--out=d.json', '--close-grace', '60']);
    expect(ok).toEqual({ rpc: 'http://127.0.0.1:8545', keyFile: 'k', out: 'd.json', closeGrace: 60 });
    const bad: [string[], RegExp][] = [
      [[], /--rpc: is required/],
      [['--rpc', 'http://x', '--key-file', 'k'], /--out: is required/],
      [['--rpc', 'ftp://x', '--key-file', 'k', '--out', 'o'], /http/],
      [['--rpc', 'http://x', '--key-file', 'k', '--out', 'o', '--bogus', '1'], /unknown argument/],
      [['--rpc', 'http://x', '--key-file', '--out', 'o'], /needs a value/],
      [['--rpc', 'http://x', '--rpc', 'http://y', '--key-file', 'k', '--out', 'o'], /given twice/],
      [['--rpc', 'http://x', '--key-file', 'k', '--out', 'o', '--close-grace', '-5'], /close-grace/],
      [['--rpc', 'http://x', '--key-file', 'k', '--out', 'o', '--token', '0x12'], /token/],
      [['--rpc', 'http://x', '--key-file', 'k', '--out', 'o', '--chain-id', '0'], /positive/],
    ];
    for (const [argv, msg] of bad) expect(() => parseDeployArgs(argv), argv.join(' ')).toThrow(msg);
  });

  it('deploys to a running chain and writes the deployment file', async () => {
    const dir = tempDir();
    const anvil = await startAnvil({});
    try {
      const keyFile = join(dir, 'key');
      writeFileSync(keyFile, `${anvil.accounts[0]!.privateKey}\n`);
      const out = join(dir, 'deployment.json');
      expect(await main(['--rpc', anvil.rpcUrl, '--key-file', keyFile, '--out', out, '--close-grace', '120'])).toBe(0);
      const d = readDeploymentFile(out);
      expect(d).toMatchObject({ chainId: 31337, closeGrace: 120, testToken: true, deployer: anvil.accounts[0]!.address });

      // Existing token, pinned chain id; then the failure modes.
      const out2 = join(dir, 'd2.json');
      expect(await main(['--rpc', anvil.rpcUrl, '--key-file', keyFile, '--out', out2, '--token', d.token, '--chain-id', '31337'])).toBe(0);
      expect(JSON.parse(readFileSync(out2, 'utf8'))).toMatchObject({ token: d.token, testToken: false });
      expect(await main(['--rpc', anvil.rpcUrl, '--key-file', keyFile, '--out', out2, '--chain-id', '1'])).toBe(1);
      writeFileSync(keyFile, 'not a key');
      expect(await main(['--rpc', anvil.rpcUrl, '--key-file', keyFile, '--out', out2])).toBe(1);
      expect(await main(['--rpc', anvil.rpcUrl])).toBe(2);
    } finally {
      await anvil.stop();
    }
  });
});
