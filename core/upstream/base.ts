/**
 * What every upstream does around its transport, written once: the time budget of an attempt,
 * padding and the ID sent, the checks an answer passes, the client's ID restored, the answer
 * fitted to the query, the UDP-to-TCP retry on truncation, and closing (drain) apart from
 * destroying (fail what is pending). A protocol (forward, dot, doh, odoh, dnscrypt) extends
 * `BaseUpstream` and implements only the sending: `send` over its stream or HTTP transport,
 * and `sendDatagram` when it tries UDP first.
 */
import { Buffer } from 'node:buffer';
import type { RequestContext } from '../context.js';
import { HEADER_SIZE } from '../dns/constants.js';
import { fitAnswerToQuery, padMessage } from '../dns/edns.js';
import { arCount, isResponse, isTruncated, readEdns, readId, sameQuestion, writeId } from '../dns/wire.js';
import { DeadlineError, UpstreamResponseError, UpstreamUnavailableError } from '../errors.js';
import { upstreamRetry } from '../events.js';
import type { Outcome } from './outcome.js';
import type { Upstream } from './upstream.js';

export interface UpstreamIdentity {
  /** Unique within the server block. */
  name: string;
  /** `udp`, `tcp`, `dot`, `doh`, `odoh`, `dnscrypt`, … */
  protocol: string;
  /** Where it is, for people. */
  address: string;
}

/** How a protocol's queries leave and its answers come back. */
export interface ExchangeRules {
  /**
   * The longest one attempt may take; the query's deadline may cut it shorter. Without it, only
   * the deadline bounds an attempt (dot: its pool has a read timeout of its own).
   */
  timeoutMs?: number;
  /** The longest the first, datagram attempt may take, when shorter than `timeoutMs` (dnscrypt). */
  datagramTimeoutMs?: number;
  /** EDNS Padding on every query (RFC 7830, RFC 8467's 128-byte blocks): dot, doh. */
  pad?: boolean;
  /** Send with ID 0 (RFC 8484 §4.1: the HTTP stream pairs question and answer): doh, odoh. */
  zeroId?: boolean;
  /**
   * Give back the answer as the client's query calls for: without the padding, and without an
   * OPT record when the query had none (it was added to carry padding): dot, doh, odoh.
   */
  fitAnswer?: boolean;
}

/** Throws unless `answer` is a DNS response to the question of `sent`. */
export function checkAnswer(name: string, sent: Buffer, answer: Buffer): void {
  if (answer.length < HEADER_SIZE || !isResponse(answer)) throw new UpstreamResponseError(`${name}: the answer is not a DNS response`);
  if (!sameQuestion(sent, answer)) throw new UpstreamResponseError(`${name}: the answer is for another question`);
}

export abstract class BaseUpstream implements Upstream {
  readonly name: string;
  readonly protocol: string;
  readonly address: string;
  private readonly timeoutMs: number;
  private readonly datagramTimeoutMs: number;
  private readonly rules: ExchangeRules;
  /** Exchanges under way (close waits for them). */
  private running = 0;
  /** Closed or destroyed: no new exchange. */
  private closed = false;
  private transportReleased = false;
  private drained: { promise: Promise<void>; resolve: () => void } | null = null;

  constructor(identity: UpstreamIdentity, rules: ExchangeRules = {}) {
    this.name = identity.name;
    this.protocol = identity.protocol;
    this.address = identity.address;
    this.rules = rules;
    this.timeoutMs = rules.timeoutMs ?? Infinity;
    this.datagramTimeoutMs = Math.min(rules.datagramTimeoutMs ?? Infinity, this.timeoutMs);
  }

  /**
   * Sends `wire` over the protocol's stream (TCP, TLS) or HTTP transport and resolves with the
   * answer, within `timeoutMs`. The answer is checked, its ID restored and fitted here.
   */
  protected abstract send(wire: Buffer, timeoutMs: number, ctx: RequestContext): Promise<Buffer>;

  /**
   * The first attempt over datagrams (UDP), for protocols that try it before the stream: sends
   * `wire` and gives the answer, or the failure, to `outcome` (once); false, sending nothing,
   * when this query goes over the stream only (tcp_only, or too large). A truncated answer is
   * asked again with `send`. An Outcome, not a promise of its own: the answer goes straight into
   * the promise `exchange` returns (core/upstream/outcome.ts).
   */
  protected sendDatagram?(wire: Buffer, timeoutMs: number, ctx: RequestContext, outcome: Outcome): boolean;

  /** Closes the transport; what is pending on it fails. Called once, when closed or destroyed. */
  protected abstract release(): void;

