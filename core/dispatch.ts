/**
 * The door every query goes through, whatever listener it came from: check the header and
 * question without decoding the rest, pick the server block with the longest matching zone,
 * run its chain, turn failures into SERVFAIL, set the client's ID, and fit the answer to a
 * datagram client's buffer.
 *
 * Silence, not an answer, for anything without a readable header or that is itself a response
 * (answering those could start a loop between two servers).
 */
import type { QueryAdmission } from './admission.js';
import type { BuiltBlock } from './block.js';
import type { Clock } from './clock.js';
import { RequestContext } from './context.js';
import { HEADER_SIZE, Opcode, Rcode } from './dns/constants.js';
import { errorReply, truncateReply } from './dns/message.js';
import { arCount, isResponse, isSubdomain, opcodeOf, qdCount, readEdns, readId, readQuestion, writeId, type Edns, type Question } from './dns/wire.js';
import { WireError } from './errors.js';
import { queryDone, queryRejected } from './events.js';
import { failureReply } from './report.js';
import type { DoorPass, QueryHandler, QueryInfo } from './listeners/listener.js';


/**
 * Every query gets one deadline; a little under the 5 s most stub resolvers wait, so the client
 * hears our SERVFAIL rather than timing out.
 */
export const QUERY_TIMEOUT_MS = 4000;

export interface ZoneRoute {
  zone: string;
  block: BuiltBlock;
}

/** Longest zone first, so the first match is the most specific. */
export function sortRoutes(routes: ZoneRoute[]): ZoneRoute[] {
  return [...routes].sort((a, b) => zoneDepth(b.zone) - zoneDepth(a.zone) || b.zone.length - a.zone.length);
}

function zoneDepth(zone: string): number {
  return zone === '.' ? 0 : zone.split('.').length;
}

/** The listener a dispatcher serves, as its queries' contexts name it; the server sets the bound address once it is known. */
export interface ListenerLabel {
  address: string;
}

