// The escrow client: typed calls to KinesisEscrow through ethers v6, shared by the IDE (with a
// browser wallet), the gateway and the provider. Pure (no Node APIs), so a browser bundle can
// import it as `@kinesis/contracts/escrow`. Every method validates its arguments first and
// throws ContractsError subclasses: InvalidArgumentError, EscrowRevertError (the contract's
// custom error, decoded), SessionNotFoundError, VoucherError, ChainError.
import { Contract, type ContractRunner, type ContractTransactionResponse, type Provider, type TransactionReceipt, type Wallet } from 'ethers';
import { KinesisEscrowAbi, KUSDAbi } from './artifacts/abi.ts';
import { ChainError, InvalidArgumentError, SessionNotFoundError } from './errors.ts';
import { toContractsError } from './revert.ts';
import { createSessionKey } from './session-key.ts';
import { MAX_CAP, ZERO_ADDRESS, parseAddress, parseBytes32, parseSignature, parseUint, parseVoucher, type Session, type SignedVoucher } from './types.ts';
import { escrowDomain, signVoucher, verifyVoucher, type EscrowDomain, type TypedDataSigner, type VerifiedVoucher } from './voucher.ts';

export interface OpenSessionParams {
  readonly provider: string;
  readonly cap: bigint;
  /** Unix seconds. */
  readonly expiresAt: bigint | number;
  /**
   * The session key: omitted → a fresh one is generated and returned; a Wallet or address →
   * that key; null → no session key, only the payer signs.
   */
  readonly sessionKey?: Wallet | string | null;
}

export interface OpenedSession {
  readonly sessionId: string;
  /** The generated (or given) session key wallet; undefined when an address or null was given. */
  readonly sessionKey: Wallet | undefined;
  readonly receipt: TransactionReceipt;
}

export class EscrowClient {
  readonly address: string;
  readonly runner: ContractRunner;
  readonly #escrow: Contract;
  #domain: Promise<EscrowDomain> | undefined;
  #token: Promise<string> | undefined;

  /** `runner`: a Signer to send transactions, or a Provider for reads only. */
  constructor(address: string, runner: ContractRunner) {
    this.address = parseAddress('escrow address', address);
    this.runner = runner;
    this.#escrow = new Contract(this.address, KinesisEscrowAbi as never, runner);
  }

  // ------------------------------------------------------------ reads

  /** The EIP-712 domain, from the connected chain's id. */
  domain(): Promise<EscrowDomain> {
    this.#domain ??= this.#provider()
      .getNetwork()
      .then((n) => escrowDomain(n.chainId, this.address))
      .catch((err: unknown) => {
        this.#domain = undefined;
        throw toContractsError(err, 'reading the chain id');
      });
    return this.#domain;
  }

