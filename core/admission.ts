/**
 * The bound on queries being answered at once, across every listener of the server (global
 * option `max_concurrent`). Each listener bounds its own clients (UDP `max_inflight`, stream
 * `max_connections` × `pipeline`); this one bounds what reaches the chains and the upstreams
 * behind them, so that queries arriving faster than upstreams answer cannot pile up promises,
 * timers and buffers without end. A query over the bound is answered REFUSED at once (the
 * client moves on to its next server) instead of waiting in a queue for an answer that would
 * come too late. Reaching the bound is logged once, and so is leaving it.
 */
import type { Logger } from './logger.js';

export const DEFAULT_MAX_CONCURRENT = 10_000;

export class QueryAdmission {
  private inflight = 0;
  private full = false;
  /** Queries refused since the bound was last reached (for the recovery log line). */
  private refusedSinceFull = 0;

  constructor(
    private limit: number,
    private readonly logger: Logger,
  ) {}

  get current(): number {
    return this.inflight;
  }

  get max(): number {
    return this.limit;
  }

  setLimit(limit: number): void {
    this.limit = limit;
  }

  /** Takes a place, or returns false when `max_concurrent` queries are being answered. */
  enter(): boolean {
    if (this.inflight >= this.limit) {
      this.refusedSinceFull++;
      if (!this.full) {
        this.full = true;
        this.logger.warn(`${this.limit} queries being answered (max_concurrent); answering REFUSED until some finish`);
      }
      return false;
    }
    this.inflight++;
    return true;
  }

  leave(): void {
    this.inflight--;
    // Recover with some room to spare, so a server at the bound does not log on every query.
    if (this.full && this.inflight <= this.limit * 0.9) {
      this.full = false;
      this.logger.info(`below max_concurrent again (${this.refusedSinceFull} queries refused meanwhile)`);
      this.refusedSinceFull = 0;
    }
  }
}
