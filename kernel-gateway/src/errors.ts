// The gateway's errors. All derive from the project's base error; HTTP handlers map them to
// responses in one place (http/router.ts via toHttpError below).
import { KinesisError } from '@kinesis/protocol/errors';
import { HttpError } from './http/errors.ts';

export class GatewayError extends KinesisError {
  override name = 'GatewayError';
}

/** The provider's tunnel closed while a request to it was outstanding. */
export class LinkClosedError extends GatewayError {
  override name = 'LinkClosedError';
}

/** The provider answered a request with `ok: false`. */
export class ProviderRequestError extends GatewayError {
  override name = 'ProviderRequestError';
}

/** A request to a provider got no reply in time. */
export class RequestTimeoutError extends GatewayError {
  override name = 'RequestTimeoutError';
}

/** Placement found no provider that fits (unknown spec or constraints). */
export class PlacementError extends GatewayError {
  override name = 'PlacementError';
}

export { KinesisError, HttpError };

/** The one mapping from gateway errors to HTTP (used by http/router.ts). */
export function asHttpError(err: unknown): HttpError | undefined {
  if (err instanceof HttpError) return err;
  if (err instanceof PlacementError) return new HttpError(400, err.shortMessage, 'Bad Request', { cause: err });
  if (err instanceof LinkClosedError) return new HttpError(409, err.shortMessage, 'Conflict', { cause: err });
  if (err instanceof RequestTimeoutError) return new HttpError(504, err.shortMessage, 'Gateway Timeout', { cause: err });
  if (err instanceof ProviderRequestError) return new HttpError(502, `the provider refused: ${err.shortMessage}`, 'Bad Gateway', { cause: err });
  if (err instanceof KinesisError && err.name === 'ProtocolError') return new HttpError(400, err.shortMessage, 'Bad Request', { cause: err });
  return undefined;
}
