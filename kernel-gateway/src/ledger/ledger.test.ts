// The ledger against real signed receipts (protocol's EIP-712 signing) and a real SQLite
// file: a valid chain is accepted and adds up; every kind of tampering is rejected,
// recorded, and reported with its reason.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wallet } from 'ethers';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { amountForEnergy, signReceipt, type SignedReceipt, type UsageReceipt } from '@kinesis/protocol/receipt';
import { Router } from '../http/router.ts';
import { openLedger, usageRoutes, type Ledger, type ReceiptContext } from './index.ts';
import { prng as rng } from '@kinesis/protocol/testing/prng';

const CHAIN = 31337n;
const PRICE = 250_000_000_000_000_000n;
const provider = new Wallet('0x' + '33'.repeat(32));
const attacker = new Wallet('0x' + '44'.repeat(32));
const T0 = 1_790_000_000_000;


/** A provider-side chain of receipts for one kernel, as the meter would produce them. */
class Chain {
  seq = 0n;
  cum = 0n;
  toMs = T0;
  constructor(
    readonly kernelId: string,
    readonly wallet: Wallet = provider,
    readonly price: bigint = PRICE,
  ) {}
  next(r: () => number, over: Partial<UsageReceipt> = {}, signer: Wallet = this.wallet): SignedReceipt {
    const span = 100 + Math.floor(r() * 5000);
    const capMw = 300_000;
    const maxE = Math.floor((capMw * span) / 1000);
    const e = Math.floor(r() * maxE * 0.6);
    const idle = Math.floor(r() * maxE * 0.2);
    const carried = Math.floor(r() * maxE * 0.1);
    const cum = this.cum + BigInt(e + idle + carried);
    const from = this.toMs;
    const msg: UsageReceipt = {
      provider: this.wallet.address,
      kernelId: this.kernelId,
      msgId: `m${this.seq + 1n}`,
      seq: (this.seq + 1n).toString(),
      fromMs: String(from),
      toMs: String(from + span),
      startMs: String(from + 10),
      endMs: String(from + span),
      energyMj: String(e),
      idleEnergyMj: String(idle),
      carriedMj: String(carried),
      uncertaintyMj: String(Math.ceil((e + idle + carried) * 0.05)),
      method: 'nvml-counter',
      quality: 'measured',
      split: 'exclusive',
      device: 'nvidia:0:Fake H100',
      powerCapMw: String(capMw),
      pricePerKwh: this.price.toString(),
      cumulativeEnergyMj: cum.toString(),
      cumulativeAmount: amountForEnergy(cum, this.price).toString(),
      ...over,
    };
    return signReceipt(signer, msg, CHAIN);
  }
  /** Commit the last receipt as accepted. */
  commit(s: SignedReceipt): void {
    this.seq = BigInt(s.message.seq);
    this.cum = BigInt(s.message.cumulativeEnergyMj);
    this.toMs = Number(s.message.toMs);
  }
}

let dir = '';
let ledger: Ledger;
const ctx = (kernelId: string, over: Partial<ReceiptContext> = {}): ReceiptContext => ({ kernelId, sessionId: 's1', expectedPricePerKwh: PRICE, receivedAtMs: T0 + 10_000_000, ...over });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ledger-test-'));
  ledger = openLedger({ dataDir: dir, chainId: CHAIN });
});
afterEach(() => {
  ledger.close();
  ledger.close(); // safe twice
  rmSync(dir, { recursive: true, force: true });
});

