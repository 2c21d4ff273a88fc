// The project's one base error. `shortMessage` is safe to show a user; `details` may
// say more for logs; `cause` chains the original error. Never put a token or key in any
// of them.
export class KinesisError extends Error {
  override name = 'KinesisError';
  readonly shortMessage: string;
  readonly details: string | undefined;

  constructor(shortMessage: string, opts: { details?: string; cause?: unknown } = {}) {
    super(opts.details ? `${shortMessage}\n\nDetails: ${opts.details}` : shortMessage, { cause: opts.cause });
    this.shortMessage = shortMessage;
    this.details = opts.details;
  }
}

/** WebSocket close codes (RFC 6455 §7.4.1) that a decoder failure maps to. */
export type ProtocolCloseCode = 1003 | 1007 | 1009;

/** A frame or message that breaks a wire format. `closeCode` says how to close the socket. */
export class ProtocolError extends KinesisError {
  override name = 'ProtocolError';
  constructor(
    readonly closeCode: ProtocolCloseCode,
    shortMessage: string,
    opts: { details?: string; cause?: unknown } = {},
  ) {
    super(shortMessage, opts);
  }
}

export const malformed = (msg: string, cause?: unknown): ProtocolError => new ProtocolError(1007, msg, { cause });
export const tooBig = (size: number, max: number): ProtocolError =>
  new ProtocolError(1009, `frame of ${size} bytes is over the limit of ${max} bytes`);
