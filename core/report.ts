/**
 * Where failures of a query go: one place that logs. The default reporter writes them to the
 * server log, at most a few lines a second (an outage must not flood the log); the `errors`
 * plugin installs its own for a block.
 */
import { Buffer } from 'node:buffer';
import type { RequestContext } from './context.js';
import { EdnsOption, Rcode, typeName } from './dns/constants.js';
import { buildReply, ednsOption } from './dns/message.js';
import { DeadlineError, PluginError, UpstreamResponseError, UpstreamTimeoutError, UpstreamUnavailableError } from './errors.js';
import type { Logger } from './logger.js';

export abstract class ErrorReporter {
  abstract report(error: unknown, ctx: RequestContext): void;
}

/** `plugin/forward: example.org. A: udp 192.0.2.1:53: no answer within 2000ms` */
export function describeFailure(error: unknown, ctx: RequestContext): { source: string; line: string } {
  const source = error instanceof PluginError ? `plugin/${error.plugin}` : 'server';
  const cause = error instanceof PluginError ? error.cause : error;
  const message = cause instanceof Error ? cause.message : String(cause);
  return { source, line: `${ctx.name} ${typeName(ctx.type)}: ${message}` };
}

/** RFC 8914 Extended DNS Error codes a failure maps to. */
export const ExtendedError = { OTHER: 0, NO_REACHABLE_AUTHORITY: 22, NETWORK_ERROR: 23 } as const;

/**
 * Why a query failed, as RFC 8914 says it to a client that speaks EDNS: the code and a short
 * text that names no address or upstream (the log has those).
 */
export function extendedErrorFor(error: unknown): { code: number; text: string } {
  const cause = error instanceof PluginError ? error.cause : error;
  if (cause instanceof UpstreamUnavailableError) return { code: ExtendedError.NO_REACHABLE_AUTHORITY, text: 'no upstream reachable' };
  if (cause instanceof UpstreamTimeoutError) return { code: ExtendedError.NO_REACHABLE_AUTHORITY, text: 'upstream timed out' };
  if (cause instanceof DeadlineError) return { code: ExtendedError.NO_REACHABLE_AUTHORITY, text: 'no answer in time' };
  if (cause instanceof UpstreamResponseError) return { code: ExtendedError.NETWORK_ERROR, text: 'unusable answer from upstream' };
  return { code: ExtendedError.OTHER, text: 'query failed' };
}

/** The SERVFAIL a failed query gets: with an Extended DNS Error when the client sent EDNS. */
export function failureReply(error: unknown, ctx: RequestContext): Buffer {
  const { code, text } = extendedErrorFor(error);
  const data = Buffer.alloc(2 + Buffer.byteLength(text));
  data.writeUInt16BE(code, 0);
  data.write(text, 2);
  return buildReply(ctx.query, { rcode: Rcode.SERVFAIL, questionEnd: ctx.question.end, edns: ctx.edns, ednsOptions: ednsOption(EdnsOption.EDE, data) });
}

export class LogErrorReporter extends ErrorReporter {
  private windowStart = 0;
  private inWindow = 0;
  private suppressed = 0;

  constructor(
    private readonly logger: Logger,
    private readonly perSecond = 10,
  ) {
    super();
  }

  report(error: unknown, ctx: RequestContext): void {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      if (this.suppressed > 0) this.logger.error(`${this.suppressed} more query error(s) in the last second not shown`);
      this.windowStart = now;
      this.inWindow = 0;
      this.suppressed = 0;
    }
    if (++this.inWindow > this.perSecond) {
      this.suppressed++;
      return;
    }
    const { source, line } = describeFailure(error, ctx);
    this.logger.error(`${source}: ${line}`);
  }
}