describe('ledger: a valid chain', () => {
  it('accepts a seeded random chain; totals add up to the last cumulative figures exactly', () => {
    const r = rng(5);
    const chain = new Chain('k-1');
    for (let i = 0; i < 60; i++) {
      const s = chain.next(r);
      const res = ledger.verifyAndRecord(provider.address, JSON.parse(JSON.stringify(s)), ctx('k-1'));
      expect(res).toMatchObject({ ok: true, duplicate: false });
      chain.commit(s);
    }
    const { records, totals } = ledger.query({ kernelId: 'k-1' });
    expect(records).toHaveLength(60);
    expect(BigInt(totals.totalEnergyMj)).toBe(chain.cum);
    expect(BigInt(totals.amount)).toBe(amountForEnergy(chain.cum, PRICE));
    expect(records.at(-1)!.cumulativeAmount).toBe(totals.amount);
    expect(ledger.last('k-1')!.seq).toBe(60);
  });

  it('acknowledges an identical replay once, and continues across a reopen', () => {
    const r = rng(6);
    const chain = new Chain('k-2');
    const s1 = chain.next(r);
    expect(ledger.verifyAndRecord(provider.address, s1, ctx('k-2'))).toMatchObject({ ok: true, duplicate: false });
    chain.commit(s1);
    expect(ledger.verifyAndRecord(provider.address, s1, ctx('k-2'))).toMatchObject({ ok: true, duplicate: true });
    ledger.close();
    ledger = openLedger({ dataDir: dir, chainId: CHAIN });
    const s2 = chain.next(r);
    expect(ledger.verifyAndRecord(provider.address, s2, ctx('k-2')).ok).toBe(true);
    expect(ledger.query({ kernelId: 'k-2' }).totals.count).toBe(2);
  });

  it('allows a gap between spans (unbilled time) but not an overlap', () => {
    const r = rng(7);
    const chain = new Chain('k-3');
    const s1 = chain.next(r);
    ledger.verifyAndRecord(provider.address, s1, ctx('k-3'));
    chain.commit(s1);
    chain.toMs += 5000;
    const gap = chain.next(r);
    expect(ledger.verifyAndRecord(provider.address, gap, ctx('k-3')).ok).toBe(true);
    chain.commit(gap);
    chain.toMs -= 1;
    const overlap = chain.next(r);
    expect(ledger.verifyAndRecord(provider.address, overlap, ctx('k-3'))).toMatchObject({ ok: false, reason: 'overlap' });
  });
});

