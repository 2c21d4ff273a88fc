// Against a real anvil chain with the contracts deployed (startLocalChain), on an ephemeral port.
import { Interface, Wallet, type JsonRpcProvider } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployContracts } from './deploy.ts';
import { tokenBalance } from './token.ts';
import { EscrowRevertError, InvalidArgumentError, SessionNotFoundError } from './errors.ts';
import { EscrowClient } from './escrow.ts';
import { followEscrowEvents, queryEscrowEvents, type EscrowEvent } from './events.ts';
import { startLocalChain, type LocalChain } from './node/local-chain.ts';
import { connectRpc } from './provider.ts';
import { hashVoucher } from './voucher.ts';

let chain: LocalChain;
let provider: JsonRpcProvider;
let payer: EscrowClient;
let providerA: EscrowClient;
let providerB: EscrowClient;
let payerAddress: string;

async function now(): Promise<number> {
  const b = await provider.getBlock('latest');
  return b?.timestamp ?? 0;
}

async function expectRevert(p: Promise<unknown>, name: string): Promise<EscrowRevertError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EscrowRevertError);
  expect((err as EscrowRevertError).errorName).toBe(name);
  return err as EscrowRevertError;
}

beforeAll(async () => {
  chain = await startLocalChain({});
  provider = connectRpc(chain.rpcUrl, { chainId: chain.chainId, pollingIntervalMs: 50 });
  const wallet = (i: number): Wallet => new Wallet(chain.accounts[i]!.privateKey, provider);
  payerAddress = chain.accounts[1]!.address;
  payer = new EscrowClient(chain.escrow, wallet(1));
  providerA = new EscrowClient(chain.escrow, wallet(2));
  providerB = new EscrowClient(chain.escrow, wallet(3));
});

afterAll(async () => {
  provider?.destroy();
  await chain?.stop();
});

