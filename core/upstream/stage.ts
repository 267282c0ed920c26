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
import type { RequestContext } from '../context.js';
import { Rcode } from '../dns/constants.js';
import { ednsForUpstream } from '../dns/edns.js';
import { errorReply } from '../dns/message.js';
import { rcodeOf } from '../dns/wire.js';
import { DeadlineError, UpstreamUnavailableError } from '../errors.js';
import { upstreamAttempt, upstreamFailover } from '../events.js';
import type { Upstream, UpstreamPolicy, UpstreamSet } from './upstream.js';

export function createUpstreamStage(upstreams: UpstreamSet, policy: UpstreamPolicy) {
  return async function exchangeWithUpstreams(ctx: RequestContext): Promise<Buffer | null> {
    // With the root zone alone (the usual block) every name is covered, and the query's name
    // need not be read into a string at all (a few per cent of a forwarded miss's CPU).
    const zones = upstreams.zones;
    const candidates = upstreams.candidates(zones.length === 1 && zones[0] === '.' ? '.' : ctx.name);
    if (candidates.length === 0) {
      // Nothing in this block answers the name: like a server that does not serve the zone.
      return errorReply(ctx.query, Rcode.REFUSED, ctx.question.end, ctx.edns);
    }
    const query = ctx.edns ? ednsForUpstream(ctx.query) : ctx.query;
    let lastAnswer: Buffer | null = null;
    let lastError: unknown = null;
    let attempts = 0;
    let previous: Upstream | null = null;
    for (const upstream of policy.order(candidates, ctx)) {
      if (upstream.usable === false) continue;
      if (previous && upstreamFailover.hasSubscribers) upstreamFailover.publish({ ctx, from: previous });
      previous = upstream;
      const started = ctx.clock.monotonic();
      if (ctx.deadline - started <= 0) {
        lastError ??= new DeadlineError(`deadline passed after ${attempts} upstream attempt(s)`);
        break;
      }
      attempts++;
      policy.begin(upstream);
      try {
        const answer = await upstream.exchange(query, ctx);
        const rcode = rcodeOf(answer);
        const ok = rcode !== Rcode.SERVFAIL && rcode !== Rcode.REFUSED;
        const rttMs = ctx.clock.monotonic() - started;
        policy.report(upstream, { ok, rttMs });
        if (upstreamAttempt.hasSubscribers) upstreamAttempt.publish({ ctx, upstream, attempt: attempts, ok, rttMs, rcode, query, answer });
        ctx.meta.upstream = upstream.name;
        ctx.meta.upstreamProtocol = upstream.protocol;
        ctx.meta.attempts = attempts;
        if (ok) return answer;
        lastAnswer = answer;
      } catch (error) {
        const rttMs = ctx.clock.monotonic() - started;
        policy.report(upstream, { ok: false, rttMs, error });
        if (upstreamAttempt.hasSubscribers) upstreamAttempt.publish({ ctx, upstream, attempt: attempts, ok: false, rttMs, error, query });
        lastError = error;
      }
    }
    ctx.meta.attempts = attempts;
    if (lastAnswer) return lastAnswer;
    if (attempts === 0 && !lastError) {
      throw new UpstreamUnavailableError(`all ${candidates.length} upstream(s) are marked down or left out`);
    }
    throw lastError ?? new UpstreamUnavailableError('no upstream answered');
  };
}