describe('ledger: tampered receipts are rejected and recorded', () => {
  function setup(seed: number): { chain: Chain; r: () => number } {
    const r = rng(seed);
    const chain = new Chain('k-t');
    const s = chain.next(r);
    expect(ledger.verifyAndRecord(provider.address, s, ctx('k-t')).ok).toBe(true);
    chain.commit(s);
    return { chain, r };
  }

  it('energy changed after signing (consistently, so only the signature can tell)', () => {
    const { chain, r } = setup(11);
    const s = chain.next(r);
    const m = s.message;
    const energy = BigInt(m.energyMj) + 1000n;
    const cum = BigInt(m.cumulativeEnergyMj) + 1000n;
    const forged = { ...s, message: { ...m, energyMj: energy.toString(), cumulativeEnergyMj: cum.toString(), cumulativeAmount: amountForEnergy(cum, PRICE).toString() } };
    expect(ledger.verifyAndRecord(provider.address, forged, ctx('k-t'))).toMatchObject({ ok: false, reason: 'bad-signature' });
  });

  it('a receipt signed by another key, even one naming itself as provider', () => {
    const { chain, r } = setup(12);
    expect(ledger.verifyAndRecord(provider.address, chain.next(r, {}, provider), ctx('k-t', {})).ok).toBe(true);
    const byAttacker = new Chain('k-t', attacker);
    byAttacker.seq = 2n;
    byAttacker.toMs = chain.toMs + 100_000;
    expect(ledger.verifyAndRecord(provider.address, byAttacker.next(r), ctx('k-t'))).toMatchObject({ ok: false, reason: 'bad-signature' });
  });

  it('another registered provider continuing a kernel it does not run (consistent seq and totals, its own valid signature)', () => {
    const { chain, r } = setup(14);
    const first = chain.next(r);
    expect(ledger.verifyAndRecord(provider.address, first, ctx('k-t')).ok).toBe(true);
    chain.commit(first);
    const other = new Chain('k-t', attacker);
    other.seq = chain.seq;
    other.cum = chain.cum;
    other.toMs = chain.toMs;
    expect(ledger.verifyAndRecord(attacker.address, other.next(r), ctx('k-t'))).toMatchObject({ ok: false, reason: 'wrong-provider' });
  });

  it('a mangled signature', () => {
    const { chain, r } = setup(13);
    const s = chain.next(r);
    const sig = s.signature.slice(0, 10) + (s.signature[10] === 'a' ? 'b' : 'a') + s.signature.slice(11);
    const res = ledger.verifyAndRecord(provider.address, { ...s, signature: sig }, ctx('k-t'));
    expect(res.ok).toBe(false);
    expect(['bad-signature', 'malformed']).toContain((res as { reason: string }).reason);
  });

  it('price other than advertised, even when honestly signed', () => {
    const { r } = setup(14);
    const other = new Chain('k-p', provider, PRICE * 2n);
    expect(ledger.verifyAndRecord(provider.address, other.next(r), ctx('k-p'))).toMatchObject({ ok: false, reason: 'price-mismatch' });
  });

  it('sequence: replayed with other content, or restarted from 1', () => {
    const { chain, r } = setup(15);
    const again = new Chain('k-t');
    expect(ledger.verifyAndRecord(provider.address, again.next(r), ctx('k-t'))).toMatchObject({ ok: false, reason: 'sequence' });
    const first = new Chain('k-new');
    first.seq = 1n; // the first receipt the gateway sees for a kernel must be seq 1
    expect(ledger.verifyAndRecord(provider.address, first.next(r), ctx('k-new'))).toMatchObject({ ok: false, reason: 'sequence' });
    expect(chain.seq).toBe(1n);
  });

  it('lost receipts: a skipped seq is accepted when the missing energy fits the cap over the uncovered time', () => {
    const { chain, r } = setup(21);
    // Receipt 2 is lost on the way: 3 s uncovered at a 300 W cap leaves room for 900 J.
    const lost = chain.next(r);
    chain.commit(lost);
    const three = chain.next(r);
    const res = ledger.verifyAndRecord(provider.address, three, ctx('k-t'));
    expect(res).toMatchObject({ ok: true, duplicate: false });
    const gap = Number(lost.message.energyMj) + Number(lost.message.idleEnergyMj) + Number(lost.message.carriedMj);
    expect(res.ok && res.record.gapMj).toBe(gap);
    chain.commit(three);
    const totals = ledger.query({ kernelId: 'k-t' }).totals;
    expect(BigInt(totals.totalEnergyMj)).toBe(chain.cum); // nothing lost from the money
    expect(totals.amount).toBe(three.message.cumulativeAmount);
    // A skip whose missing energy could not have been drawn in the uncovered time is refused.
    const greedy = new Chain('k-t');
    greedy.seq = chain.seq + 1n;
    greedy.toMs = chain.toMs + 10; // 10 ms uncovered: room for 3 J
    greedy.cum = chain.cum + 50_000n; // claims 50 J in it
    expect(ledger.verifyAndRecord(provider.address, greedy.next(r), ctx('k-t'))).toMatchObject({ ok: false, reason: 'over-cap' });
  });

  it('a resend of an older accepted receipt is acknowledged as a duplicate', () => {
    const { chain, r } = setup(22);
    const first = ledger.query({ kernelId: 'k-t' }).records[0]!;
    const s2 = chain.next(r);
    expect(ledger.verifyAndRecord(provider.address, s2, ctx('k-t')).ok).toBe(true);
    chain.commit(s2);
    // Another message under a stored receipt's seq and signature is not that receipt.
    const forged = ledger.verifyAndRecord(provider.address, { message: { ...s2.message, seq: '1' }, signature: first.signature }, ctx('k-t'));
    expect(forged).toMatchObject({ ok: false, reason: 'bad-signature' });
    const s3 = chain.next(r);
    expect(ledger.verifyAndRecord(provider.address, s3, ctx('k-t')).ok).toBe(true);
    // The real receipt 2, resent after 3: acknowledged, not stored again, not judged stale.
    expect(ledger.verifyAndRecord(provider.address, s2, ctx('k-t'))).toMatchObject({ ok: true, duplicate: true, record: { seq: 2 } });
    expect(ledger.query({ kernelId: 'k-t' }).totals.count).toBe(3);
  });

  it('cumulative energy inconsistent with the previous receipt (signed by the provider)', () => {
    const { chain, r } = setup(16);
    const s = chain.next(r);
    const cum = BigInt(s.message.cumulativeEnergyMj) + 5n;
    const bad = chain.next(rng(16), { cumulativeEnergyMj: cum.toString(), cumulativeAmount: amountForEnergy(cum, PRICE).toString() });
    expect(ledger.verifyAndRecord(provider.address, bad, ctx('k-t'))).toMatchObject({ ok: false, reason: 'cumulative-mismatch' });
  });

  it('amount that is not the exact conversion', () => {
    const { chain, r } = setup(17);
    const s = chain.next(r);
    const raw = JSON.parse(JSON.stringify(s)) as { message: Record<string, string> };
    raw.message.cumulativeAmount = (BigInt(s.message.cumulativeAmount) + 1n).toString();
    expect(ledger.verifyAndRecord(provider.address, raw, ctx('k-t'))).toMatchObject({ ok: false, reason: 'amount-mismatch' });
  });

  it('energy over power cap × span, and a cap above the advertised hardware', () => {
    const { chain, r } = setup(18);
    const from = chain.toMs;
    const cum = chain.cum + 400_000n; // 400 J in 1 s at a 300 W cap
    const over = chain.next(r, { fromMs: String(from), toMs: String(from + 1000), startMs: String(from), endMs: String(from + 1000), energyMj: '400000', idleEnergyMj: '0', carriedMj: '0', cumulativeEnergyMj: cum.toString(), cumulativeAmount: amountForEnergy(cum, PRICE).toString() });
    expect(ledger.verifyAndRecord(provider.address, over, ctx('k-t'))).toMatchObject({ ok: false, reason: 'over-cap' });
    const bigCap = chain.next(r, { powerCapMw: '2000000' });
    expect(ledger.verifyAndRecord(provider.address, bigCap, ctx('k-t', { maxPowerCapMw: 700_000 }))).toMatchObject({ ok: false, reason: 'cap-too-high' });
  });

  it('a GPU method from a provider that advertised none; wrong kernel; wrong provider; the future; garbage', () => {
    const { chain, r } = setup(19);
    expect(ledger.verifyAndRecord(provider.address, chain.next(r), ctx('k-t', { gpuMethodsAllowed: false }))).toMatchObject({ ok: false, reason: 'method-mismatch' });
    expect(ledger.verifyAndRecord(provider.address, chain.next(r, { method: 'amdgpu-energy', device: 'amd:0:Radeon' }), ctx('k-t', { gpuMethodsAllowed: false }))).toMatchObject({ ok: false, reason: 'method-mismatch' });
    expect(ledger.verifyAndRecord(provider.address, chain.next(r), ctx('k-other'))).toMatchObject({ ok: false, reason: 'wrong-kernel' });
    expect(ledger.verifyAndRecord(attacker.address, chain.next(r), ctx('k-t'))).toMatchObject({ ok: false, reason: 'bad-signature' });
    expect(ledger.verifyAndRecord(provider.address, chain.next(r), ctx('k-t', { receivedAtMs: T0 - 1_000_000 }))).toMatchObject({ ok: false, reason: 'future' });
    for (const junk of [null, 'x', { message: {}, signature: '0x' }, { message: chain.next(r).message }, [1, 2]]) {
      expect(ledger.verifyAndRecord(provider.address, junk, ctx('k-t'))).toMatchObject({ ok: false, reason: 'malformed' });
    }
  });

  it('keeps every rejection with its reason, and none of them in the totals', () => {
    const { chain, r } = setup(20);
    ledger.verifyAndRecord(provider.address, chain.next(r), ctx('k-t', { expectedPricePerKwh: 1n }));
    ledger.verifyAndRecord(provider.address, 'garbage', ctx('k-t'));
    const rej = ledger.rejected({ kernelId: 'k-t' });
    expect(rej.map((x) => x.reason)).toEqual(['price-mismatch', 'malformed']);
    expect(rej[0]!.seq).toBe('2');
    expect(ledger.query({ kernelId: 'k-t' }).totals.count).toBe(1);
  });
});