  token(): Promise<string> {
    this.#token ??= this.#read<string>('token', []).catch((err: unknown) => {
      this.#token = undefined;
      throw err;
    });
    return this.#token;
  }

  async closeGrace(): Promise<bigint> {
    return this.#read<bigint>('closeGrace', []);
  }

  /** Free (unlocked) balance of a payer in the escrow. */
  async balanceOf(payer: string): Promise<bigint> {
    return this.#read<bigint>('balanceOf', [parseAddress('payer', payer)]);
  }

  async nextSessionId(payer: string): Promise<string> {
    return (await this.#read<string>('nextSessionId', [parseAddress('payer', payer)])).toLowerCase();
  }

  /** Throws SessionNotFoundError for an id the escrow never issued. */
  async getSession(sessionId: string): Promise<Session> {
    const id = parseBytes32('sessionId', sessionId);
    const s = await this.#read<{
      payer: string; provider: string; signer: string; cap: bigint; claimed: bigint; claimedEnergyMj: bigint; expiresAt: bigint; closed: boolean;
    }>('getSession', [id]);
    if (s.provider === ZERO_ADDRESS) throw new SessionNotFoundError(id);
    return {
      sessionId: id,
      payer: s.payer,
      provider: s.provider,
      signer: s.signer,
      cap: s.cap,
      claimed: s.claimed,
      claimedEnergyMj: s.claimedEnergyMj,
      expiresAt: s.expiresAt,
      closed: s.closed,
    };
  }

  /** Off-chain check of a voucher against the session's current on-chain state. */
  async verifyVoucher(signed: SignedVoucher): Promise<VerifiedVoucher> {
    const v = parseVoucher(signed.voucher);
    return verifyVoucher(await this.domain(), await this.getSession(v.sessionId), { voucher: v, signature: signed.signature });
  }

  /** Signs a voucher for this escrow with a session key (or the payer's signer). */
  async signVoucher(signer: TypedDataSigner, sessionId: string, cumulativeAmount: bigint, cumulativeEnergyMj: bigint): Promise<SignedVoucher> {
    return signVoucher(signer, await this.domain(), { sessionId: parseBytes32('sessionId', sessionId), cumulativeAmount, cumulativeEnergyMj });
  }

  // ------------------------------------------------------------ writes

  /** Deposits `amount` for the sender, approving the escrow on the token first if needed. */
  async deposit(amount: bigint): Promise<TransactionReceipt> {
    const a = positive('amount', amount);
    await this.#ensureAllowance(a);
    return this.#send('deposit', [a]);
  }

  async depositFor(payer: string, amount: bigint): Promise<TransactionReceipt> {
    const p = parseAddress('payer', payer);
    const a = positive('amount', amount);
    await this.#ensureAllowance(a);
    return this.#send('depositFor', [p, a]);
  }

  async withdraw(amount: bigint): Promise<TransactionReceipt> {
    return this.#send('withdraw', [positive('amount', amount)]);
  }

  async openSession(params: OpenSessionParams): Promise<OpenedSession> {
    const provider = parseAddress('provider', params.provider);
    const cap = parseUint('cap', params.cap, MAX_CAP);
    if (cap === 0n) throw new InvalidArgumentError('cap', 'must be positive');
    const expiresAt = parseUint('expiresAt', params.expiresAt, (1n << 64n) - 1n);
    let sessionKey: Wallet | undefined;
    let signerAddress: string;
    if (params.sessionKey === undefined) {
      sessionKey = createSessionKey();
      signerAddress = sessionKey.address;
    } else if (params.sessionKey === null) {
      signerAddress = ZERO_ADDRESS;
    } else if (typeof params.sessionKey === 'string') {
      signerAddress = parseAddress('sessionKey', params.sessionKey);
    } else {
      sessionKey = params.sessionKey;
      signerAddress = sessionKey.address;
    }
    if (signerAddress.toLowerCase() === provider.toLowerCase()) {
      throw new InvalidArgumentError('sessionKey', 'must not be the provider (it could sign its own pay)');
    }
    const receipt = await this.#send('openSession', [provider, signerAddress, cap, expiresAt]);
    const opened = this.#eventsIn(receipt, 'SessionOpened')[0];
    if (!opened) throw new ChainError('openSession succeeded but emitted no SessionOpened event');
    return { sessionId: String(opened.args[0]).toLowerCase(), sessionKey, receipt };
  }

  async topUp(sessionId: string, amount: bigint, newExpiresAt: bigint | number): Promise<TransactionReceipt> {
    return this.#send('topUp', [
      parseBytes32('sessionId', sessionId),
      parseUint('amount', amount, MAX_CAP),
      parseUint('newExpiresAt', newExpiresAt, (1n << 64n) - 1n),
    ]);
  }

  async claim(signed: SignedVoucher): Promise<TransactionReceipt> {
    const v = parseVoucher(signed.voucher);
    return this.#send('claim', [toTuple(v), parseSignature('signature', signed.signature)]);
  }

  /** All or nothing; each provider is paid once for all its sessions in the batch. */
  async claimBatch(signed: readonly SignedVoucher[]): Promise<TransactionReceipt> {
    if (!Array.isArray(signed) || signed.length === 0) throw new InvalidArgumentError('vouchers', 'expected a non-empty array');
    if (signed.length > 256) throw new InvalidArgumentError('vouchers', 'at most 256 per batch (block gas)');
    const vs = signed.map((s) => toTuple(parseVoucher(s.voucher)));
    const sigs = signed.map((s, i) => parseSignature(`signatures[${i}]`, s.signature));
    return this.#send('claimBatch', [vs, sigs]);
  }

  async closeSession(sessionId: string): Promise<TransactionReceipt> {
    return this.#send('closeSession', [parseBytes32('sessionId', sessionId)]);
  }

  // ------------------------------------------------------------ internals

  #provider(): Provider {
    const p = this.runner.provider ?? (isProvider(this.runner) ? this.runner : null);
    if (!p) throw new InvalidArgumentError('runner', 'has no provider attached');
    return p;
  }

  async #read<T>(method: string, args: unknown[]): Promise<T> {
    try {
      const fn = this.#escrow.getFunction(method);
      return (await fn.staticCall(...args)) as T;
    } catch (err) {
      throw toContractsError(err, `${method}()`);
    }
  }

  async #send(method: string, args: unknown[]): Promise<TransactionReceipt> {
    let tx: ContractTransactionResponse;
    try {
      tx = (await this.#escrow.getFunction(method).send(...args)) as ContractTransactionResponse;
    } catch (err) {
      throw toContractsError(err, `${method}()`);
    }
    return waitFor(tx, method);
  }

  async #ensureAllowance(amount: bigint): Promise<void> {
    const runner = this.runner as ContractRunner & { getAddress?: () => Promise<string> };
    if (typeof runner.getAddress !== 'function') throw new InvalidArgumentError('runner', 'a Signer is needed to send transactions');
    const owner = await runner.getAddress();
    const token = new Contract(await this.token(), KUSDAbi as never, this.runner);
    let allowance: bigint;
    try {
      allowance = (await token.getFunction('allowance').staticCall(owner, this.address)) as bigint;
    } catch (err) {
      throw toContractsError(err, 'token.allowance()');
    }
    if (allowance >= amount) return;
    let tx: ContractTransactionResponse;
    try {
      tx = (await token.getFunction('approve').send(this.address, amount)) as ContractTransactionResponse;
    } catch (err) {
      throw toContractsError(err, 'token.approve()');
    }
    await waitFor(tx, 'token.approve');
  }

  #eventsIn(receipt: TransactionReceipt, name: string): { args: readonly unknown[] }[] {
    const out: { args: readonly unknown[] }[] = [];
    for (const log of receipt.logs) {
      if (log.address.toLowerCase() !== this.address.toLowerCase()) continue;
      const parsed = this.#escrow.interface.parseLog(log);
      if (parsed?.name === name) out.push({ args: parsed.args });
    }
    return out;
  }
}

async function waitFor(tx: ContractTransactionResponse, what: string): Promise<TransactionReceipt> {
  let receipt: TransactionReceipt | null;
  try {
    receipt = await tx.wait();
  } catch (err) {
    throw toContractsError(err, what);
  }
  if (!receipt) throw new ChainError(`${what}: transaction ${tx.hash} was dropped`);
  return receipt;
}

function positive(name: string, amount: bigint): bigint {
  const a = parseUint(name, amount);
  if (a === 0n) throw new InvalidArgumentError(name, 'must be positive');
  return a;
}

function toTuple(v: { sessionId: string; cumulativeAmount: bigint; cumulativeEnergyMj: bigint }): [string, bigint, bigint] {
  return [v.sessionId, v.cumulativeAmount, v.cumulativeEnergyMj];
}

function isProvider(r: ContractRunner): r is Provider {
  return typeof (r as Provider).getNetwork === 'function';
}
