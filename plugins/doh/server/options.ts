/** Options of `listen https://IP:PORT/PATH { … }` and `listen http://…`. */
import tls from 'node:tls';
import type { Directive, Token } from '../../../core/config/ast.js';
import { configError, expectArgs, parseDuration, parseInteger } from '../../../core/config/options.js';
import type { Location } from '../../../core/errors.js';
import type { Endpoint } from '../../../core/net/address.js';
import { parseCidrToken } from '../../../core/net/cidr.js';
import { HTTP2_IMPLEMENTATIONS, type Http2Implementation } from '../../../lib/http2/server.js';
import { parseOdohRelay, parseOdohTarget, type OdohRelayOptions, type OdohTargetOptions } from '../../../lib/odoh/server-options.js';
import { readPemFile } from '../../../lib/tls/files.js';

const PLUGIN = 'listen';
export const DEFAULT_PATH = '/dns-query';

export interface DohListenerOptions {
  /** The path queries are taken on; other paths get 404. */
  path: string;
  /** PEM text (https only). */
  cert: string | null;
  key: string | null;
  /** A connection with no request open is closed after this long. */
  idleTimeoutMs: number;
  /** A request must arrive whole (headers and body), and its answer be taken, within this long. */
  requestTimeoutMs: number;
  maxConnections: number;
  /** Connections one client address may hold; trusted proxies are not bounded by it. */
  maxConnectionsPerClient: number;
  /** Requests in flight per connection: HTTP/2 streams (SETTINGS_MAX_CONCURRENT_STREAMS), or pipelined HTTP/1.1 requests. */
  maxStreams: number;
  /** Bytes of request headers accepted. */
  maxHeaderSize: number;
  /** CIDRs whose X-Forwarded-For is believed. */
  trustedProxies: string[];
  /** Whose HTTP/2 serves the connections that speak it: Veil's own, or the runtime's node:http2. */
  http2: Http2Implementation;
  /** `odoh_target`: the path takes ODoH too, and /.well-known/odohconfigs serves the configs. */
  odohTarget: OdohTargetOptions | null;
  /** `odoh_relay`: the path is an oblivious relay (and nothing else). */
  odohRelay: OdohRelayOptions | null;
}

const COMMON = ['idle_timeout', 'request_timeout', 'max_connections', 'max_connections_per_client', 'max_streams', 'max_header_size', 'trusted_proxies', 'http2', 'odoh_target', 'odoh_relay'] as const;
/** A request of a few hundred bytes has this long to arrive, unless idle_timeout is shorter. */
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
export const HTTPS_OPTION_NAMES = ['cert', 'key', ...COMMON] as const;
export const HTTP_OPTION_NAMES = COMMON;

export function parseDohListenerOptions(endpoint: Endpoint, options: Directive[], at: Location, secure: boolean): DohListenerOptions {
  const pathPart = endpoint.path || DEFAULT_PATH;
  if (!/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/.test(pathPart)) {
    throw configError(PLUGIN, at, `${endpoint.text}: the path must be a plain path like /dns-query (no query string)`);
  }
  const result: DohListenerOptions = {
    path: pathPart,
    cert: null,
    key: null,
    idleTimeoutMs: 30_000,
    requestTimeoutMs: -1,
    maxConnections: 1000,
    maxConnectionsPerClient: -1,
    maxStreams: 100,
    maxHeaderSize: 8192,
    trustedProxies: [],
    http2: 'veil',
    odohTarget: null,
    odohRelay: null,
  };
  let certToken: Token | null = null;
  for (const d of options) {
    if (d.name.text === 'odoh_target' || d.name.text === 'odoh_relay') {
      if (result.odohTarget || result.odohRelay) {
        throw configError(PLUGIN, d.name, 'one ODoH role per listener: a relay and a target run by the same server would see both who asks and what (use two listeners, better two operators)');
      }
      if (d.name.text === 'odoh_target') result.odohTarget = parseOdohTarget(d);
      else result.odohRelay = parseOdohRelay(d);
      continue;
    }
    const values = expectArgs(PLUGIN, d, 1, d.name.text === 'trusted_proxies' ? Infinity : 1);
    const value = values[0]!;
    switch (d.name.text) {
      case 'cert':
        certToken = value;
        result.cert = readPemFile(PLUGIN, value, 'cert');
        break;
      case 'key':
        result.key = readPemFile(PLUGIN, value, 'key');
        break;
      case 'idle_timeout':
        result.idleTimeoutMs = parseDuration(PLUGIN, value, { min: 100, max: 3_600_000 });
        break;
      case 'request_timeout':
        result.requestTimeoutMs = parseDuration(PLUGIN, value, { min: 100, max: 3_600_000 });
        break;
      case 'max_connections':
        result.maxConnections = parseInteger(PLUGIN, value, 1, 1_000_000);
        break;
      case 'max_connections_per_client':
        result.maxConnectionsPerClient = parseInteger(PLUGIN, value, 1, 1_000_000);
        break;
      case 'max_streams':
        result.maxStreams = parseInteger(PLUGIN, value, 1, 10_000);
        break;
      case 'max_header_size':
        result.maxHeaderSize = parseInteger(PLUGIN, value, 1024, 1_048_576);
        break;
      case 'trusted_proxies':
        result.trustedProxies = values.map((token) => parseCidrToken(PLUGIN, token, '10.0.0.0/8, ::1'));
        break;
      case 'http2':
        if (!(HTTP2_IMPLEMENTATIONS as readonly string[]).includes(value.text)) {
          throw configError(PLUGIN, value, `http2 is ${HTTP2_IMPLEMENTATIONS.join(' or ')} (Veil's own HTTP/2, or the runtime's node:http2), not "${value.text}"`);
        }
        result.http2 = value.text as Http2Implementation;
        break;
    }
  }
  if (result.requestTimeoutMs < 0) result.requestTimeoutMs = Math.min(DEFAULT_REQUEST_TIMEOUT_MS, result.idleTimeoutMs);
  // By default no one address holds more than a tenth of the connections (at least one).
  if (result.maxConnectionsPerClient < 0) result.maxConnectionsPerClient = Math.max(1, Math.ceil(result.maxConnections / 10));
  if (secure) {
    if (!result.cert || !result.key) throw configError(PLUGIN, at, `${endpoint.text} needs "cert FILE" and "key FILE" in its block`);
    try {
      tls.createSecureContext({ cert: result.cert, key: result.key });
    } catch (err) {
      throw configError(PLUGIN, certToken, `the certificate and key do not go together: ${(err as Error).message}`);
    }
  }
  return result;
}
