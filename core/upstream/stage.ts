/**
 * The end of every chain: send the query to the block's upstreams, in the policy's order, each
 * attempt spending from the query's one deadline. An answer that is SERVFAIL or REFUSED moves
 * on to the next upstream but is kept, so the client gets the last real answer rather than one
 * we made up. When nothing answered: SERVFAIL, never a fallback to anything not configured.
 * The client's EDNS options never leave (Client Subnet would tell every upstream, and the
 * authoritative servers behind it, the client's network; a cookie would follow the client), and
 * the buffer size advertised upstream is at most 1232 bytes: this is the one place every query
 * passes on its way to any upstream, relays included.
 */
import { failedIn, UPSTREAM_LINK } from '../chain.js';
import type { RequestContext } from '../context.js';
import { Rcode } from '../dns/constants.js';
import { ednsForUpstream } from '../dns/edns.js';
import { errorReply } from '../dns/message.js';
import { rcodeOf } from '../dns/wire.js';
import { DeadlineError, UpstreamUnavailableError } from '../errors.js';
import { upstreamAttempt, upstreamFailover } from '../events.js';
import type { Next } from '../plugin.js';
import type { Upstream, UpstreamPolicy, UpstreamSet } from './upstream.js';

/**
 * The stage as the chain's last link: `handler`, and `tagged`, the same doing the chain's notes
 * itself (the answering link, failures tagged `upstream`), which the chain takes as it is when
 * no wrapper goes around the last link (core/chain.ts).
 */
export function createUpstreamStage(upstreams: UpstreamSet, policy: UpstreamPolicy): { handler: Next; tagged: Next } {
  const exchange = (ctx: RequestContext, tagged: boolean): Promise<Buffer> => {
    // With the root zone alone (the usual block) every name is covered, and the query's name
    // need not be read into a string at all (a few per cent of a forwarded miss's CPU).
    const zones = upstreams.zones;
    const candidates = upstreams.candidates(zones.length === 1 && zones[0] === '.' ? '.' : ctx.name);
    if (candidates.length === 0) {
      // Nothing in this block answers the name: like a server that does not serve the zone.
      const refused = errorReply(ctx.query, Rcode.REFUSED, ctx.question.end, ctx.edns);
      return Promise.resolve(tagged ? answeredHere(ctx, refused) : refused);
    }
    const query = ctx.edns ? ednsForUpstream(ctx.query) : ctx.query;
    return new Attempts(ctx, query, candidates.length, policy.order(candidates, ctx)[Symbol.iterator](), policy, tagged).next();
  };
  return {
    handler: (ctx) => exchange(ctx, false),
    tagged: (ctx) => {
      try {
        return exchange(ctx, true);
      } catch (error) {
        return Promise.reject(failedIn(UPSTREAM_LINK, ctx, error));
      }
    },
  };
}

/** The chain's note that this stage gave the answer (core/chain.ts, tagFailures). */
function answeredHere(ctx: RequestContext, answer: Buffer): Buffer {
  ctx.meta.answeredBy ??= UPSTREAM_LINK;
  return answer;
}

/**
 * One query's attempts, upstream after upstream in the policy's order. An object with two
 * handlers rather than an async function: every miss passes here, and an async function's
 * frame was the largest allocation of a forwarded miss (heap sampling, about 700 bytes).
 */
class Attempts {
  private lastAnswer: Buffer | null = null;
  private lastError: unknown = null;
  private attempts = 0;
  private upstream: Upstream | null = null;
  private started = 0;

  constructor(
    private readonly ctx: RequestContext,
    private readonly query: Buffer,
    private readonly candidates: number,
    private readonly order: Iterator<Upstream>,
    private readonly policy: UpstreamPolicy,
    /** Does the chain's notes itself (createUpstreamStage's `tagged`). */
    private readonly tagged: boolean,
  ) {}

  /** Sends to the next usable upstream; when none is left, the last answer or the failure. */
  next(): Promise<Buffer> {
    const ctx = this.ctx;
    for (let step = this.order.next(); !step.done; step = this.order.next()) {
      const upstream = step.value;
      if (upstream.usable === false) continue;
      if (this.upstream && upstreamFailover.hasSubscribers) upstreamFailover.publish({ ctx, from: this.upstream });
      this.upstream = upstream;
      const started = ctx.clock.monotonic();
      if (ctx.deadline - started <= 0) {
        this.lastError ??= new DeadlineError(`deadline passed after ${this.attempts} upstream attempt(s)`);
        break;
      }
      this.started = started;
      this.attempts++;
      this.policy.begin(upstream);
      let answer: Promise<Buffer>;
      try {
        answer = upstream.exchange(this.query, ctx);
      } catch (error) {
        this.failed(error);
        continue;
      }
      return answer.then(this.answered, this.failedThenNext);
    }
    return this.giveUp();
  }

  private readonly answered = (answer: Buffer): Buffer | Promise<Buffer> => {
    const { ctx, upstream } = this;
    try {
      const rcode = rcodeOf(answer);
      const ok = rcode !== Rcode.SERVFAIL && rcode !== Rcode.REFUSED;
      const rttMs = ctx.clock.monotonic() - this.started;
      this.policy.report(upstream!, { ok, rttMs });
      if (upstreamAttempt.hasSubscribers) upstreamAttempt.publish({ ctx, upstream: upstream!, attempt: this.attempts, ok, rttMs, rcode, query: this.query, answer });
      ctx.meta.upstream = upstream!.name;
      ctx.meta.upstreamProtocol = upstream!.protocol;
      ctx.meta.attempts = this.attempts;
      if (ok) return this.tagged ? answeredHere(ctx, answer) : answer;
      this.lastAnswer = answer;
      return this.next();
    } catch (error) {
      return this.failure(error);
    }
  };

  private readonly failedThenNext = (error: unknown): Promise<Buffer> => {
    try {
      this.failed(error);
      return this.next();
    } catch (thrown) {
      return this.failure(thrown);
    }
  };

  /** The query's failure, tagged as the chain would when this stage does its notes. */
  private failure(error: unknown): Promise<never> {
    return Promise.reject(this.tagged ? failedIn(UPSTREAM_LINK, this.ctx, error) : error);
  }

  private failed(error: unknown): void {
    const rttMs = this.ctx.clock.monotonic() - this.started;
    this.policy.report(this.upstream!, { ok: false, rttMs, error });
    if (upstreamAttempt.hasSubscribers) upstreamAttempt.publish({ ctx: this.ctx, upstream: this.upstream!, attempt: this.attempts, ok: false, rttMs, error, query: this.query });
    this.lastError = error;
  }

  private giveUp(): Promise<Buffer> {
    this.ctx.meta.attempts = this.attempts;
    if (this.lastAnswer) return Promise.resolve(this.tagged ? answeredHere(this.ctx, this.lastAnswer) : this.lastAnswer);
    if (this.attempts === 0 && !this.lastError) {
      return this.failure(new UpstreamUnavailableError(`all ${this.candidates} upstream(s) are marked down or left out`));
    }
    return this.failure(this.lastError ?? new UpstreamUnavailableError('no upstream answered'));
  }
}