export function createDispatcher(routes: ZoneRoute[], clock: Clock, timeoutMs = QUERY_TIMEOUT_MS, admission?: QueryAdmission, listener?: ListenerLabel): QueryHandler {
  const sorted = sortRoutes(routes);

  // The root zone takes every name: a listener serving only "." never needs the name's string.
  const route = (question: Question): ZoneRoute | undefined => {
    for (const candidate of sorted) if (candidate.zone === '.' || isSubdomain(question.name, candidate.zone)) return candidate;
    return undefined;
  };

  /**
   * The door, synchronous up to the chain: a query answered or refused here costs no promise
   * but a settled one, and the chain's answer is finished in one `then` rather than in an async
   * function's frame (about a kilobyte a query, measured; the largest allocation on a cache hit).
   */
  const enter = (query: Buffer, info: QueryInfo): Promise<Buffer | null> => {
    if (query.length < HEADER_SIZE || isResponse(query)) {
      if (queryRejected.hasSubscribers) queryRejected.publish({ reason: 'malformed', info });
      return NO_ANSWER;
    }
    let question: Question | undefined;
    let edns: Edns | null = null;
    try {
      if (opcodeOf(query) !== Opcode.QUERY) return rejected(query, Rcode.NOTIMP, info, tryQuestion(query));
      if (qdCount(query) !== 1) return rejected(query, Rcode.FORMERR, info);
      question = readQuestion(query);
      if (arCount(query) > 0) edns = readEdns(query, question.end);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      return rejected(query, Rcode.FORMERR, info, question);
    }
    if (edns && edns.version > 0) {
      // RFC 6891 §6.1.3: we speak EDNS version 0 only.
      return rejected(query, Rcode.BADVERS, info, question, edns);
    }
    const target = route(question);
    if (!target) return rejected(query, Rcode.REFUSED, info, question, edns);

    const block = target.block;
    if (!block.access.admits(info.client.address)) return rejected(query, Rcode.REFUSED, info, question, edns, 'acl');
    const paid = info.door?.get(block);
    if (paid === false || (paid === undefined && !block.rateLimit.take(info.client.address))) {
      // Over UDP an answer to a spoofed source would feed a reflection attack: nothing.
      if (!info.datagram) return rejected(query, Rcode.REFUSED, info, question, edns, 'ratelimit');
      if (queryRejected.hasSubscribers) queryRejected.publish({ reason: 'ratelimit', info });
      return NO_ANSWER;
    }
    const ctx = new RequestContext({
      query,
      question,
      edns,
      client: info.client,
      transport: info.transport,
      listener: listener?.address ?? '',
      datagram: info.datagram,
      server: block.server,
      zone: target.zone,
      clock,
      timeoutMs,
      remoteTrace: info.remoteTrace,
    });
    // Right before the chain: every place taken is given back when it settles.
    if (admission && !admission.enter()) {
      ctx.finish();
      return rejected(query, Rcode.REFUSED, info, question, edns, 'max_concurrent');
    }
    let answer: Promise<Buffer | null>;
    try {
      answer = block.chain(ctx);
    } catch (error) {
      answer = Promise.reject(error);
    }
    return answer.then(
      (response) => {
        ctx.finish();
        admission?.leave();
        return deliver(query, info, ctx, block, response);
      },
      (error: unknown) => {
        block.reporter.report(error, ctx);
        const response = failureReply(error, ctx);
        ctx.finish();
        admission?.leave();
        return deliver(query, info, ctx, block, response);
      },
    );
  };

  /** The chain's answer, checked, with the client's ID, fitted to a datagram client's buffer. */
  const deliver = (query: Buffer, info: QueryInfo, ctx: RequestContext, block: BuiltBlock, answer: Buffer | null): Buffer | null => {
    let response = answer;
    if (response === null) {
      if (queryDone.hasSubscribers) queryDone.publish({ ctx, response, durationMs: clock.monotonic() - ctx.startedAt });
      return null;
    }
    if (response.length < HEADER_SIZE) {
      const error = new WireError('a plugin produced an answer shorter than a DNS header');
      block.reporter.report(error, ctx);
      response = failureReply(error, ctx);
    }
    writeId(response, readId(query));
    if (info.datagram) {
      const limit = info.maxSize ?? ctx.maxResponseSize;
      if (response.length > limit) response = truncateReply(response, limit);
    }
    if (queryDone.hasSubscribers) {
      queryDone.publish({ ctx, response, durationMs: clock.monotonic() - ctx.startedAt });
    }
    return response;
  };

  // Whatever the door throws reaches the listener as a rejected promise, as from the chain.
  const dispatch: QueryHandler = function dispatch(query: Buffer, info: QueryInfo): Promise<Buffer | null> {
    try {
      return enter(query, info);
    } catch (error) {
      return Promise.reject(error);
    }
  };

  // Before the question is known, a client passes if any block of this listener would take it.
  const blocks = [...new Set(sorted.map((r) => r.block))];
  dispatch.admitClient = (info: QueryInfo): DoorPass | null => {
    const pass = new Map<object, boolean>();
    let admitted = false;
    let paid = false;
    for (const block of blocks) {
      if (!block.access.admits(info.client.address)) continue;
      admitted = true;
      const took = block.rateLimit.take(info.client.address);
      pass.set(block, took);
      paid ||= took;
    }
    if (paid) return pass;
    if (queryRejected.hasSubscribers) queryRejected.publish({ reason: admitted ? 'ratelimit' : 'acl', info });
    return null;
  };
  dispatch.admitsConnection = (info: QueryInfo): boolean => {
    if (blocks.some((block) => block.access.admits(info.client.address))) return true;
    if (queryRejected.hasSubscribers) queryRejected.publish({ reason: 'acl', info });
    return false;
  };
  return dispatch;
}

function tryQuestion(query: Buffer): Question | undefined {
  try {
    return qdCount(query) === 1 ? readQuestion(query) : undefined;
  } catch {
    return undefined;
  }
}

/** The door's answer to a query it refuses, already settled. */
function rejected(query: Buffer, rcode: number, info: QueryInfo, question?: Question, edns?: Edns | null, reason = `rcode ${rcode}`): Promise<Buffer> {
  if (queryRejected.hasSubscribers) queryRejected.publish({ reason, info });
  return Promise.resolve(errorReply(query, rcode, question?.end, edns ?? null));
}

/** Silence, already settled (shared: a resolved promise of null is the same for everyone). */
const NO_ANSWER: Promise<null> = Promise.resolve(null);
