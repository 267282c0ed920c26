/**
 * `dot`: DNS-over-TLS upstreams (RFC 7858), and the `tls://` listener.
 *
 *     dot [FROM] {
 *         server NAME tls://IP[:PORT] [{
 *             server_name HOST
 *             ca FILE
 *             pin_sha256 BASE64
 *             pool N
 *             connect_timeout D
 *             handshake_timeout D
 *             read_timeout D
 *             write_timeout D
 *             stale_timeout D
 *             max_retries N
 *         }]
 *         server NAME sdns://… [{ … }]
 *         server NAME [{ … }]          # NAME's stamp from the resolver lists
 *         servers_from LIST { … }      # every DoT server of a list that passes the filters
 *     }
 */
import { isIP } from 'node:net';
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, expectUniqueNames, parseDuration, parseInteger, readOptions } from '../../core/config/options.js';
import { parseZoneKey } from '../../core/config/zones.js';
import { AddressError, parseEndpoint } from '../../core/net/address.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';
import { SourcesService } from '../../lib/sources/catalog.js';
import { addServerLines, listedTokens, type ServersFromLine } from '../../lib/sources/server-lines.js';
import { parseServersFrom } from '../../lib/sources/servers-from.js';
import { parseStampToken, stampAddress, stampHost } from '../../lib/stamp-config.js';
import type { Stamp } from '../../lib/stamps.js';
import { TlsContextsService } from '../../lib/tls/contexts.js';
import { trustOptions } from '../../lib/tls/files.js';
import { tlsTransport } from './listener.js';
import { DotUpstream, type DotServerOptions } from './upstream.js';

const NAME = 'dot';
const DEFAULT_PORT = 853;
const HOST_NAME = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$/i;

export interface DotServer extends DotServerOptions {
  zone: string;
  token: Token;
  /** Where the server line wrote its name. */
  nameToken?: Token;
  /** `server NAME` without an address: the resolver lists give the stamp. */
  listed: boolean;
}

export interface DotOptions {
  servers: DotServer[];
  /** `servers_from LIST { … }` lines, with the zone of their directive. */
  serversFrom: ServersFromLine[];
}

export const dotPlugin: PluginDefinition<DotOptions> = {
  name: NAME,
  transports: [tlsTransport],
  provides: [Services.upstreams],
  requires: [
    {
      service: SourcesService,
      neededBy: ({ servers, serversFrom }) => listedTokens(servers, serversFrom),
      because: 'a server without an address comes from the resolver lists',
    },
  ],

  parse(directives) {
    const options: DotOptions = { servers: [], serversFrom: [] };
    for (const d of directives) parseDirective(d, options);
    expectUniqueNames(NAME, options.servers);
    return options;
  },

  create({ servers, serversFrom }, scope) {
    const tls = scope.service(TlsContextsService);
    return addServerLines(scope, {
      plugin: NAME,
      protocol: 'dot',
      stampProtocol: 'dot',
      servers,
      serversFrom,
      upstream: (server) => new DotUpstream(server, scope.logger, tls),
      fromStamp: (server, stamp) => {
        const target = fromStamp(stamp, server.token);
        // A server_name written on the line wins over the stamp's host name.
        return new DotUpstream({ ...server, ...target, serverName: server.serverName ?? target.serverName }, scope.logger, tls);
      },
      serverNamed: (name, from) => ({ name, token: from.token, zone: from.zone, listed: true, host: '', port: DEFAULT_PORT, serverName: null, ...defaults() }),
    });
  },
};

function parseDirective(d: Directive, options: DotOptions): void {
  const [from] = expectArgs(NAME, d, 0, 1);
  if (from && from.text.includes('://')) throw configError(NAME, from, `the argument of dot is the zone to send (e.g. "."); servers go inside the block: server NAME ${from.text} { server_name HOST }`);
  const zone = from ? parseZoneKey(from).zone : '.';
  if (!d.block || d.block.length === 0) throw configError(NAME, d.blockStart ?? d.name, 'no upstream: add "server NAME tls://IP:PORT { server_name HOST }" lines in a block');
  readOptions(
    NAME,
    d.block,
    {
      server: (line) => options.servers.push({ ...parseServerLine(line), zone }),
      servers_from: (line) => options.serversFrom.push({ ...parseServersFrom(NAME, line), zone }),
    },
    ['server', 'servers_from'],
  );
}

