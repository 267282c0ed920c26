/** Server block keys: `[dns://]ZONE[:PORT]`, with CIDR keys turned into reverse zones. */
import { isIP } from 'node:net';
import { canonicalName } from '../dns/wire.js';
import { ConfigError } from '../errors.js';
import type { Token } from './lexer.js';

export const DEFAULT_DNS_PORT = 53;

export interface ZoneKey {
  /** Canonical zone: lower-case with a trailing dot; "." for the root. */
  zone: string;
  /** The port written in the key, if any. */
  port: number | null;
  /** The key as written, for messages and metrics labels. */
  text: string;
}

export function parseZoneKey(token: Token): ZoneKey {
  let rest = token.text;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(rest);
  if (scheme) {
    if (scheme[1]!.toLowerCase() !== 'dns') {
      throw new ConfigError(
        token,
        `server block keys take the dns:// scheme only; serve ${scheme[1]} with "listen ${scheme[1]}://ADDRESS:PORT" inside the block`,
      );
    }
    rest = rest.slice(scheme[0].length);
  }
  let port: number | null = null;
  const portMatch = /:(\d+)$/.exec(rest);
  if (portMatch) {
    port = Number(portMatch[1]);
    if (port > 65535) throw new ConfigError(token, `port ${port} is out of range (0-65535)`);
    rest = rest.slice(0, -portMatch[0].length);
  } else if (/:[^/]*$/.test(rest) && !rest.includes('/')) {
    throw new ConfigError(token, `bad port in server block key "${token.text}"`);
  }
  if (rest === '') rest = '.';
  const zone = rest.includes('/') ? reverseZone(rest, token) : forwardZone(rest, token);
  return { zone, port, text: token.text };
}

function forwardZone(text: string, token: Token): string {
  const zone = canonicalName(text);
  if (zone === '.') return zone;
  const labels = zone.slice(0, -1).split('.');
  for (const label of labels) {
    if (label.length === 0) throw new ConfigError(token, `empty label in zone "${text}"`);
    if (label.length > 63) throw new ConfigError(token, `label longer than 63 characters in zone "${text}"`);
    if (!/^[a-z0-9_*-]+$/.test(label)) throw new ConfigError(token, `invalid character in zone "${text}"`);
  }
  if (zone.length > 254) throw new ConfigError(token, `zone name "${text}" is too long`);
  return zone;
}

/** `10.0.0.0/8` → `10.in-addr.arpa.`; `2001:db8::/32` → `8.b.d.0.1.0.0.2.ip6.arpa.` */
function reverseZone(text: string, token: Token): string {
  const [address, bitsText] = text.split('/') as [string, string];
  const bits = Number(bitsText);
  const family = isIP(address);
  if (!/^\d+$/.test(bitsText ?? '') || family === 0) throw new ConfigError(token, `"${text}" is neither a zone nor a CIDR`);
  if (family === 4) {
    if (bits > 32 || bits % 8 !== 0) throw new ConfigError(token, `reverse zone ${text}: prefix must be 8, 16, 24 or 32`);
    const octets = address.split('.').slice(0, bits / 8).reverse();
    return `${[...octets, 'in-addr', 'arpa'].join('.')}.`;
  }
  if (bits > 128 || bits % 4 !== 0) throw new ConfigError(token, `reverse zone ${text}: prefix must be a multiple of 4`);
  const nibbles = expandIpv6(address).slice(0, bits / 4).split('').reverse();
  return `${[...nibbles, 'ip6', 'arpa'].join('.')}.`;
}

/** The 32 hex digits of an IPv6 address. */
export function expandIpv6(address: string): string {
  let text = address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const o = v4[1]!.split('.').map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array(tail !== undefined ? missing : 0).fill('0'), ...tailGroups];
  return groups.map((g) => g.padStart(4, '0')).join('').toLowerCase();
}
