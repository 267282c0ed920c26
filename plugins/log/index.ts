/**
 * `log [stdout|stderr|FILE] { class success|denial|error|all… }`: one JSON line per query.
 */
import path from 'node:path';
import { configError, expectArgs, readOptions } from '../../core/config/options.js';
import type { RequestContext } from '../../core/context.js';
import { Rcode, rcodeName, typeName } from '../../core/dns/constants.js';
import { anCount, flagNames, rcodeOf } from '../../core/dns/wire.js';
import type { Next, Plugin, PluginDefinition } from '../../core/plugin.js';
import { LineWriter } from '../../core/util/line-writer.js';

const NAME = 'log';
const CLASSES = ['all', 'success', 'denial', 'error'] as const;
type ResponseClass = (typeof CLASSES)[number];

export interface LogOptions {
  destination: string;
  classes: Set<ResponseClass>;
}

export const logPlugin: PluginDefinition<LogOptions> = {
  name: NAME,
  once: true,

  parse(directives) {
    const d = directives[0]!;
    const [target] = expectArgs(NAME, d, 0, 1);
    let destination = 'stdout';
    if (target && target.text !== 'stdout' && target.text !== 'stderr') {
      destination = path.resolve(path.dirname(path.resolve(target.file)), target.text);
    } else if (target) {
      destination = target.text;
    }
    const classes = new Set<ResponseClass>();
    readOptions(NAME, d.block, {
      class: (line) => {
        for (const token of expectArgs(NAME, line, 1, CLASSES.length)) {
          if (!(CLASSES as readonly string[]).includes(token.text)) throw configError(NAME, token, `unknown class "${token.text}" (one of ${CLASSES.join(', ')})`);
          classes.add(token.text as ResponseClass);
        }
      },
    });
    if (classes.size === 0 || classes.has('all')) classes.clear();
    return { destination, classes };
  },

  create(options) {
    return new LogPlugin(options);
  },
};

/** success: an answer; denial: NXDOMAIN or an empty NOERROR; error: every other rcode. */
export function responseClass(response: Buffer): ResponseClass {
  const rcode = rcodeOf(response);
  if (rcode === Rcode.NXDOMAIN || (rcode === Rcode.NOERROR && anCount(response) === 0)) return 'denial';
  return rcode === Rcode.NOERROR ? 'success' : 'error';
}

export class LogPlugin implements Plugin {
  readonly name = NAME;
  private readonly writer: LineWriter;

  constructor(private readonly options: LogOptions) {
    this.writer = new LineWriter(options.destination);
  }

  async serve(ctx: RequestContext, next: Next): Promise<Buffer | null> {
    let response: Buffer | null;
    try {
      response = await next(ctx);
    } catch (error) {
      this.record(ctx, null, error);
      throw error;
    }
    this.record(ctx, response, null);
    return response;
  }

  private record(ctx: RequestContext, response: Buffer | null, error: unknown): void {
    const classes = this.options.classes;
    if (classes.size > 0) {
      const kind: ResponseClass = response ? responseClass(response) : 'error';
      if (!classes.has(kind)) return;
    }
    const line = {
      time: new Date(ctx.clock.now()).toISOString(),
      client: ctx.client.address,
      port: ctx.client.port,
      proto: ctx.transport,
      name: ctx.name,
      type: typeName(ctx.type),
      rcode: response ? rcodeName(rcodeOf(response)) : error ? 'SERVFAIL' : 'DROPPED',
      duration_ms: Math.round((ctx.clock.monotonic() - ctx.startedAt) * 1000) / 1000,
      upstream: ctx.meta.upstream ?? null,
      flags: response ? flagNames(response).join(' ') : '',
      size: response?.length ?? 0,
      ...(ctx.meta.cacheHit ? { cache: ctx.meta.cacheShared ? 'shared' : 'hit' } : {}),
      ...(ctx.meta.blockedBy ? { blocked_by: ctx.meta.blockedBy } : {}),
      ...(ctx.meta.relay ? { relay: ctx.meta.relay } : {}),
      ...(ctx.meta.dnssec ? { dnssec: ctx.meta.dnssec } : {}),
      ...(error ? { error: error instanceof Error ? error.message : String(error) } : {}),
    };
    this.writer.write(JSON.stringify(line));
  }

  async stop(): Promise<void> {
    await this.writer.close();
  }
}
