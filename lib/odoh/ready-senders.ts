/**
 * HPKE sender set-ups made between queries, so that sealing a query costs an AEAD seal and not
 * an X25519 key pair and Diffie-Hellman (~50 µs of a query's ~60 µs of crypto).
 *
 * Everything SetupBaseS computes (an ephemeral key pair, the shared secret with the target's
 * key, the key schedule under "odoh query") depends on the target's config alone, not on the
 * query; so a set-up can be made ahead. Each is taken once, by one query, and dropped with it:
 * no encapsulated key is ever sent twice, as if it had been made for the query. A few are kept
 * ready for the config in use; a taken one is replaced on a later turn of the event loop (one
 * a turn, after the turn that took it has written its query, and after each turn's I/O), so
 * the work happens while the query is away and not while a client waits. Under full load the
 * pool stays empty and a query makes its own set-up, as before: the work is moved, never added
 * (only the few ready ones are lost when the config changes or the upstream stops).
 */
import { prepareSender, type PreparedSender } from './crypto.js';
import type { OdohConfig } from './configs.js';

/** Enough for a burst of queries at once at a home's rates; each holds ~200 bytes. */
const DEFAULT_READY = 4;

export class ReadySenders {
  private config: OdohConfig | null = null;
  private ready: PreparedSender[] = [];
  private refillScheduled = false;
  private closed = false;

  constructor(private readonly size = DEFAULT_READY) {}

  /** A set-up for `config` used by nobody before: a ready one, or one made now. */
  take(config: OdohConfig): PreparedSender {
    if (config !== this.config) {
      this.config = config;
      this.ready = [];
    }
    const sender = this.ready.pop() ?? prepareSender(config);
    this.scheduleRefill();
    return sender;
  }

  /** How many are ready (for tests and stats). */
  get readyCount(): number {
    return this.ready.length;
  }

  /** Drops the ready ones and makes no more. */
  close(): void {
    this.closed = true;
    this.config = null;
    this.ready = [];
  }

  private scheduleRefill(): void {
    if (this.refillScheduled || this.closed) return;
    this.refillScheduled = true;
    // Two turns: a client's writes of this turn (the HTTP/2 client flushes with setImmediate,
    // queued after this call) go out first; a set-up made before them would hold the query ~50 µs.
    setImmediate(() => setImmediate(() => this.refillOne()));
  }

  private refillOne(): void {
    this.refillScheduled = false;
    const config = this.config;
    if (this.closed || !config || this.ready.length >= this.size) return;
    try {
      this.ready.push(prepareSender(config));
    } catch {
      // A key that fails here fails for the query too (prepareSender again, in take), which reports it.
      return;
    }
    if (this.ready.length < this.size) this.scheduleRefill();
  }
}
