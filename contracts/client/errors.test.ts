import { Interface } from 'ethers';
import { describe, expect, it } from 'vitest';
import { KinesisEscrowAbi } from './artifacts/abi.ts';
import { ChainError, ContractsError, EscrowRevertError, redactUrl } from './errors.ts';
import { decodeRevert, toContractsError } from './revert.ts';

describe('errors', () => {
  it('redact credentials, queries and key-like path segments from URLs', () => {
    expect(redactUrl('https://user:secret@rpc.example.org/v3/0123456789abcdef0123456789abcdef?key=abc')).toBe('https://***@rpc.example.org/v3/***?***');
    expect(redactUrl('http://127.0.0.1:8545')).toBe('http://127.0.0.1:8545/');
    expect(redactUrl('not a url')).toBe('<unparseable url>');
  });

  it('decode the escrow custom errors from revert data, wherever ethers nests it', () => {
    const iface = new Interface(KinesisEscrowAbi as never);
    const id = '0x' + 'ab'.repeat(32);
    const data = iface.encodeErrorResult('CapExceeded', [id, 10n, 11n]);
    expect(decodeRevert(data)).toEqual({ name: 'CapExceeded', args: { sessionId: id, cap: 10n, cumulativeAmount: 11n } });
    const wrapped = { code: 'CALL_EXCEPTION', info: { error: { data } } };
    const e = toContractsError(wrapped, 'claim()');
    expect(e).toBeInstanceOf(EscrowRevertError);
    expect((e as EscrowRevertError).errorName).toBe('CapExceeded');
    expect(e.cause).toBe(wrapped);
  });

  it('wrap anything else as a ChainError with the URL redacted and the cause kept', () => {
    const cause = new Error('connect ECONNREFUSED https://u:p@node.example/abc?apikey=1');
    const e = toContractsError(cause, 'deposit()');
    expect(e).toBeInstanceOf(ChainError);
    expect(e).toBeInstanceOf(ContractsError);
    expect(e.shortMessage).toBe('deposit() failed');
    expect(e.message).not.toMatch(/apikey=1|u:p@/);
    expect(e.cause).toBe(cause);
  });
});
