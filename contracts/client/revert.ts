// Turns what ethers throws into the package's typed errors: an escrow custom error becomes an
// EscrowRevertError with its decoded arguments; anything else a ChainError that keeps the
// original as `cause` (with any RPC URL in the message redacted).
import { Interface, isError } from 'ethers';
import { ChainError, ContractsError, EscrowRevertError, redactUrl } from './errors.ts';
import { KinesisEscrowAbi, KUSDAbi } from './artifacts/abi.ts';

const escrowInterface = new Interface(KinesisEscrowAbi as never);
const tokenInterface = new Interface(KUSDAbi as never);

function findRevertData(err: unknown, depth = 0): string | undefined {
  if (depth > 4 || typeof err !== 'object' || err === null) return undefined;
  const e = err as { data?: unknown; error?: unknown; info?: unknown; cause?: unknown };
  if (typeof e.data === 'string' && e.data.startsWith('0x') && e.data.length >= 10) return e.data;
  if (typeof e.data === 'object' && e.data !== null) {
    const inner = findRevertData(e.data, depth + 1);
    if (inner) return inner;
  }
  return findRevertData(e.error, depth + 1) ?? findRevertData(e.info, depth + 1) ?? findRevertData(e.cause, depth + 1);
}

/** Decodes revert data from the escrow or its token (OpenZeppelin ERC-20 errors). */
export function decodeRevert(data: string): { name: string; args: Record<string, unknown> } | undefined {
  for (const iface of [escrowInterface, tokenInterface]) {
    try {
      const parsed = iface.parseError(data);
      if (!parsed) continue;
      const args: Record<string, unknown> = {};
      parsed.fragment.inputs.forEach((input, i) => {
        args[input.name || `arg${i}`] = parsed.args[i];
      });
      return { name: parsed.name, args };
    } catch {
      // not this interface's error
    }
  }
  return undefined;
}

export function toContractsError(err: unknown, action: string): ContractsError {
  if (err instanceof ContractsError) return err;
  const data = findRevertData(err);
  if (data) {
    const decoded = decodeRevert(data);
    if (decoded) return new EscrowRevertError(decoded.name, decoded.args, { cause: err });
  }
  let details: string | undefined;
  if (isError(err, 'CALL_EXCEPTION')) details = err.shortMessage;
  else if (err instanceof Error) details = (err as { shortMessage?: string }).shortMessage ?? err.message;
  if (details) details = details.replace(/https?:\/\/[^\s"']+/g, (u) => redactUrl(u)).slice(0, 500);
  return new ChainError(`${action} failed`, { details, cause: err });
}
