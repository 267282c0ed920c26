/**
 * Addresses in the configuration: `scheme://IP:PORT[/path]` with IPv6 in brackets, and the
 * checks that decide whether plaintext DNS to an address would leave the machine's trust zone.
 */
import net from 'node:net';

export interface Endpoint {
  scheme: string;
  /** IP literal without brackets. */
  host: string;
  port: number;
  /** Path for http(s) endpoints, '' otherwise. */
  path: string;
  /** Canonical text: `udp://[::1]:53`. */
  text: string;
}

const ENDPOINT = /^([a-z][a-z0-9+.-]*):\/\/(\[[^\]]*\]|[^:/[\]]*)(?::(\d*))?(\/.*)?$/i;

export class AddressError extends Error {}

/**
 * Parses `scheme://host[:port][/path]`. The host must be an IP literal unless `allowHostname`;
 * `defaultPort` fills a missing port. Throws AddressError with a message for people.
 */
export function parseEndpoint(text: string, defaultPort: number | null, options: { allowHostname?: boolean } = {}): Endpoint {
  const m = ENDPOINT.exec(text);
  if (!m) {
    // An IPv6 address without brackets does not match at all (its colons look like a port): say so.
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
    const hostPart = scheme ? text.slice(scheme[0].length).replace(/\/.*$/, '') : '';
    const bare = net.isIP(hostPart) === 6 ? hostPart : (/^(.*):\d+$/.exec(hostPart)?.[1] ?? '');
    if (scheme && net.isIP(bare) === 6) throw new AddressError(`IPv6 addresses go in brackets: ${scheme[1]!.toLowerCase()}://[${bare}]:PORT`);
    throw new AddressError(`"${text}" is not an address of the form scheme://IP:PORT`);
  }
  const scheme = m[1]!.toLowerCase();
  let host = m[2]!;
  const bracketed = host.startsWith('[');
  if (bracketed) host = host.slice(1, -1);
  if (host === '') throw new AddressError(`"${text}" has no host`);
  const family = net.isIP(host);
  if (bracketed && family !== 6) throw new AddressError(`"${host}" in brackets is not an IPv6 address`);
  if (!bracketed && family === 6) throw new AddressError(`IPv6 addresses go in brackets: ${scheme}://[${host}]:PORT`);
  if (family === 0) {
    if (!options.allowHostname) throw new AddressError(`"${host}" is not an IP address (Veil never looks up upstream or listener names)`);
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$/i.test(host)) throw new AddressError(`"${host}" is not a valid host name`);
  }
  let port: number;
  if (m[3] === undefined || m[3] === '') {
    if (m[3] === '' || defaultPort === null) throw new AddressError(`"${text}" needs a port`);
    port = defaultPort;
  } else {
    port = Number(m[3]);
    if (port > 65535) throw new AddressError(`port ${port} is out of range (0-65535)`);
  }
  const path = m[4] ?? '';
  return { scheme, host, port, path, text: `${scheme}://${family === 6 ? `[${host}]` : host}:${port}${path}` };
}

/** `IP`, `IP:PORT` or `[IPv6]:PORT`, as the short forms of CoreDNS's forward take them. */
export function parseHostPort(text: string, defaultPort: number): { host: string; port: number } {
  if (net.isIP(text)) return { host: text, port: defaultPort };
  const endpoint = parseEndpoint(`x://${text}`, defaultPort);
  return { host: endpoint.host, port: endpoint.port };
}

function ipv4ToInt(address: string): number {
  return address.split('.').reduce((acc, octet) => (acc << 8) + Number(octet), 0) >>> 0;
}

function inV4(address: string, base: string, bits: number): boolean {
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (ipv4ToInt(address) & mask) === (ipv4ToInt(base) & mask);
}

const V4_LOOPBACK: Array<[string, number]> = [['127.0.0.0', 8]];
/** RFC 1918: networks their operator runs. */
const V4_PRIVATE: Array<[string, number]> = [
  ['10.0.0.0', 8],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
];
const V4_LINK_LOCAL: Array<[string, number]> = [['169.254.0.0', 16]];

/** The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`), if it is one. */
export function unmapIpv4(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

export function isLoopback(address: string): boolean {
  const plain = unmapIpv4(address);
  if (net.isIPv4(plain)) return V4_LOOPBACK.some(([b, n]) => inV4(plain, b, n));
  return plain === '::1';
}

/**
 * Loopback, RFC 1918 and IPv6 unique local addresses (fc00::/7): where plaintext DNS may go
 * without `insecure`, because the network is the operator's own. Not the shared address space
 * 100.64/10 (RFC 6598: the carrier's NAT network, shared with its other customers), and not
 * link-local addresses (whoever else is on the link, a guest or a cloud provider's metadata
 * service, answers there; no configuration says which).
 */
export function isPrivateAddress(address: string): boolean {
  const plain = unmapIpv4(address);
  if (net.isIPv4(plain)) return isLoopback(plain) || V4_PRIVATE.some(([b, n]) => inV4(plain, b, n));
  const lower = plain.toLowerCase();
  return lower === '::1' || /^f[cd][0-9a-f]{2}:/.test(lower);
}

/** 169.254/16 and fe80::/10: addresses that reach no farther than the link. */
export function isLinkLocal(address: string): boolean {
  const plain = unmapIpv4(address);
  if (net.isIPv4(plain)) return V4_LINK_LOCAL.some(([b, n]) => inV4(plain, b, n));
  return /^fe[89ab][0-9a-f]:/.test(plain.toLowerCase());
}

/** 100.64.0.0/10, the shared address space of carrier-grade NAT (RFC 6598). */
export function isCarrierNat(address: string): boolean {
  const plain = unmapIpv4(address);
  return net.isIPv4(plain) && inV4(plain, '100.64.0.0', 10);
}
