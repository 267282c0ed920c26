/**
 * Where failures of a query go: one place that logs. The default reporter writes them to the
 * server log, at most a few lines a second (an outage must not flood the log); the `errors`
 * plugin installs its own for a block.
 */
import type { RequestContext } from './context.js';
import { typeName } from './dns/constants.js';
import { PluginError } from './errors.js';
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