  /**
   * Promises and `then`s, not an async function: every miss passes here, and each async frame
   * was a few hundred bytes of garbage a query. Over datagrams, one promise: the transport
   * settles it through an Outcome.
   */
  exchange(query: Buffer, ctx: RequestContext): Promise<Buffer> {
    if (this.closed) return Promise.reject(new UpstreamUnavailableError(`${this.name}: closed`));
    let wire: Buffer;
    try {
      wire = this.outgoing(query);
    } catch (error) {
      return Promise.reject(error);
    }
    this.running++;
    if (!this.sendDatagram) return this.overStream(query, wire, ctx);
    let timeoutMs: number;
    try {
      timeoutMs = this.attemptTime(ctx, this.datagramTimeoutMs);
    } catch (error) {
      this.left();
      return Promise.reject(error);
    }
    return new Promise<Buffer>((resolve, reject) => {
      // Called from the socket's reader: nothing here may throw into it.
      const outcome: Outcome = {
        resolve: (answer) => {
          if (isTruncated(answer)) {
            if (upstreamRetry.hasSubscribers) upstreamRetry.publish({ upstream: this.name, protocol: this.protocol, reason: 'truncated' });
            resolve(this.overStream(query, wire, ctx));
            return;
          }
          this.left();
          try {
            resolve(this.incoming(query, wire, answer, ctx));
          } catch (error) {
            reject(error);
          }
        },
        reject: (error) => {
          this.left();
          reject(error);
        },
      };
      let sent: boolean;
      try {
        sent = this.sendDatagram!(wire, timeoutMs, ctx, outcome);
      } catch (error) {
        outcome.reject(error);
        return;
      }
      if (!sent) resolve(this.overStream(query, wire, ctx));
    });
  }

  /** The exchange over the protocol's stream or HTTP transport; it ends the exchange's turn. */
  private overStream(query: Buffer, wire: Buffer, ctx: RequestContext): Promise<Buffer> {
    let sent: Promise<Buffer>;
    try {
      sent = this.send(wire, this.attemptTime(ctx, this.timeoutMs), ctx);
    } catch (error) {
      this.left();
      return Promise.reject(error);
    }
    return sent.then(
      (answer) => {
        this.left();
        return this.incoming(query, wire, answer, ctx);
      },
      this.leftWith,
    );
  }

  /** An exchange is over; the last one of a closed upstream closes its transport. */
  private left(): void {
    if (--this.running === 0 && this.closed) this.finishClose();
  }

  /** An exchange failed: it is over, and its failure goes on up (one function for every exchange). */
  private readonly leftWith = (error: unknown): never => {
    this.left();
    throw error;
  };

  /** Takes no new exchange; resolves once those under way are over and the transport is closed. */
  close(): Promise<void> {
    this.closed = true;
    if (this.running === 0) {
      this.finishClose();
      return Promise.resolve();
    }
    if (!this.drained) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.drained = { promise, resolve };
    }
    return this.drained.promise;
  }

  /** Closes the transport now: exchanges under way fail. */
  destroy(): void {
    this.closed = true;
    this.finishClose();
  }

  /** Time for one attempt: the smaller of `cap` and what is left of the query's deadline. */
  private attemptTime(ctx: RequestContext, cap: number): number {
    const left = Math.min(cap, ctx.remaining());
    if (left <= 0) throw new DeadlineError(`${this.name}: the query's deadline passed`);
    return left;
  }

  /** The query as it leaves: padded, with ID 0, as the protocol wants (a copy when changed). */
  private outgoing(query: Buffer): Buffer {
    let wire = this.rules.pad ? padMessage(query) : query;
    if (this.rules.zeroId) {
      if (wire === query) wire = Buffer.from(query);
      writeId(wire, 0);
    }
    return wire;
  }

  /** The answer for the client: checked against the question sent, the query's ID, fitted. */
  private incoming(query: Buffer, wire: Buffer, answer: Buffer, ctx: RequestContext): Buffer {
    checkAnswer(this.name, wire, answer);
    writeId(answer, readId(query));
    if (!this.rules.fitAnswer) return answer;
    const hadEdns = query === ctx.query ? ctx.edns !== null : arCount(query) !== 0 && readEdns(query) !== null;
    return fitAnswerToQuery(answer, hadEdns);
  }

  /** True once the transport is closed: an exchange still under way must not open it again. */
  protected get released(): boolean {
    return this.transportReleased;
  }

  private finishClose(): void {
    if (!this.transportReleased) {
      this.transportReleased = true;
      this.release();
    }
    this.drained?.resolve();
  }
}
