/**
 * Parsing `odoh [FROM] { server … relay … route … servers_from … }`. Everything is checked here
 * (veil check runs it): URLs and stamps, where addresses come from, pins, CA files, routes.
 * Nothing is ever looked up by name: a relay is reached at an address its stamp or `bootstrap`
 * gives; a target is reached only through relays, and directly only to fetch its configs when
 * `configs direct` says so (then at its `bootstrap` addresses).
 */
import net from 'node:net';
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, expectNoBlock, flag, parseBootstrap, parseDuration, readOptions } from '../../core/config/options.js';
import { parseZoneKey } from '../../core/config/zones.js';
import { AddressError, parseEndpoint } from '../../core/net/address.js';
import { parseServersFrom, type ServersFromOptions } from '../../lib/sources/servers-from.js';
import { parseStampToken, stampHost } from '../../lib/stamp-config.js';
import { splitAddress, type HttpsLikeStamp, type OdohTargetStamp } from '../../lib/stamps.js';
import { trustOptions } from '../../lib/tls/files.js';
import type { Http2Client } from '../../lib/https-client/connections.js';

export const NAME = 'odoh';
const DEFAULT_TIMEOUT_MS = 2500;

/** Where a target's configs come from: through a relay (its address stays hidden) or from it directly. */
export type ConfigsVia = 'relay' | 'direct';

export interface TlsChecks {
  extraCa: string[];
  pins: Buffer[];
  certHashes: Buffer[];
}

export interface TargetSpec extends TlsChecks {
  name: string;
  token: Token;
  zone: string;
  /** Lower-case host name (or IP) the target answers for. */
  host: string;
  port: number;
  path: string;
  /** What `targethost` says: `host`, or `host:port` when the port is not 443. */
  authority: string;
  /** Addresses for fetching configs directly (`bootstrap`, or an IP host). */
  addresses: string[];
  configsVia: ConfigsVia;
  timeoutMs: number;
  /** `server NAME` without a URL or stamp: the resolver lists give the stamp. */
  listed: boolean;
  /** Send a W3C `traceparent` (to the relay that carries it) with sampled queries; off by default. */
  traceparent: boolean;
  /** Whose HTTP/2 client fetches from the target directly (`http2 veil|node`); Veil's own when absent. */
  http2?: Http2Client;
}

export interface RelaySpec extends TlsChecks {
  name: string;
  token: Token;
  host: string;
  port: number;
  /** The relay's path (may carry a query string of its own). */
  path: string;
  authority: string;
  addresses: string[];
  /** `relay NAME` without a URL or stamp: from the lists. */
  listed: boolean;
  /** Whose HTTP/2 client reaches the relay (`http2 veil|node`); Veil's own when absent. */
  http2?: Http2Client;
  /** The `bootstrap` addresses given on the line, if any (for a listed relay). */
  bootstrap: string[] | null;
}

/** `direct`: the target itself, showing it the client's address (only when a route says so). */
export const DIRECT = 'direct';

export interface RouteSpec {
  server: Token;
  /** Relay names, `direct`, in order; `*` expanded at query time. */
  via: string[];
  wildcard: boolean;
}

export interface OdohOptions {
  servers: TargetSpec[];
  relays: RelaySpec[];
  routes: RouteSpec[];
  serversFrom: Array<ServersFromOptions & { zone: string }>;
  /** The first directive's name, for messages about the whole plugin. */
  token: Token;
}