describe('EscrowClient on anvil', () => {
  it('reads the deployment', async () => {
    expect(chain.deployment.escrow).toBe(chain.escrow);
    expect(await payer.token()).toBe(chain.token);
    expect(await payer.closeGrace()).toBe(3600n);
    expect(await tokenBalance(provider, chain.token, payerAddress)).toBe(1_000_000n * 10n ** 6n);
  });

  it('deposits (approving first), withdraws, and reports typed reverts', async () => {
    await payer.deposit(500_000_000n);
    expect(await payer.balanceOf(payerAddress)).toBe(500_000_000n);
    await payer.withdraw(100_000_000n);
    expect(await payer.balanceOf(payerAddress)).toBe(400_000_000n);
    const err = await expectRevert(payer.withdraw(10n ** 12n), 'InsufficientBalance');
    expect(err.args).toMatchObject({ payer: payerAddress, available: 400_000_000n, needed: 10n ** 12n });
    await expect(payer.withdraw(0n)).rejects.toThrow(InvalidArgumentError);
    await expect(payer.deposit(-1n)).rejects.toThrow(InvalidArgumentError);
  });

  it('opens a session with a fresh key, pays by vouchers, batch-claims, closes', async () => {
    const expiresAt = (await now()) + 600;
    const predicted = await payer.nextSessionId(payerAddress);
    const a = await payer.openSession({ provider: chain.accounts[2]!.address, cap: 50_000_000n, expiresAt });
    expect(a.sessionId).toBe(predicted);
    expect(a.sessionKey).toBeDefined();
    const key = a.sessionKey!;
    const s = await payer.getSession(a.sessionId);
    expect(s).toMatchObject({ payer: payerAddress, provider: chain.accounts[2]!.address, signer: key.address, cap: 50_000_000n, claimed: 0n, closed: false });

    // The browser signs with the session key; the provider verifies off-chain, then claims.
    const v1 = await payer.signVoucher(key, a.sessionId, 10_000_000n, 1_000n);
    expect(await providerA.verifyVoucher(v1)).toEqual({ signer: key.address, increment: 10_000_000n });
    const before = await tokenBalance(provider, chain.token, chain.accounts[2]!.address);
    await providerA.claim(v1);
    expect(await tokenBalance(provider, chain.token, chain.accounts[2]!.address)).toBe(before + 10_000_000n);
    await expectRevert(providerA.claim(v1), 'NonIncreasingAmount');
    const over = await payer.signVoucher(key, a.sessionId, 50_000_001n, 1_000n);
    await expectRevert(providerA.claim(over), 'CapExceeded');

    // On-chain digest = off-chain digest.
    const onChain = await payer.runner.provider!.call({
      to: chain.escrow,
      data: new Interface(['function hashVoucher((bytes32,uint256,uint256)) view returns (bytes32)']).encodeFunctionData('hashVoucher', [[a.sessionId, 1n, 2n]]),
    });
    expect(onChain).toBe(hashVoucher(await payer.domain(), { sessionId: a.sessionId, cumulativeAmount: 1n, cumulativeEnergyMj: 2n }));

    // A second session for another provider, no session key (payer signs), then one batch.
    const b = await payer.openSession({ provider: chain.accounts[3]!.address, cap: 5_000_000n, expiresAt, sessionKey: null });
    expect(b.sessionKey).toBeUndefined();
    const payerWallet = new Wallet(chain.accounts[1]!.privateKey);
    const batch = [
      await payer.signVoucher(key, a.sessionId, 12_000_000n, 1_200n),
      await payer.signVoucher(payerWallet, b.sessionId, 1_000_000n, 100n),
    ];
    const receipt = await providerB.claimBatch(batch);
    expect(receipt.status).toBe(1);
    expect((await payer.getSession(a.sessionId)).claimed).toBe(12_000_000n);
    expect((await payer.getSession(b.sessionId)).claimed).toBe(1_000_000n);

    // Payer cannot close before expiry + grace; the provider can at once.
    await expectRevert(payer.closeSession(a.sessionId), 'CloseTooEarly');
    const free = await payer.balanceOf(payerAddress);
    await providerA.closeSession(a.sessionId);
    expect(await payer.balanceOf(payerAddress)).toBe(free + 38_000_000n);
    await expectRevert(providerA.claim(batch[0]!), 'SessionIsClosed');

    // After expiry + grace the payer closes b and gets the rest back.
    await provider.send('evm_increaseTime', [600 + 3600]);
    await provider.send('evm_mine', []);
    await payer.closeSession(b.sessionId);
    expect((await payer.getSession(b.sessionId)).closed).toBe(true);
    expect(await payer.balanceOf(payerAddress)).toBe(free + 38_000_000n + 4_000_000n);
  });

  it('tops up, and rejects bad arguments before sending anything', async () => {
    const t = await now();
    const { sessionId } = await payer.openSession({ provider: chain.accounts[2]!.address, cap: 1_000_000n, expiresAt: t + 100 });
    await payer.topUp(sessionId, 2_000_000n, t + 1000);
    expect(await payer.getSession(sessionId)).toMatchObject({ cap: 3_000_000n, expiresAt: BigInt(t + 1000) });
    await expectRevert(payer.topUp(sessionId, 1n, t + 10), 'ExpiryShortened');
    await expectRevert(providerA.topUp(sessionId, 1n, t + 2000), 'NotPayer');
    await expect(payer.openSession({ provider: 'nope', cap: 1n, expiresAt: t + 100 })).rejects.toThrow(InvalidArgumentError);
    await expect(payer.openSession({ provider: chain.accounts[2]!.address, cap: 1n, expiresAt: t + 100, sessionKey: chain.accounts[2]!.address })).rejects.toThrow(/must not be the provider/);
    await expect(payer.getSession('0x' + '00'.repeat(32))).rejects.toThrow(SessionNotFoundError);
    await expect(payer.claimBatch([])).rejects.toThrow(InvalidArgumentError);
    expect(() => new EscrowClient('0x1234', provider)).toThrow(InvalidArgumentError);
  });

  it('reports events by range and follows new ones in order', async () => {
    const all = await queryEscrowEvents(provider, chain.escrow, { fromBlock: chain.deployment.blockNumber });
    const types = new Set(all.map((e) => e.type));
    for (const t of ['Deposited', 'Withdrawn', 'SessionOpened', 'SessionToppedUp', 'Claimed', 'SessionClosed']) expect(types).toContain(t);
    const claimed = all.filter((e): e is Extract<EscrowEvent, { type: 'Claimed' }> => e.type === 'Claimed');
    expect(claimed.map((c) => c.amount)).toEqual([10_000_000n, 2_000_000n, 1_000_000n]);

    const seen: EscrowEvent[] = [];
    const follower = followEscrowEvents({ provider, escrow: chain.escrow, pollIntervalMs: 20, onEvent: (e) => seen.push(e), types: ['Deposited', 'SessionOpened'] });
    await follower.ready;
    await payer.deposit(1_000n);
    const t = await now();
    const { sessionId } = await payer.openSession({ provider: chain.accounts[2]!.address, cap: 1_000n, expiresAt: t + 100 });
    await expect.poll(() => seen.length, { timeout: 5_000 }).toBeGreaterThanOrEqual(2);
    follower.dispose();
    follower.dispose();
    expect(seen.map((e) => e.type)).toEqual(['Deposited', 'SessionOpened']);
    expect(seen[1]).toMatchObject({ type: 'SessionOpened', sessionId, payer: payerAddress, cap: 1_000n });

    // A handler that throws is reported, and the range is not delivered twice.
    const delivered: string[] = [];
    const errors: Error[] = [];
    const head = await provider.getBlockNumber();
    const f2 = followEscrowEvents({
      provider,
      escrow: chain.escrow,
      fromBlock: head - 1,
      pollIntervalMs: 20,
      onEvent: (e) => {
        delivered.push(`${e.blockNumber}:${e.logIndex}`);
        throw new Error('handler bug');
      },
      onError: (e) => errors.push(e),
    });
    await f2.ready;
    await new Promise((r) => setTimeout(r, 150)); // several more polls
    f2.dispose();
    expect(delivered.length).toBeGreaterThanOrEqual(2);
    expect(new Set(delivered).size).toBe(delivered.length);
    expect(errors.map((e) => e.message)).toEqual(delivered.map(() => 'handler bug'));
  });

  it('deploys against an existing token', async () => {
    const deployer = new Wallet(chain.accounts[0]!.privateKey, provider);
    const d = await deployContracts(deployer, { token: chain.token, closeGrace: 60 });
    expect(d).toMatchObject({ token: chain.token, tokenSymbol: 'KUSD', tokenDecimals: 6, closeGrace: 60, testToken: false, chainId: 31337 });
    expect(d.escrow).not.toBe(chain.escrow);
    await expect(deployContracts(deployer, { token: chain.accounts[5]!.address, closeGrace: 60 })).rejects.toThrow(/does not answer symbol/);
  });
});
