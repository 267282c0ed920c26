/**
 * `log`: one line per query, in the format its readers already parse.
 *
 *     log [stdout|stderr|FILE] {
 *         format json|text|tsv|ltsv        # default json
 *         class success|denial|error|all…
 *         client_address full|hash|none    # default full
 *         max_size SIZE                    # rotate FILE past this size (10M, 512K); default never
 *         max_files N                      # rotated files kept; default 5
 *         nx stdout|stderr|FILE            # NXDOMAIN answers (dnscrypt-proxy's nx_log)
 *         blocked stdout|stderr|FILE       # queries filter blocked (its blocked-names log)
 *     }
 */
import { createHmac, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, parseInteger, readOptions } from '../../core/config/options.js';
import type { RequestContext } from '../../core/context.js';
import { Rcode } from '../../core/dns/constants.js';
import { anCount, flagNames, rcodeOf } from '../../core/dns/wire.js';
import type { Next, Plugin, PluginDefinition } from '../../core/plugin.js';
import { LineWriter, type RotationOptions } from '../../core/util/line-writer.js';
import { blockedLine, FORMATS, nxLine, queryLine, type LogFormat, type LogRecord } from './formats.js';

const NAME = 'log';
const CLASSES = ['all', 'success', 'denial', 'error'] as const;
type ResponseClass = (typeof CLASSES)[number];
const CLIENT_ADDRESS = ['full', 'hash', 'none'] as const;
type ClientAddressPolicy = (typeof CLIENT_ADDRESS)[number];
const DEFAULT_KEEP = 5;

export interface LogOptions {
  destination: string;
  classes: Set<ResponseClass>;
  format: LogFormat;
  clientAddress: ClientAddressPolicy;
  rotation: RotationOptions | null;
  nx: string | null;
  blocked: string | null;
}

export const logPlugin: PluginDefinition<LogOptions> = {
  name: NAME,
  once: true,

  parse(directives) {
    const d = directives[0]!;
    const [target] = expectArgs(NAME, d, 0, 1);
    const options: LogOptions = {
      destination: target ? destination(target) : 'stdout',
      classes: new Set(),
      format: 'json',
      clientAddress: 'full',
      rotation: null,
      nx: null,
      blocked: null,
    };
    let maxBytes: number | null = null;
    let keep = DEFAULT_KEEP;
    let keepToken: Token | null = null;
    readOptions(NAME, d.block, {
      class: (line) => {
        for (const token of expectArgs(NAME, line, 1, CLASSES.length)) {
          if (!(CLASSES as readonly string[]).includes(token.text)) throw configError(NAME, token, `unknown class "${token.text}" (one of ${CLASSES.join(', ')})`);
          options.classes.add(token.text as ResponseClass);
        }
      },
      format: (line) => (options.format = oneOf(line, FORMATS, 'format')),
      client_address: (line) => (options.clientAddress = oneOf(line, CLIENT_ADDRESS, 'client_address')),
      max_size: (line) => (maxBytes = parseSize(expectArgs(NAME, line, 1)[0]!)),
      max_files: (line) => {
        keepToken = expectArgs(NAME, line, 1)[0]!;
        keep = parseInteger(NAME, keepToken, 1, 100);
      },
      nx: (line) => (options.nx = destination(expectArgs(NAME, line, 1)[0]!)),
      blocked: (line) => (options.blocked = destination(expectArgs(NAME, line, 1)[0]!)),
    });
    if (options.classes.size === 0 || options.classes.has('all')) options.classes.clear();
    if (maxBytes !== null) {
      if (options.destination === 'stdout' || options.destination === 'stderr') throw configError(NAME, d.name, `max_size rotates a file: give the log a FILE, not ${options.destination}`);
      options.rotation = { maxBytes, keep };
    } else if (keepToken) {
      throw configError(NAME, keepToken, 'max_files says how many rotated files to keep: add max_size');
    }
    return options;
  },

  create(options, scope) {
    // A keyed hash: an unkeyed one of an IPv4 address is undone by trying all 2^32. The key lives
    // as long as the process (reloads keep it), so a client keeps its pseudonym until a restart.
    const key = scope.keep('client-hash-key', () => randomBytes(32));
    return new LogPlugin(options, key);
  },
};

function destination(token: Token): string {
  if (token.text === 'stdout' || token.text === 'stderr') return token.text;
  return path.resolve(path.dirname(path.resolve(token.file)), token.text);
}