export function parseOdohDirectives(directives: Directive[]): OdohOptions {
  const options: OdohOptions = { servers: [], relays: [], routes: [], serversFrom: [], token: directives[0]!.name };
  const routeLines: Directive[] = [];
  for (const d of directives) {
    const [from] = expectArgs(NAME, d, 0, 1);
    if (from && from.text.includes('://')) throw configError(NAME, from, `the argument of odoh is the zone to serve (e.g. "odoh . { … }"); targets go inside the block as "server NAME ${from.text}"`);
    const zone = from ? parseZoneKey(from).zone : '.';
    readOptions(
      NAME,
      d.block,
      {
        server: (line) => options.servers.push(parseServerLine(line, zone)),
        relay: (line) => options.relays.push(parseRelayLine(line)),
        route: (line) => routeLines.push(line),
        servers_from: (line) => options.serversFrom.push({ ...parseServersFrom(NAME, line), zone }),
      },
      ['server', 'relay', 'route', 'servers_from'],
    );
  }
  if (options.servers.length === 0 && options.serversFrom.length === 0) throw configError(NAME, options.token, 'no target: add "server NAME sdns://…|https://HOST/PATH" (or "servers_from LIST") lines in a block');
  const names = new Set<string>();
  for (const item of [...options.servers, ...options.relays]) {
    if (names.has(item.name)) throw configError(NAME, item.token, `two targets or relays are named "${item.name}"`);
    names.add(item.name);
  }
  options.routes = routeLines.map((line) => parseRoute(line, options));
  const routed = new Set<string>();
  for (const route of options.routes) {
    if (routed.has(route.server.text)) throw configError(NAME, route.server, `${route.server.text} has two routes`);
    routed.add(route.server.text);
  }
  return options;
}

function parseServerLine(line: Directive, zone: string): TargetSpec {
  const [name, where] = expectArgs(NAME, line, 1, 2) as [Token, Token | undefined];
  checkName(name);
  const tls: TlsChecks = { extraCa: [], pins: [], certHashes: [] };
  let bootstrap: string[] | null = null;
  let configsVia = 'relay' as ConfigsVia;
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  let traceparent = false;
  let http2: Http2Client = 'veil';
  readOptions(
    NAME,
    line.block,
    {
      traceparent: (o) => (traceparent = flag(NAME, o)),
      http2: (o) => (http2 = parseHttp2(o)),
      bootstrap: (o) => (bootstrap = parseBootstrap(NAME, o)),
      configs: (o) => {
        const [value] = expectArgs(NAME, o, 1);
        if (value!.text !== 'relay' && value!.text !== 'direct') throw configError(NAME, value!, `configs is "relay" or "direct", not "${value!.text}"`);
        configsVia = value!.text;
      },
      timeout: (o) => (timeoutMs = parseDuration(NAME, expectArgs(NAME, o, 1)[0]!, { min: 10, max: 60_000 })),
      ...trustOptions(NAME, tls),
    },
    ['pin_sha256'],
  );
  const base = { name: name.text, token: where ?? name, zone, configsVia, timeoutMs, traceparent, http2, ...tls };
  if (!where) {
    if (configsVia === 'direct' && !bootstrap) throw configError(NAME, name, 'configs direct needs the target\'s addresses: add "bootstrap IP…"');
    return { ...base, host: '', port: 443, path: '', authority: '', addresses: bootstrap ?? [], listed: true };
  }
  const place = where.text.startsWith('sdns:') ? targetFromStamp(parseStampToken(NAME, where), where) : fromUrl(where, 'server');
  const addresses = bootstrap ?? (net.isIP(place.host) ? [place.host] : []);
  if (bootstrap && net.isIP(place.host)) throw configError(NAME, where, `bootstrap gives the addresses of a host name, and ${place.host} is already an address`);
  if (configsVia === 'direct' && addresses.length === 0) throw configError(NAME, where, `${place.host} is a host name: "configs direct" needs "bootstrap IP…" (Veil never asks the system resolver)`);
  return { ...base, ...place, addresses, listed: false };
}

/** The target of an ODoH target stamp (0x05: host[:port] and path, never an address). */
export function targetFromStamp(stamp: ReturnType<typeof parseStampToken>, token: Token): Place {
  if (stamp.protocol !== 'odohTarget') {
    throw configError(NAME, token, `this is a ${stamp.protocol} stamp, not an ODoH target one (sdns://BQ…)${stamp.protocol === 'odohRelay' ? '; relays go on "relay" lines' : ''}`);
  }
  return placeOf(stamp, token);
}