describe('ledger: any single-field change to a signed receipt is rejected (seeded)', () => {
  it('mutates every field of many receipts, keeping the signature', () => {
    const r = rng(77);
    const chain = new Chain('k-f');
    const alt: Record<string, (v: string) => string> = {
      provider: () => attacker.address,
      kernelId: (v) => v + 'x',
      msgId: (v) => v + 'x',
      method: (v) => (v === 'nvml-counter' ? 'nvml-power' : 'nvml-counter'),
      quality: (v) => (v === 'measured' ? 'measured-short' : 'measured'),
      split: (v) => (v === 'exclusive' ? 'shared-equal' : 'exclusive'),
      device: (v) => v + 'x',
    };
    let rejected = 0;
    for (let i = 0; i < 10; i++) {
      const s = chain.next(r);
      for (const key of Object.keys(s.message) as Array<keyof UsageReceipt>) {
        const v = s.message[key];
        const mutated = alt[key] ? alt[key]!(v) : (BigInt(v) + BigInt(1 + Math.floor(r() * 3))).toString();
        const res = ledger.verifyAndRecord(provider.address, { message: { ...s.message, [key]: mutated }, signature: s.signature }, ctx('k-f'));
        expect(res.ok, `${key} ${v} → ${mutated}`).toBe(false);
        rejected++;
      }
      expect(ledger.verifyAndRecord(provider.address, s, ctx('k-f')).ok).toBe(true);
      chain.commit(s);
    }
    // Rejections are filed under the kernel the gateway routed for, whatever the receipt claims.
    expect(ledger.rejected({ kernelId: 'k-f', limit: 10_000 })).toHaveLength(rejected);
    expect(ledger.query({ kernelId: 'k-f' }).totals.count).toBe(10);
  });
});