function oneOf<T extends string>(line: Directive, values: readonly T[], what: string): T {
  const [token] = expectArgs(NAME, line, 1) as [Token];
  if (!(values as readonly string[]).includes(token.text)) throw configError(NAME, token, `${what} is one of ${values.join(', ')}, not "${token.text}"`);
  return token.text as T;
}

/** `1048576`, `512K`, `10M`, `1G` (powers of 1024; a trailing `B` or `iB` allowed); 4 KiB to 64 GiB. */
function parseSize(token: Token): number {
  const m = /^(\d+)\s*([KMG]?)(i?B)?$/i.exec(token.text);
  if (!m) throw configError(NAME, token, `"${token.text}" is not a size (examples: 512K, 10M, 1G)`);
  const bytes = Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
  if (bytes < 4096 || bytes > 64 * 1024 ** 3) throw configError(NAME, token, `${token.text} is outside 4K to 64G`);
  return bytes;
}

/** success: an answer; denial: NXDOMAIN or an empty NOERROR; error: every other rcode. */
export function responseClass(response: Buffer): ResponseClass {
  const rcode = rcodeOf(response);
  if (rcode === Rcode.NXDOMAIN || (rcode === Rcode.NOERROR && anCount(response) === 0)) return 'denial';
  return rcode === Rcode.NOERROR ? 'success' : 'error';
}

export class LogPlugin implements Plugin {
  readonly name = NAME;
  private readonly writer: LineWriter;
  private readonly nxWriter: LineWriter | null;
  private readonly blockedWriter: LineWriter | null;

  constructor(
    private readonly options: LogOptions,
    private readonly hashKey: Buffer,
  ) {
    this.writer = new LineWriter(options.destination, options.rotation);
    // The side logs rotate as the main one does (dnscrypt-proxy rotates all its logs alike).
    this.nxWriter = options.nx === null ? null : new LineWriter(options.nx, options.rotation && options.nx !== 'stdout' && options.nx !== 'stderr' ? options.rotation : null);
    this.blockedWriter = options.blocked === null ? null : new LineWriter(options.blocked, options.rotation && options.blocked !== 'stdout' && options.blocked !== 'stderr' ? options.rotation : null);
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

  private clientOf(ctx: RequestContext): string | null {
    switch (this.options.clientAddress) {
      case 'full':
        return ctx.client.address;
      case 'none':
        return null;
      case 'hash':
        return createHmac('sha256', this.hashKey).update(ctx.client.address).digest('hex').slice(0, 16);
    }
  }

  private record(ctx: RequestContext, response: Buffer | null, error: unknown): void {
    const classes = this.options.classes;
    const wanted = classes.size === 0 || classes.has(response ? responseClass(response) : 'error');
    const nx = this.nxWriter !== null && response !== null && rcodeOf(response) === Rcode.NXDOMAIN && ctx.meta.blockedBy === undefined;
    const blocked = this.blockedWriter !== null && ctx.meta.blockedBy !== undefined;
    if (!wanted && !nx && !blocked) return;
    const record: LogRecord = {
      timeMs: ctx.clock.now(),
      client: this.clientOf(ctx),
      port: this.options.clientAddress === 'full' ? ctx.client.port : null,
      proto: ctx.transport,
      id: ctx.id,
      name: ctx.name,
      type: ctx.type,
      qclass: ctx.qclass,
      querySize: ctx.query.length,
      dnssecOk: ctx.dnssecOk,
      bufsize: ctx.edns?.udpSize ?? 512,
      rcode: response ? rcodeOf(response) : null,
      durationMs: ctx.clock.monotonic() - ctx.startedAt,
      upstream: ctx.meta.upstream ?? null,
      flags: response ? flagNames(response).join(' ') : '',
      size: response?.length ?? 0,
      cacheHit: ctx.meta.cacheHit === true,
      cacheShared: ctx.meta.cacheShared === true,
      blockedBy: ctx.meta.blockedBy ?? null,
      answeredBy: ctx.meta.answeredBy ?? null,
      relay: ctx.meta.relay ?? null,
      dnssec: ctx.meta.dnssec ?? null,
      error: error ? (error instanceof Error ? error.message : String(error)) : null,
      errorCode: (error as { code?: string } | null)?.code ?? null,
    };
    const format = this.options.format;
    if (wanted) this.writer.write(queryLine(format, record));
    if (nx) this.nxWriter!.write(nxLine(format, record));
    if (blocked) this.blockedWriter!.write(blockedLine(format, record));
  }

  async stop(): Promise<void> {
    await Promise.all([this.writer.close(), this.nxWriter?.close(), this.blockedWriter?.close()]);
  }
}
