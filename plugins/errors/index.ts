/**
 * `errors [stderr|stdout|FILE] { consolidate DURATION REGEXP }`: where query failures of this
 * block are written, one line each (`[ERROR] plugin/forward: example.org. A: …`), with
 * consolidation of repetitive ones. Standing early in the chain, it also turns a failure below
 * it into SERVFAIL, so that log and metrics above it see the answer the client got.
 */
import path from 'node:path';
import type { Directive } from '../../core/config/ast.js';
import { configError, expectArgs, formatDuration, parseDuration, readOptions } from '../../core/config/options.js';
import type { RequestContext } from '../../core/context.js';
import type { Next, Plugin, PluginDefinition } from '../../core/plugin.js';
import { describeFailure, ErrorReporter, failureReply } from '../../core/report.js';
import { Services } from '../../core/services.js';
import { LineWriter } from '../../core/util/line-writer.js';

const NAME = 'errors';

export interface Consolidation {
  periodMs: number;
  pattern: RegExp;
  /** The expression as written, for the summary line. */
  text: string;
}

export interface ErrorsOptions {
  destination: string;
  consolidate: Consolidation[];
}

export const errorsPlugin: PluginDefinition<ErrorsOptions> = {
  name: NAME,
  once: true,
  // Its reporter writes the failures the door turns into SERVFAIL, too (those above it).
  provides: [Services.errorReporter],

  parse(directives) {
    const d = directives[0]!;
    const [target] = expectArgs(NAME, d, 0, 1);
    const destination = !target || target.text === 'stderr' || target.text === 'stdout' ? (target?.text ?? 'stderr') : path.resolve(path.dirname(path.resolve(target.file)), target.text);
    const consolidate: Consolidation[] = [];
    readOptions(NAME, d.block, { consolidate: (line: Directive) => consolidate.push(parseConsolidate(line)) }, ['consolidate']);
    return { destination, consolidate };
  },

  create(options, scope) {
    const plugin = new ErrorsPlugin(options);
    scope.provide<ErrorReporter>(Services.errorReporter, plugin.reporter);
    return plugin;
  },
};

function parseConsolidate(line: Directive): Consolidation {
  const [period, pattern] = expectArgs(NAME, line, 2);
  const periodMs = parseDuration(NAME, period!, { min: 1000, max: 86_400_000 });
  try {
    return { periodMs, pattern: new RegExp(pattern!.text), text: pattern!.text };
  } catch (err) {
    throw configError(NAME, pattern!, `invalid regular expression: ${(err as Error).message}`);
  }
}

class ConsolidatingReporter extends ErrorReporter {
  private readonly counts: number[];
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly writer: LineWriter,
    private readonly rules: Consolidation[],
  ) {
    super();
    this.counts = rules.map(() => 0);
  }

  report(error: unknown, ctx: RequestContext): void {
    const { source, line } = describeFailure(error, ctx);
    const text = `${source}: ${line}`;
    const rule = this.rules.findIndex((r) => r.pattern.test(text));
    if (rule >= 0) {
      this.counts[rule]!++;
      return;
    }
    this.writer.write(`[ERROR] ${text}`);
  }

  start(): void {
    this.rules.forEach((rule, i) => {
      const timer = setInterval(() => {
        if (this.counts[i]! === 0) return;
        this.writer.write(`[WARNING] ${this.counts[i]} errors like '${rule.text}' occurred in the last ${formatDuration(rule.periodMs)}`);
        this.counts[i] = 0;
      }, rule.periodMs);
      timer.unref();
      this.timers.push(timer);
    });
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers.length = 0;
  }
}

export class ErrorsPlugin implements Plugin {
  readonly name = NAME;
  private readonly writer: LineWriter;
  readonly reporter: ConsolidatingReporter;

  constructor(options: ErrorsOptions) {
    this.writer = new LineWriter(options.destination);
    this.reporter = new ConsolidatingReporter(this.writer, options.consolidate);
  }

  async serve(ctx: RequestContext, next: Next): Promise<Buffer | null> {
    try {
      return await next(ctx);
    } catch (error) {
      this.reporter.report(error, ctx);
      return failureReply(error, ctx);
    }
  }

  start(): void {
    this.reporter.start();
  }

  async stop(): Promise<void> {
    this.reporter.stop();
    await this.writer.close();
  }
}
