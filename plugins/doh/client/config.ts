/**
 * Parsing `doh [FROM] { server NAME https://…|sdns://… [{ options }] }`. Everything is checked
 * here (veil check runs it): URL or stamp, where the server's addresses come from, pins, the
 * CA file. A host name without addresses is refused: asking the system resolver for it would
 * tell the network which resolver Veil uses, the leak DoH is meant to close.
 */
import net from 'node:net';
import type { Directive, Token } from '../../../core/config/ast.js';
import { configError, expectArgs, expectUniqueNames, flag, parseBootstrap, parseDuration, parseInteger, readOptions } from '../../../core/config/options.js';
import { parseZoneKey } from '../../../core/config/zones.js';
import { AddressError, parseEndpoint } from '../../../core/net/address.js';
import { parseServersFrom, type ServersFromOptions } from '../../../lib/sources/servers-from.js';
import { parseStampToken, stampHost } from '../../../lib/stamp-config.js';
import { splitAddress, type HttpsLikeStamp, type Stamp } from '../../../lib/stamps.js';
import { trustOptions } from '../../../lib/tls/files.js';
import type { Http2Client } from '../../../lib/https-client/connections.js';
import type { DohServerOptions } from './upstream.js';

export const NAME = 'doh';
const DEFAULT_PATH = '/dns-query';
const DEFAULT_TIMEOUT_MS = 2000;

export interface DohServer extends DohServerOptions {
  zone: string;
  /** The token that named it, for messages. */
  token: Token;
  /** Where the server line wrote its name. */
  nameToken?: Token;
  /** `server NAME` without a URL or stamp: the resolver lists give the stamp. */
  listed: boolean;
  /** The `bootstrap` addresses given on the line, if any. */
  bootstrap: string[] | null;
}

export interface DohOptions {
  servers: DohServer[];
  /** `servers_from LIST { … }` lines, with the zone of their directive. */
  serversFrom: Array<ServersFromOptions & { zone: string }>;
}

export function parseDohDirectives(directives: Directive[]): DohOptions {
  const options: DohOptions = { servers: [], serversFrom: [] };
  for (const d of directives) parseDirective(d, options);
  expectUniqueNames(NAME, options.servers);
  return options;
}

/** The options a server taken by `servers_from` gets: the defaults, its stamp completing them. */
export function serverFromList(name: string, token: Token, zone: string): DohServer {
  return {
    name, token, zone, listed: true, bootstrap: null, method: 'post', pool: 1, timeoutMs: DEFAULT_TIMEOUT_MS, extraCa: [], pins: [], url: '', hostname: '', port: 443, path: '', addresses: [], certHashes: [], traceparent: false, http2: 'veil',
  };
}

function parseDirective(d: Directive, options: DohOptions): void {
  const [from] = expectArgs(NAME, d, 0, 1);
  if (from && from.text.includes('://')) throw configError(NAME, from, `the argument of doh is the zone to serve (e.g. "doh . { … }"); servers go inside the block as "server NAME ${from.text}"`);
  const zone = from ? parseZoneKey(from).zone : '.';
  const servers: DohServer[] = [];
  const serversFrom: DohOptions['serversFrom'] = [];
  readOptions(
    NAME,
    d.block,
    {
      server: (line) => servers.push({ ...parseServerLine(line), zone }),
      servers_from: (line) => serversFrom.push({ ...parseServersFrom(NAME, line), zone }),
    },
    ['server', 'servers_from'],
  );
  if (servers.length === 0 && serversFrom.length === 0) throw configError(NAME, d.name, 'no server: add "server NAME https://HOST/dns-query { … }" (or "servers_from LIST") lines in a block');
  options.servers.push(...servers);
  options.serversFrom.push(...serversFrom);
}

interface Where {
  url: string;
  hostname: string;
  port: number;
  path: string;
  /** Addresses the URL or stamp itself gives (an IP host, a stamp's address). */
  addresses: string[];
  certHashes: Buffer[];
  /** Why `bootstrap` is needed when nothing gave addresses. */
  needsBootstrap: string;
}

