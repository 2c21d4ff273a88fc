// A dishonest provider: the gateway verifies every receipt that rides in an execute_reply,
// records the verdict, and tells the client in a `kinesis_usage` iopub message whose parent
// is the execute_request. The provider here is the labelled TEST PEER (its echo kernel lets
// us put any receipt in a reply); the honest path with the real provider and ipykernel is
// covered in e2e/jupyterlab-services.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Wallet } from 'ethers';
import { makeMessage, type JupyterMessage } from '@kinesis/protocol';
import { amountForEnergy, signReceipt, USAGE_MSG_TYPE, type SignedReceipt, type UsageReceipt } from '@kinesis/protocol/receipt';
import { advertisedCapMw } from './receipts.ts';
import { startTestGateway, TestClient, type TestGateway } from './testing/harness.ts';
import { CPU_HARDWARE, ProviderPeer, PYTHON_SPEC } from './testing/provider-peer.ts';

const PRICE = 300_000n;
const CAP_W = 65;
let gw: TestGateway;
let peer: ProviderPeer;
let kernelId: string;
let client: TestClient;

beforeAll(async () => {
  gw = await startTestGateway();
  const hardware = { ...CPU_HARDWARE, devices: CPU_HARDWARE.devices.map((d) => ({ ...d, powerLimitW: CAP_W })) };
  peer = await ProviderPeer.connect(gw.url, { pricePerKwh: PRICE, hardware, kernelspecs: [PYTHON_SPEC] });
  const specs = (await gw.api('/api/kernelspecs')).body as { default: string };
  kernelId = ((await gw.api('/api/kernels', { method: 'POST', json: { name: specs.default } })).body as { id: string }).id;
  client = await TestClient.connect(gw.url, kernelId);
});

afterAll(async () => {
  await client?.close();
  peer?.kill();
  await gw?.stop();
});

let seq = 0n;
let cum = 0n;
let toMs = Date.now() - 60_000;

/** The next honest receipt, optionally altered after or before signing. */
function receipt(over: Partial<UsageReceipt> = {}, opts: { signer?: Wallet; tamperAfterSigning?: Partial<UsageReceipt>; advance?: boolean } = {}): SignedReceipt {
  const from = toMs;
  const span = 1000;
  const energy = 20_000n; // 20 J over 1 s: 20 W, under the 65 W cap
  const nextCum = cum + energy;
  const msg: UsageReceipt = {
    provider: peer.address,
    kernelId,
    msgId: `m-${seq + 1n}`,
    seq: String(seq + 1n),
    fromMs: String(from),
    toMs: String(from + span),
    startMs: String(from),
    endMs: String(from + span),
    energyMj: String(energy),
    idleEnergyMj: '0',
    carriedMj: '0',
    uncertaintyMj: '2000',
    method: 'estimate',
    quality: 'estimated',
    split: 'exclusive',
    device: 'cpu:AMD EPYC 7B13',
    powerCapMw: String(CAP_W * 1000),
    pricePerKwh: PRICE.toString(),
    cumulativeEnergyMj: String(nextCum),
    cumulativeAmount: String(amountForEnergy(nextCum, PRICE)),
    ...over,
  };
  const signed = signReceipt(opts.signer ?? peer.wallet, msg, 31337);
  if (opts.advance !== false) {
    seq += 1n;
    cum = nextCum;
    toMs = from + span;
  }
  return opts.tamperAfterSigning ? { ...signed, message: { ...signed.message, ...opts.tamperAfterSigning } } : signed;
}

/** Sends an execute_reply carrying `r` for a request of the client's, returns the notice. */
async function deliver(r: SignedReceipt): Promise<{ accepted: boolean; reason?: string }> {
  const req = client.request('shell', 'execute_request', { code: 'noop', silent: false });
  await client.reply(req); // the echo kernel's own reply; ours follows
  const reply: JupyterMessage = makeMessage({ channel: 'shell', msgType: 'execute_reply', session: 'k', parent: req.header, content: { status: 'ok', execution_count: 1 }, metadata: { kinesis: { receipt: r } } });
  peer.sendKernelMessage(kernelId, reply);
  const notice = await client.waitFor((m) => m.header.msg_type === USAGE_MSG_TYPE && m.parent_header.msg_id === req.header.msg_id);
  return (notice.content as { verdict: { accepted: boolean; reason?: string } }).verdict;
}

describe('receipts through the gateway', () => {
  it('accepts an honest receipt and says so', async () => {
    expect(await deliver(receipt())).toEqual({ accepted: true });
  });

  it('rejects tampered energy (signature no longer matches) and tells the client', async () => {
    // Every figure consistent with the inflated energy: only the signature can catch it.
    const inflated = cum + 40_000n;
    const v = await deliver(receipt({}, { tamperAfterSigning: { energyMj: '40000', cumulativeEnergyMj: String(inflated), cumulativeAmount: String(amountForEnergy(inflated, PRICE)) }, advance: false }));
    expect(v.accepted).toBe(false);
    expect(['bad-signature', 'wrong-provider']).toContain(v.reason);
  });

  it('rejects a receipt at another price than the provider advertised', async () => {
    const price = PRICE * 10n;
    const v = await deliver(receipt({ pricePerKwh: price.toString(), cumulativeAmount: String(amountForEnergy(cum + 20_000n, price)) }, { advance: false }));
    expect(v).toMatchObject({ accepted: false });
  });

  it('rejects a receipt signed by someone else', async () => {
    const v = await deliver(receipt({ provider: new Wallet('0x' + '55'.repeat(32)).address }, { signer: new Wallet('0x' + '55'.repeat(32)), advance: false }));
    expect(v).toMatchObject({ accepted: false });
  });

  it('rejects a replayed sequence number with different figures', async () => {
    const replay = receipt({ seq: String(seq), msgId: 'again' }, { advance: false });
    expect(await deliver(replay)).toMatchObject({ accepted: false });
  });

  it('rejects a cap above what the provider advertised', async () => {
    const v = await deliver(receipt({ powerCapMw: String(10 * CAP_W * 1000) }, { advance: false }));
    expect(v).toMatchObject({ accepted: false });
    expect(advertisedCapMw({ ...CPU_HARDWARE, devices: [{ ...CPU_HARDWARE.devices[0]!, powerLimitW: CAP_W }] })).toBe(65_000n);
    expect(advertisedCapMw(CPU_HARDWARE)).toBeUndefined();
  });

  it('records accepted and rejected receipts in the ledger', async () => {
    const r = (await gw.api(`/api/usage?kernel_id=${kernelId}&include_rejected=1`)).body as { records: unknown[]; rejected: unknown[] };
    expect(r.records).toHaveLength(1);
    expect(r.rejected.length).toBeGreaterThanOrEqual(5);
  });
});
