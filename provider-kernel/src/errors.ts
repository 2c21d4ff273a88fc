// The provider's errors. Everything derives from the project's one base error, so
// callers can catch KinesisError and show `shortMessage` to a person.
import { KinesisError } from '@kinesis/protocol/errors';

/** Something about this machine's setup is wrong (key file, data dir, flags): the owner must fix it. */
export class ProviderConfigError extends KinesisError {
  override name = 'ProviderConfigError';
}

/** A kernel could not be started, reached, interrupted, restarted or stopped. */
export class KernelError extends KinesisError {
  override name = 'KernelError';
}

/** A kernel.json that does not describe a kernel we can launch. */
export class KernelSpecError extends KinesisError {
  override name = 'KernelSpecError';
}

export { KinesisError };

/** Message of any thrown value, for logs. */
export function errorText(e: unknown): string {
  if (e instanceof KinesisError) return e.shortMessage;
  if (e instanceof Error) return e.message;
  return String(e);
}