function parseServerLine(line: Directive): Omit<DohServer, 'zone'> {
  const [name, target] = expectArgs(NAME, line, 1, 2) as [Token, Token | undefined];
  if (name.text.includes('://')) throw configError(NAME, name, 'a server line is "server NAME URL": the name comes first');
  const where = !target ? null : target.text.startsWith('sdns:') ? fromStamp(parseStampToken(NAME, target), target) : fromUrl(target);

  let bootstrap: string[] | null = null;
  const extraCa: string[] = [];
  const pins: Buffer[] = [];
  let method: 'post' | 'get' = 'post';
  let pool = 1;
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  let traceparent = false;
  let http2: Http2Client = 'veil';
  readOptions(
    NAME,
    line.block,
    {
      traceparent: (o) => (traceparent = flag(NAME, o)),
      bootstrap: (o) => {
        if (where && net.isIP(where.hostname) !== 0) throw configError(NAME, o.name, `bootstrap gives the addresses of a host name, and ${where.hostname} is already an address`);
        bootstrap = parseBootstrap(NAME, o);
      },
      ...trustOptions(NAME, { extraCa, pins }),
      method: (o) => {
        const [value] = expectArgs(NAME, o, 1);
        if (value!.text !== 'post' && value!.text !== 'get') throw configError(NAME, value!, `method is "post" or "get", not "${value!.text}"`);
        method = value!.text;
      },
      pool: (o) => {
        const [value] = expectArgs(NAME, o, 1);
        pool = parseInteger(NAME, value!, 1, 64);
      },
      http2: (o) => {
        const [value] = expectArgs(NAME, o, 1);
        if (value!.text !== 'veil' && value!.text !== 'node') throw configError(NAME, value!, `http2 is "veil" (Veil's own HTTP/2 client) or "node" (node:http2), not "${value!.text}"`);
        http2 = value!.text;
      },
      timeout: (o) => {
        const [value] = expectArgs(NAME, o, 1);
        timeoutMs = parseDuration(NAME, value!, { min: 10, max: 60_000 });
      },
    },
    ['pin_sha256'],
  );

  const common = { name: name.text, nameToken: name, method, pool, timeoutMs, extraCa, pins, bootstrap: bootstrap as string[] | null, traceparent, http2 };
  if (!where) return { ...common, token: name, listed: true, url: '', hostname: '', port: 443, path: '', addresses: [], certHashes: [] };
  const addresses = bootstrap ?? where.addresses;
  if (addresses.length === 0) throw configError(NAME, target!, where.needsBootstrap);
  return {
    listed: false,
    bootstrap,
    name: name.text,
    nameToken: name,
    token: target!,
    url: where.url,
    hostname: where.hostname,
    port: where.port,
    path: where.path,
    addresses,
    method,
    pool,
    timeoutMs,
    extraCa,
    pins,
    certHashes: where.certHashes,
    traceparent,
    http2,
  };
}

function fromUrl(token: Token): Where {
  let endpoint;
  try {
    endpoint = parseEndpoint(token.text, 443, { allowHostname: true });
  } catch (err) {
    if (err instanceof AddressError) throw configError(NAME, token, err.message);
    throw err;
  }
  if (endpoint.scheme === 'http') throw configError(NAME, token, 'http:// would send queries in plaintext; DoH upstreams are https://');
  if (endpoint.scheme !== 'https') throw configError(NAME, token, `doh upstreams are https:// URLs or sdns:// stamps, not ${endpoint.scheme}://`);
  const hostname = endpoint.host.replace(/\.$/, '').toLowerCase();
  const isAddress = net.isIP(hostname) !== 0;
  const pathPart = endpoint.path || DEFAULT_PATH;
  return {
    url: `https://${net.isIPv6(hostname) ? `[${hostname}]` : hostname}${endpoint.port === 443 ? '' : `:${endpoint.port}`}${pathPart}`,
    hostname,
    port: endpoint.port,
    path: pathPart,
    addresses: isAddress ? [hostname] : [],
    certHashes: [],
    needsBootstrap: `${hostname} is a host name: add "bootstrap IP…" with its addresses (Veil never asks the system resolver for an upstream's address: that lookup would reveal the resolver you use)`,
  };
}

/**
 * The options of a `server NAME` line completed with the stamp the lists give for NAME. Throws
 * (with the line's position) when the stamp cannot be used: no address and no `bootstrap`.
 */
export function listedServer(server: DohServer, stamp: HttpsLikeStamp): DohServerOptions {
  const where = fromStamp(stamp, server.token);
  const addresses = server.bootstrap ?? where.addresses;
  if (addresses.length === 0) throw configError(NAME, server.token, where.needsBootstrap);
  return { ...server, url: where.url, hostname: where.hostname, port: where.port, path: where.path, addresses, certHashes: where.certHashes };
}

function fromStamp(stamp: Stamp, token: Token): Where {
  if (stamp.protocol !== 'doh') {
    const plugin = stamp.protocol === 'dot' ? 'dot' : stamp.protocol === 'dnscrypt' ? 'dnscrypt' : stamp.protocol === 'plain' ? 'forward' : null;
    throw configError(NAME, token, `this is a ${stamp.protocol} stamp, not a DoH one${plugin ? `; use the ${plugin} plugin` : ''}`);
  }
  const { host, port: hostPort } = stampHost(NAME, token, stamp);
  let port = hostPort ?? 443;
  const addresses: string[] = [];
  if (stamp.address) {
    const address = splitAddress(stamp.address, 443);
    addresses.push(address.host);
    port = address.port;
  } else if (net.isIP(host) !== 0) {
    addresses.push(host);
  }
  const authority = net.isIPv6(host) ? `[${host}]` : host;
  return {
    url: `https://${authority}${port === 443 ? '' : `:${port}`}${stamp.path}`,
    hostname: host,
    port,
    path: stamp.path,
    addresses,
    certHashes: stamp.hashes,
    needsBootstrap:
      `the stamp gives no address for ${host}: add a block with "bootstrap IP…"` +
      (stamp.bootstrap.length ? ` (the stamp's bootstrap entries ${stamp.bootstrap.join(', ')} are plain-DNS resolvers, which Veil does not ask: that lookup would leak)` : ''),
  };
}