/** The defaults of every option of a server line. */
function defaults(): Omit<DotServerOptions, 'name' | 'host' | 'port' | 'serverName'> {
  return {
    extraCa: [],
    pins: [],
    certHashes: [],
    poolSize: 2,
    connectTimeoutMs: 2000,
    handshakeTimeoutMs: 2000,
    readTimeoutMs: 2000,
    writeTimeoutMs: 2000,
    staleTimeoutMs: 10_000,
    maxRetries: 1,
  };
}

function parseServerLine(line: Directive): Omit<DotServer, 'zone'> {
  const [name, address] = expectArgs(NAME, line, 1, 2) as [Token, Token | undefined];
  if (name.text.includes('://')) throw configError(NAME, name, 'a server line is "server NAME ADDRESS": the name comes first');
  // Without an address, the lists give NAME's stamp when the server starts.
  const target: Target = !address ? { host: '', port: DEFAULT_PORT, serverName: null, certHashes: [] } : address.text.startsWith('sdns:') ? fromStamp(parseStampToken(NAME, address), address) : fromUrl(address);
  const server: Omit<DotServer, 'zone'> = { name: name.text, token: address ?? name, nameToken: name, listed: !address, ...defaults(), ...target };
  const duration = (d: Directive, min: number, max: number): number => parseDuration(NAME, expectArgs(NAME, d, 1)[0]!, { min, max });
  readOptions(
    NAME,
    line.block,
    {
      server_name: (d) => (server.serverName = parseServerName(expectArgs(NAME, d, 1)[0]!)),
      ...trustOptions(NAME, server),
      pool: (d) => (server.poolSize = parseInteger(NAME, expectArgs(NAME, d, 1)[0]!, 1, 64)),
      connect_timeout: (d) => (server.connectTimeoutMs = duration(d, 10, 60_000)),
      handshake_timeout: (d) => (server.handshakeTimeoutMs = duration(d, 10, 60_000)),
      read_timeout: (d) => (server.readTimeoutMs = duration(d, 10, 60_000)),
      write_timeout: (d) => (server.writeTimeoutMs = duration(d, 10, 60_000)),
      stale_timeout: (d) => (server.staleTimeoutMs = duration(d, 100, 3_600_000)),
      max_retries: (d) => (server.maxRetries = parseInteger(NAME, expectArgs(NAME, d, 1)[0]!, 0, 5)),
    },
    ['ca', 'pin_sha256'],
  );
  if (address && server.serverName === null && server.pins.length === 0) {
    throw configError(NAME, address, `${name.text} needs server_name (the name on its certificate) or pin_sha256: without them nothing proves who answers`);
  }
  return server;
}

interface Target {
  host: string;
  port: number;
  serverName: string | null;
  certHashes: Buffer[];
}

function fromUrl(token: Token): Target {
  let endpoint;
  try {
    endpoint = parseEndpoint(token.text, DEFAULT_PORT);
  } catch (err) {
    if (err instanceof AddressError) throw configError(NAME, token, err.message);
    throw err;
  }
  if (endpoint.scheme !== 'tls') throw configError(NAME, token, `dot upstreams are tls://IP[:PORT] or a DoT sdns:// stamp, not ${endpoint.scheme}://`);
  if (endpoint.path) throw configError(NAME, token, `unexpected path "${endpoint.path}"`);
  return { host: endpoint.host, port: endpoint.port, serverName: null, certHashes: [] };
}

/**
 * Where a DoT stamp says the server is: its address; the host name is the certificate's
 * identity and the SNI; the hashes must match the chain. Its bootstrap entries are plain-DNS
 * resolvers for looking the host name up, which Veil never asks (that lookup would leak):
 * without an address the stamp cannot be used.
 */
function fromStamp(stamp: Stamp, token: Token): Target {
  if (stamp.protocol !== 'dot') throw configError(NAME, token, `this is a ${stamp.protocol} stamp; dot takes DNS-over-TLS stamps`);
  const { host: name } = stampHost(NAME, token, stamp);
  if (!stamp.address) throw configError(NAME, token, 'the stamp has no address (its bootstrap entries are plain-DNS resolvers, which Veil never asks): write "server NAME tls://IP { server_name HOST }"');
  const ip = stampAddress(NAME, token, stamp.address, DEFAULT_PORT);
  return { host: ip.host, port: ip.port, serverName: name, certHashes: stamp.hashes };
}

function parseServerName(token: Token): string {
  const text = token.text.replace(/^\[|\]$/g, '');
  if (isIP(text) === 0 && !HOST_NAME.test(text)) throw configError(NAME, token, `"${token.text}" is not a host name`);
  return text.toLowerCase().replace(/\.$/, '');
}

