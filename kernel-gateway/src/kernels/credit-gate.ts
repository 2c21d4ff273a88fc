// Credit back to the provider for one kernel's frames (docs/protocols.md, "Flow control"):
// granted as the gateway hands frames on, withheld while a client of the kernel has more than
// `clientHighWaterBytes` buffered, so a kernel cannot outrun its slowest reader by more than
// its credit. Withheld credit is granted once no client is over the mark: as soon as a
// congested client's completed writes bring it under, and at least every CREDIT_POLL_MS.
import type { ProviderLink } from '../providers/link.ts';
import type { Logger } from '../logger.ts';
import type { ClientConnection } from './client.ts';

const CREDIT_POLL_MS = 5;

export interface CreditGateOptions {
  /** Credit is withheld while any client has more than this buffered on its socket. */
  readonly clientHighWaterBytes: number;
  /** A client with more than this buffered is dropped (it can reconnect and get the replay). */
  readonly clientMaxBufferedBytes: number;
  readonly logger: Logger;
}

export class CreditGate {
  #owed = 0;
  #owedLink: ProviderLink | undefined;
  #timer: NodeJS.Timeout | undefined;
  #disposed = false;

  constructor(
    private readonly kernelId: string,
    /** The kernel's clients (the kernel's own set, read as it changes). */
    private readonly clients: ReadonlySet<ClientConnection>,
    private readonly opts: CreditGateOptions,
  ) {}

  /** True when a client is over the high-water mark; drops clients past the maximum. */
  congested(): boolean {
    let congested = false;
    for (const c of this.clients) {
      const n = c.bufferedAmount;
      if (n > this.opts.clientMaxBufferedBytes) {
        this.opts.logger.warn('client is not reading its kernel output; dropping it', { kernel: this.kernelId, buffered: n });
        c.ws.terminate();
      } else if (n > this.opts.clientHighWaterBytes) {
        congested = true;
      }
    }
    return congested;
  }

  /**
   * Credit for `bytes` handed on over `link`: granted now, or owed while `congested` (and
   * while credit is already owed on that link, so that grants keep their order).
   */
  settle(link: ProviderLink, bytes: number, congested: boolean): void {
    if (!congested && !(this.#owed > 0 && this.#owedLink === link)) {
      link.grantCredit(this.kernelId, bytes);
      return;
    }
    if (this.#owedLink !== link) {
      this.#owed = 0;
      this.#owedLink = link;
    }
    this.#owed += bytes;
    if (this.#timer) return;
    this.#timer = setTimeout(this.#poll, CREDIT_POLL_MS);
    this.#watch();
  }

  /** The kernel moved to another tunnel: credit is per connection, and the new one starts afresh. */
  reset(): void {
    this.#owed = 0;
    this.#owedLink = undefined;
  }

  dispose(): void {
    this.#disposed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Grants what is owed once no client is congested; until then, checks again later. */
  readonly #poll = (): void => {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#disposed || !this.#owedLink || this.#owedLink.closed || this.#owed === 0) return;
    if (this.congested()) {
      this.#watch();
      this.#timer = setTimeout(this.#poll, CREDIT_POLL_MS);
      return;
    }
    this.#owedLink.grantCredit(this.kernelId, this.#owed);
    this.#owed = 0;
  };

  /**
   * Checks again as soon as a congested client's completed writes bring it under the
   * high-water mark, besides every CREDIT_POLL_MS: a timer alone left the provider idle for
   * up to a poll interval each time, which cost ~20 ms on a 10 MB output in parts here.
   */
  #watch(): void {
    const mark = this.opts.clientHighWaterBytes;
    for (const c of this.clients) if (c.bufferedAmount > mark) c.whenBufferedAtMost(mark, this.#poll);
  }
}
