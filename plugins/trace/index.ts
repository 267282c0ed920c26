/**
 * `trace`: OpenTelemetry spans for a sample of queries, exported over OTLP/HTTP.
 *
 *     trace {
 *         endpoint URL [insecure]   # default http://127.0.0.1:4318/v1/traces
 *         sample RATIO      # default 0.01
 *         service NAME      # default veil
 *         client_address    # record the client's IP (off by default: privacy)
 *     }
 *
 * A sampled query gets a server span, a child span for each link of the chain below (every
 * later plugin that serves, then the upstream stage), and a client span per upstream attempt.
 * An unsampled query costs one random number and one comparison per link.
 */
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, flag, readOptions } from '../../core/config/options.js';
import { AddressError, isPrivateAddress, parseEndpoint } from '../../core/net/address.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { TracePlugin, type TraceOptions } from './plugin.js';

const NAME = 'trace';
const OTLP_HTTP_PORT = 4318;
const OTLP_TRACES_PATH = '/v1/traces';
export const DEFAULT_TRACE_OPTIONS: TraceOptions = {
  endpoint: `http://127.0.0.1:${OTLP_HTTP_PORT}${OTLP_TRACES_PATH}`,
  sample: 0.01,
  service: 'veil',
  clientAddress: false,
};

export const tracePlugin: PluginDefinition<TraceOptions> = {
  name: NAME,
  once: true,
  // Wraps the links after it (its place is in core/order.ts), and hears upstream attempts.
  roles: ['observe'],

  parse(directives) {
    const d = directives[0]!;
    expectArgs(NAME, d, 0);
    const options = { ...DEFAULT_TRACE_OPTIONS };
    readOptions(NAME, d.block, {
      endpoint: (line) => (options.endpoint = parseCollector(line)),
      sample: (line) => (options.sample = parseRatio(single(line))),
      service: (line) => {
        const name = single(line);
        if (!/^[\x21-\x7e]{1,128}$/.test(name.text)) throw configError(NAME, name, 'a service name is 1 to 128 printable characters without spaces');
        options.service = name.text;
      },
      client_address: (line) => (options.clientAddress = flag(NAME, line)),
    });
    return options;
  },

  create(options, scope) {
    return new TracePlugin(options, scope.logger);
  },
};

function single(line: Directive): Token {
  return expectArgs(NAME, line, 1)[0]!;
}

/**
 * An OTLP/HTTP URL whose host is an IP: the exporter must never look a name up. Spans carry the
 * names queried, so plain http:// goes only to loopback or a private network unless the line
 * ends with `insecure`, as for plaintext DNS.
 */
function parseCollector(line: Directive): string {
  const [token, flag] = expectArgs(NAME, line, 1, 2) as [Token, Token | undefined];
  if (flag && flag.text !== 'insecure') throw configError(NAME, flag, `unexpected "${flag.text}" (the only word allowed after the URL is "insecure")`);
  let endpoint;
  try {
    endpoint = parseEndpoint(token.text, OTLP_HTTP_PORT);
  } catch (err) {
    if (err instanceof AddressError) throw configError(NAME, token, `${err.message}; the endpoint is an OTLP/HTTP URL such as http://127.0.0.1:4318/v1/traces`);
    throw err;
  }
  if (endpoint.scheme !== 'http' && endpoint.scheme !== 'https') {
    throw configError(NAME, token, `the endpoint speaks OTLP over HTTP: http:// or https://, not ${endpoint.scheme}://`);
  }
  if (endpoint.scheme === 'http' && !flag && !isPrivateAddress(endpoint.host)) {
    throw configError(
      NAME,
      token,
      `${endpoint.host} is not on loopback or a private network (10/8, 172.16/12, 192.168/16, fc00::/7): spans carry the names queried, and http:// would send them in plaintext. Use https://, or end the line with "insecure" if plaintext is what you want`,
    );
  }
  const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
  const path = endpoint.path === '' || endpoint.path === '/' ? OTLP_TRACES_PATH : endpoint.path;
  return `${endpoint.scheme}://${host}:${endpoint.port}${path}`;
}

function parseRatio(token: Token): number {
  const value = /^(\d+(\.\d*)?|\.\d+)$/.test(token.text) ? Number(token.text) : NaN;
  if (!(value >= 0 && value <= 1)) throw configError(NAME, token, `sample takes a ratio from 0 to 1 (0.01 traces one query in a hundred), not "${token.text}"`);
  return value;
}