function parseRelayLine(line: Directive): RelaySpec {
  const [name, where] = expectArgs(NAME, line, 1, 2) as [Token, Token | undefined];
  checkName(name);
  const tls: TlsChecks = { extraCa: [], pins: [], certHashes: [] };
  let bootstrap: string[] | null = null;
  let http2: Http2Client = 'veil';
  readOptions(NAME, line.block, { bootstrap: (o) => (bootstrap = parseBootstrap(NAME, o)), http2: (o) => (http2 = parseHttp2(o)), ...trustOptions(NAME, tls) }, ['pin_sha256']);
  if (!where) return { name: name.text, token: name, host: '', port: 443, path: '', authority: '', addresses: [], listed: true, bootstrap, http2, ...tls };
  const relay = where.text.startsWith('sdns:') ? relayFromStamp(parseStampToken(NAME, where) as HttpsLikeStamp, where, bootstrap, tls) : relayFromUrl(where, bootstrap, tls);
  return { ...relay, name: name.text, token: where, http2 };
}

/** `http2 veil|node`: whose HTTP/2 client. */
function parseHttp2(o: Directive): Http2Client {
  const [value] = expectArgs(NAME, o, 1);
  if (value!.text !== 'veil' && value!.text !== 'node') throw configError(NAME, value!, `http2 is "veil" (Veil's own HTTP/2 client) or "node" (node:http2), not "${value!.text}"`);
  return value!.text;
}

/** A relay from an ODoH relay stamp (0x85): its address (or `bootstrap`), host, path and certificate hashes. */
export function relayFromStamp(stamp: ReturnType<typeof parseStampToken>, token: Token, bootstrap: string[] | null, tls: TlsChecks): Omit<RelaySpec, 'name' | 'token'> {
  if (stamp.protocol !== 'odohRelay') {
    throw configError(NAME, token, `this is a ${stamp.protocol} stamp, not an ODoH relay one (sdns://hQ…)${stamp.protocol === 'dnscryptRelay' ? '; DNSCrypt relays cannot carry ODoH' : ''}`);
  }
  const place = placeOf(stamp, token);
  let addresses = bootstrap ?? [];
  let port = place.port;
  if (!bootstrap && stamp.address) {
    const address = splitAddress(stamp.address, 443);
    addresses = [address.host];
    port = address.port;
  } else if (!bootstrap && net.isIP(place.host)) {
    addresses = [place.host];
  }
  if (addresses.length === 0) throw configError(NAME, token, `the stamp gives no address for ${place.host}: add a block with "bootstrap IP…" (Veil never asks the system resolver)`);
  const authority = place.authority === place.host && port !== 443 ? `${hostText(place.host)}:${port}` : place.authority;
  return { ...place, port, authority, addresses, listed: false, bootstrap, extraCa: tls.extraCa, pins: tls.pins, certHashes: [...tls.certHashes, ...stamp.hashes] };
}

function relayFromUrl(token: Token, bootstrap: string[] | null, tls: TlsChecks): Omit<RelaySpec, 'name' | 'token'> {
  const place = fromUrl(token, 'relay');
  if (bootstrap && net.isIP(place.host)) throw configError(NAME, token, `bootstrap gives the addresses of a host name, and ${place.host} is already an address`);
  const addresses = bootstrap ?? (net.isIP(place.host) ? [place.host] : []);
  if (addresses.length === 0) throw configError(NAME, token, `${place.host} is a host name: add a block with "bootstrap IP…" (Veil never asks the system resolver)`);
  return { ...place, addresses, listed: false, bootstrap, extraCa: tls.extraCa, pins: tls.pins, certHashes: tls.certHashes };
}

export interface Place {
  host: string;
  port: number;
  path: string;
  authority: string;
}

