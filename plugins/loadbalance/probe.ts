/**
 * Health probes: a real exchange of a small query (`. NS`, the root's name servers, which every
 * resolver knows) through the upstream itself, with its transport, encryption and relays. Any
 * answer means the upstream is reachable and answering.
 */
import type { Clock } from '../../core/clock.js';
import { RequestContext } from '../../core/context.js';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { randomId } from '../../core/upstream/query-id.js';
import type { Upstream } from '../../core/upstream/upstream.js';

/** A probe waits this long at most; probes of one upstream never overlap. */
const PROBE_TIMEOUT_MS = 2000;

export function probeUpstream(upstream: Upstream, clock: Clock, server: string): Promise<void> {
  const query = buildQuery('.', QType.NS, { id: randomId(), edns: true });
  const ctx = RequestContext.ownQuery({ query, transport: 'health', server, clock, timeoutMs: PROBE_TIMEOUT_MS });
  return upstream.exchange(query, ctx).then(
    () => ctx.finish(),
    (err: unknown) => {
      ctx.finish();
      throw err;
    },
  );
}
