/**
 * Address ranges a Corefile names (`10.0.0.0/8`, `2001:db8::/32`, or one address), and the sets
 * they make: who an access rule covers (acl), whose X-Forwarded-For a listener believes
 * (`trusted_proxies`). One reading of the text and one way to match, for every plugin.
 */
import net from 'node:net';
import type { Token } from '../config/ast.js';
import { configError } from '../config/options.js';
import { unmapIpv4 } from './address.js';

/** `IP/BITS` or a single IP, returned canonical as `IP/BITS`; null when it is neither. */
export function parseCidr(text: string): string | null {
  const [address = '', bits, extra] = text.split('/');
  const family = net.isIP(address);
  const max = family === 6 ? 128 : 32;
  if (family === 0 || extra !== undefined || (bits !== undefined && (!/^\d+$/.test(bits) || Number(bits) > max))) return null;
  return `${address}/${bits ?? max}`;
}

/** A range written in a Corefile, canonical; a located error when it is not one. */
export function parseCidrToken(plugin: string, token: Token, examples = '10.0.0.0/8, 2001:db8::/32'): string {
  const cidr = parseCidr(token.text);
  if (cidr === null) throw configError(plugin, token, `"${token.text}" is not an address or a CIDR range (examples: ${examples})`);
  return cidr;
}

/** A set of ranges (canonical, from parseCidr) that says whether it holds an address. */
export class AddressRanges {
  private readonly list = new net.BlockList();

  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const [address, bits] = cidr.split('/') as [string, string];
      this.list.addSubnet(address, Number(bits), net.isIPv6(address) ? 'ipv6' : 'ipv4');
    }
  }

  /** An IPv4 address seen as IPv4-mapped IPv6 (`::ffff:192.0.2.1`) is matched as IPv4. */
  has(address: string): boolean {
    const plain = unmapIpv4(address);
    return this.list.check(plain, net.isIPv6(plain) ? 'ipv6' : 'ipv4');
  }
}
