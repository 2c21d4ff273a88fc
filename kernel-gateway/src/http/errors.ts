// One error type for the whole HTTP surface, mapped to a response in one place
// (router.ts). Handlers throw HttpError; anything else becomes a 500 whose details are
// logged, never sent (they can hold paths or keys).
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
    readonly reason?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const badRequest = (message: string, cause?: unknown): HttpError => new HttpError(400, message, 'Bad Request', { cause });
export const notFound = (message: string): HttpError => new HttpError(404, message, 'Not Found');
export const forbidden = (message: string): HttpError => new HttpError(403, message, 'Forbidden');
export const conflict = (message: string): HttpError => new HttpError(409, message, 'Conflict');