describe('GET /api/usage', () => {
  let server: Server;
  let base = '';
  afterAll(() => server?.close());

  it('filters by kernel, session, provider and time, with totals; rejects bad queries with 400', async () => {
    const router = new Router().add(...usageRoutes(ledger));
    server = createServer((req, res) => {
      void router.handle(req, res, new URL(req.url ?? '/', 'http://x')).then((done) => {
        if (!done) res.writeHead(404).end();
      });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const r = rng(30);
    const a = new Chain('k-a');
    const b = new Chain('k-b');
    for (let i = 0; i < 5; i++) {
      const sa = a.next(r);
      expect(ledger.verifyAndRecord(provider.address, sa, ctx('k-a', { sessionId: 'sa' })).ok).toBe(true);
      a.commit(sa);
      const sb = b.next(r);
      expect(ledger.verifyAndRecord(provider.address, sb, ctx('k-b', { sessionId: 'sb' })).ok).toBe(true);
      b.commit(sb);
    }
    ledger.verifyAndRecord(provider.address, 'junk', ctx('k-a', { sessionId: 'sa' }));
    const get = async (q: string): Promise<{ status: number; body: any }> => {
      const res = await fetch(`${base}/api/usage${q}`);
      return { status: res.status, body: await res.json() };
    };
    const all = await get('');
    expect(all.status).toBe(200);
    expect(all.body.records).toHaveLength(10);
    expect(all.body.totals.amount).toBe((amountForEnergy(a.cum, PRICE) + amountForEnergy(b.cum, PRICE)).toString());
    const ka = await get('?kernel_id=k-a&include_rejected=1');
    expect(ka.body.records.every((x: { kernelId: string }) => x.kernelId === 'k-a')).toBe(true);
    expect(ka.body.totals.totalEnergyMj).toBe(Number(a.cum));
    expect(ka.body.rejected.map((x: { reason: string }) => x.reason)).toEqual(['malformed']);
    expect((await get('?session_id=sb')).body.totals.count).toBe(5);
    expect((await get(`?provider=${provider.address.toLowerCase()}`)).body.totals.count).toBe(10);
    expect((await get(`?provider=${attacker.address}`)).body.totals.count).toBe(0);
    const third = all.body.records[2].toMs as number;
    const since = await get(`?since=${third}&until=${new Date(T0 + 10_000_000).toISOString()}`);
    expect(since.body.records.every((x: { toMs: number }) => x.toMs >= third)).toBe(true);
    expect(since.body.totals.count).toBe(8);
    expect((await get('?limit=2&offset=1')).body.records).toHaveLength(2);
    for (const bad of ['?provider=0x12', '?limit=0', '?limit=abc', '?since=yesterday-ish', '?kernel_id=' + 'x'.repeat(300), '?bogus=1']) {
      const res = await get(bad);
      expect(res.status, bad).toBe(400);
      expect(typeof res.body.message).toBe('string');
    }
  });
});
