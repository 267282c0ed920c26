/**
 * `forward`: plain DNS upstreams.
 *
 *     forward [FROM] {
 *         server NAME udp://IP[:PORT] [insecure]
 *         server NAME tcp://IP[:PORT] [insecure]
 *         timeout DURATION
 *         no_0x20
 *     }
 *     forward FROM IP[:PORT]… [insecure] [{ timeout DURATION }]
 *
 * Plain DNS is readable by every network it crosses, so an upstream outside loopback and the
 * private ranges (RFC 1918, IPv6 ULA) is refused unless its line says `insecure`.
 */
import { isIP } from 'node:net';
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, expectUniqueNames, expectNoBlock, flag, parseDuration, readOptions } from '../../core/config/options.js';
import { parseZoneKey } from '../../core/config/zones.js';
import { AddressError, isCarrierNat, isLinkLocal, isPrivateAddress, parseEndpoint, parseHostPort } from '../../core/net/address.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';
import { parseStampToken } from '../../lib/stamp-config.js';
import { splitAddress } from '../../lib/stamps.js';
import { PlainDnsUpstream, type PlainDnsOptions } from './upstream.js';

const NAME = 'forward';
const DEFAULT_TIMEOUT_MS = 2000;
const SCHEMES = new Set(['udp', 'tcp', 'dns']);

export interface ForwardServer extends PlainDnsOptions {
  zone: string;
  /** The token that named it, for messages. */
  token: Token;
  /** Where `server NAME …` wrote its name. */
  nameToken?: Token;
}

export const forwardPlugin: PluginDefinition<ForwardServer[]> = {
  name: NAME,
  provides: [Services.upstreams],

  parse(directives) {
    const servers: ForwardServer[] = [];
    for (const d of directives) servers.push(...parseDirective(d));
    expectUniqueNames(NAME, servers);
    if (servers.length === 0) throw configError(NAME, directives[0]!.name, 'no upstream: add "server NAME udp://IP:PORT" lines or addresses after the zone');
    return servers;
  },

  create(servers, scope) {
    for (const server of servers) scope.upstreams.add(new PlainDnsUpstream(server, scope.logger), server.zone);
  },
};

interface Pending {
  name: string;
  token: Token;
  nameToken?: Token;
  host: string;
  port: number;
  tcpOnly: boolean;
  insecure: boolean;
}

function parseDirective(d: Directive): ForwardServer[] {
  const args = [...d.args];
  let insecureAll = false;
  if (args.length > 0 && args[args.length - 1]!.text === 'insecure') {
    insecureAll = true;
    args.pop();
  }
  const from = args.shift();
  if (from && (from.text.includes('://') || isIP(from.text.replace(/^\[|\]?(:\d+)?$/g, '')) !== 0)) {
    throw configError(NAME, from, `"${from.text}" looks like an address, but the first argument is the zone to forward (write "forward . ${from.text}" for every name)`);
  }
  const zone = from ? parseZoneKey(from).zone : '.';
  const pending: Pending[] = args.map((token) => ({ ...shortFormAddress(token), name: token.text, token, insecure: insecureAll }));
  if (insecureAll && pending.length === 0) throw configError(NAME, d.args[d.args.length - 1]!, '"insecure" goes after the addresses it applies to, or at the end of a server line');

  let timeoutMs = DEFAULT_TIMEOUT_MS;
  let randomizeCase = true;
  readOptions(
    NAME,
    d.block,
    {
      server: (line) => pending.push(parseServerLine(line)),
      timeout: (line) => {
        const [value] = expectArgs(NAME, line, 1);
        timeoutMs = parseDuration(NAME, value!, { min: 10, max: 60_000 });
      },
      no_0x20: (line) => (randomizeCase = !flag(NAME, line)),
    },
    ['server'],
  );

  return pending.map((p) => {
    if (!p.insecure && !isPrivateAddress(p.host)) {
      throw configError(
        NAME,
        p.token,
        `${p.name} (${p.host}) is ${placeOf(p.host)}: plaintext DNS to it is a DNS leak. Use dot, doh or dnscrypt, or end the line with "insecure" if plaintext is what you want`,
      );
    }
    return { name: p.name, host: p.host, port: p.port, tcpOnly: p.tcpOnly, timeoutMs, randomizeCase, zone, token: p.token, nameToken: p.nameToken };
  });
}

/** Where a non-private address is, in words for the error. */
function placeOf(host: string): string {
  if (isLinkLocal(host)) return 'link-local, not on a private network (whoever else is on the link may answer there)';
  if (isCarrierNat(host)) return 'in 100.64.0.0/10, the carrier\'s NAT network shared with its other customers, not a private network';
  return 'on the public internet';
}

function shortFormAddress(token: Token): { host: string; port: number; tcpOnly: boolean } {
  try {
    if (token.text.includes('://')) return endpointAddress(token);
    return { ...parseHostPort(token.text, 53), tcpOnly: false };
  } catch (err) {
    if (err instanceof AddressError) throw configError(NAME, token, err.message);
    throw err;
  }
}

function endpointAddress(token: Token): { host: string; port: number; tcpOnly: boolean } {
  const endpoint = parseEndpoint(token.text, 53);
  if (!SCHEMES.has(endpoint.scheme)) {
    throw configError(NAME, token, `forward speaks plain DNS (udp://, tcp://); for ${endpoint.scheme}:// use the ${endpoint.scheme === 'tls' ? 'dot' : endpoint.scheme === 'https' ? 'doh' : 'matching'} plugin`);
  }
  if (endpoint.path) throw configError(NAME, token, `unexpected path "${endpoint.path}"`);
  return { host: endpoint.host, port: endpoint.port, tcpOnly: endpoint.scheme === 'tcp' };
}

function parseServerLine(line: Directive): Pending {
  expectNoBlock(NAME, line);
  const args = expectArgs(NAME, line, 2, 3);
  const [name, address, flag] = args as [Token, Token, Token | undefined];
  if (flag && flag.text !== 'insecure') throw configError(NAME, flag, `unexpected "${flag.text}" (the only word allowed after the address is "insecure")`);
  if (name.text.includes('://')) throw configError(NAME, name, 'a server line is "server NAME ADDRESS": the name comes first');
  let parsed: { host: string; port: number; tcpOnly: boolean };
  try {
    parsed = address.text.startsWith('sdns:') ? stampAddress(address) : endpointAddress(address);
  } catch (err) {
    if (err instanceof AddressError) throw configError(NAME, address, err.message);
    throw err;
  }
  return { name: name.text, token: address, nameToken: name, ...parsed, insecure: flag !== undefined };
}

/** A plain DNS stamp (`sdns://AA…`): UDP with the TCP retry, like udp://. */
function stampAddress(token: Token): { host: string; port: number; tcpOnly: boolean } {
  const stamp = parseStampToken(NAME, token);
  if (stamp.protocol !== 'plain') throw configError(NAME, token, `a ${stamp.protocol} stamp: forward takes plain DNS stamps (sdns://AA…); use the ${stamp.protocol === 'dnscrypt' ? 'dnscrypt' : stamp.protocol === 'dot' ? 'dot' : stamp.protocol === 'doh' ? 'doh' : 'matching'} plugin`);
  return { ...splitAddress(stamp.address, 53), tcpOnly: false };
}
