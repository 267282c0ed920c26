/**
 * `trace`: OpenTelemetry spans for a sample of queries, through OpenTelemetry's Node SDK.
 *
 *     trace {
 *         endpoint URL [insecure]   # else OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, else 127.0.0.1
 *         protocol grpc|http/protobuf|http/json   # else OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL
 *         header NAME VALUE         # repeatable; added to OTEL_EXPORTER_OTLP_(TRACES_)HEADERS
 *         timeout DURATION          # else OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT, else 10s
 *         sample RATIO              # else OTEL_TRACES_SAMPLER(_ARG), else 0.01
 *         service NAME              # else OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, else veil
 *         client_address            # record the client's IP (off by default: privacy)
 *     }
 *
 * A sampled query gets a server span, a child span for each link of the chain below (every
 * later plugin that serves, then the upstream stage), and a client span per upstream attempt.
 * An unsampled query costs one random number and one comparison per link. The environment is
 * read when the configuration is, so `veil check` reports its mistakes too.
 */
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, flag, readOptions } from '../../core/config/options.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { OTLP_REPEATABLE, OtlpLinesReader, parseServiceName } from '../../lib/otel/corefile.js';
import { OtlpSettingError, samplerFromEnv } from '../../lib/otel/settings.js';
import { TracePlugin, type TraceOptions } from './plugin.js';

const NAME = 'trace';

export const tracePlugin: PluginDefinition<TraceOptions> = {
  name: NAME,
  once: true,
  // Wraps the links after it (its place is in core/order.ts), and hears upstream attempts.
  roles: ['observe'],

  parse(directives) {
    const d = directives[0]!;
    expectArgs(NAME, d, 0);
    const otlp = new OtlpLinesReader(NAME);
    let sample: number | undefined;
    let service: string | undefined;
    let clientAddress = false;
    readOptions(
      NAME,
      d.block,
      {
        ...otlp.spec,
        sample: (line) => (sample = parseRatio(single(line))),
        service: (line) => (service = parseServiceName(NAME, single(line))),
        client_address: (line) => (clientAddress = flag(NAME, line)),
      },
      OTLP_REPEATABLE,
    );
    const target = otlp.resolve('traces', d);
    let sampler;
    try {
      sampler = samplerFromEnv();
    } catch (err) {
      if (err instanceof OtlpSettingError) throw configError(NAME, d.name, err.message);
      throw err;
    }
    if (sample !== undefined) Object.assign(sampler, { ratio: sample, source: 'Corefile' });
    return { export: target, sampler, service, clientAddress };
  },

  create(options, scope) {
    return new TracePlugin(options, scope.logger);
  },
};

function single(line: Directive): Token {
  return expectArgs(NAME, line, 1)[0]!;
}

function parseRatio(token: Token): number {
  const value = /^(\d+(\.\d*)?|\.\d+)$/.test(token.text) ? Number(token.text) : NaN;
  if (!(value >= 0 && value <= 1)) throw configError(NAME, token, `sample takes a ratio from 0 to 1 (0.01 traces one query in a hundred), not "${token.text}"`);
  return value;
}