function placeOf(stamp: { host: string; path: string }, token: Token): Place {
  const split = stampHost(NAME, token, stamp);
  const { host } = split;
  const port = split.port ?? 443;
  if (!stamp.path.startsWith('/')) throw configError(NAME, token, `bad stamp: path "${stamp.path}" does not start with /`);
  return { host, port, path: stamp.path, authority: port === 443 ? hostText(host) : `${hostText(host)}:${port}` };
}

function fromUrl(token: Token, what: 'server' | 'relay'): Place {
  let endpoint;
  try {
    endpoint = parseEndpoint(token.text, 443, { allowHostname: true });
  } catch (err) {
    if (err instanceof AddressError) throw configError(NAME, token, err.message);
    throw err;
  }
  if (endpoint.scheme !== 'https') throw configError(NAME, token, `an ODoH ${what} is an https:// URL or an sdns:// stamp, not ${endpoint.scheme}://`);
  const host = endpoint.host.replace(/\.$/, '').toLowerCase();
  const path = endpoint.path || (what === 'server' ? '/dns-query' : '/proxy');
  return { host, port: endpoint.port, path, authority: endpoint.port === 443 ? hostText(host) : `${hostText(host)}:${endpoint.port}` };
}

function hostText(host: string): string {
  return net.isIPv6(host) ? `[${host}]` : host;
}

function parseRoute(line: Directive, options: OdohOptions): RouteSpec {
  expectNoBlock(NAME, line);
  const [server, via, ...targets] = expectArgs(NAME, line, 3, Infinity) as [Token, Token, ...Token[]];
  if (via.text !== 'via') throw configError(NAME, via, `expected "via" after the server name, got "${via.text}" (route SERVER via RELAY…)`);
  if (server.text !== '*' && !options.servers.some((s) => s.name === server.text) && options.serversFrom.length === 0) {
    throw configError(NAME, server, `no ODoH server named "${server.text}" in this block (servers: ${options.servers.map((s) => s.name).join(', ') || 'none'})`);
  }
  const chosen: string[] = [];
  let wildcard = false;
  for (const target of targets) {
    if (target.text === '*') wildcard = true;
    else if (target.text === DIRECT) chosen.push(DIRECT);
    else if (options.relays.some((r) => r.name === target.text)) chosen.push(target.text);
    else throw configError(NAME, target, `no relay named "${target.text}"${options.relays.length ? ` (relays: ${options.relays.map((r) => r.name).join(', ')})` : '; add a "relay NAME sdns://…" line'}`);
  }
  return { server, via: [...new Set(chosen)], wildcard };
}

function checkName(name: Token): void {
  if (name.text.includes('://') || name.text.startsWith('sdns:')) throw configError(NAME, name, 'a line is "server NAME URL" or "relay NAME URL": the name comes first');
  if (name.text === '*' || name.text === DIRECT) throw configError(NAME, name, `"${name.text}" cannot be a name: routes use it`);
}

/** The options a target taken by `servers_from` (or named alone) gets from its stamp. */
export function listedTarget(spec: TargetSpec, stamp: OdohTargetStamp): TargetSpec {
  const place = placeOf(stamp, spec.token);
  const addresses = spec.addresses.length > 0 ? spec.addresses : net.isIP(place.host) ? [place.host] : [];
  if (spec.configsVia === 'direct' && addresses.length === 0) throw configError(NAME, spec.token, `${place.host} is a host name: "configs direct" needs "bootstrap IP…"`);
  return { ...spec, ...place, addresses, listed: false };
}

/** A target from `servers_from`: the defaults, its stamp completing them. */
export function serverFromList(name: string, token: Token, zone: string): TargetSpec {
  return { name, token, zone, host: '', port: 443, path: '', authority: '', addresses: [], configsVia: 'relay', timeoutMs: DEFAULT_TIMEOUT_MS, listed: true, extraCa: [], pins: [], certHashes: [], traceparent: false };
}
