/**
 * DNS stamps (`sdns://…`): one string carrying everything needed to reach a resolver or a relay.
 * `sdns://` + base64url (no padding) of: a protocol byte, then per protocol
 *
 *   0x00 plain      props(8) LP(addr)
 *   0x01 DNSCrypt   props(8) LP(addr) LP(provider public key) LP(provider name)
 *   0x02 DoH        props(8) LP(addr) VLP(hashes) LP(host[:port]) LP(path) [VLP(bootstrap)]
 *   0x03 DoT        props(8) LP(addr) VLP(hashes) LP(host[:port]) [VLP(bootstrap)]
 *   0x04 DoQ        as DoT
 *   0x05 ODoH target props(8) LP(host[:port]) LP(path)
 *   0x81 DNSCrypt relay  LP(addr)
 *   0x85 ODoH relay as DoH
 *
 * props is a little-endian uint64 (bit 0 DNSSEC, bit 1 no logs, bit 2 no filter); LP is a length
 * byte then the bytes; VLP is a list of LPs whose length bytes have 0x80 set on all but the last.
 * Shared by the dot, doh, dnscrypt, anonymize and sources plugins; `StampError` names the field.
 */
import { Buffer } from 'node:buffer';
import net from 'node:net';

export const StampProtocol = {
  plain: 0x00,
  dnscrypt: 0x01,
  doh: 0x02,
  dot: 0x03,
  doq: 0x04,
  odohTarget: 0x05,
  dnscryptRelay: 0x81,
  odohRelay: 0x85,
} as const;

export type StampProtocolName = keyof typeof StampProtocol;

const DEFAULT_PORTS: Record<StampProtocolName, number> = {
  plain: 53,
  dnscrypt: 443,
  doh: 443,
  dot: 853,
  doq: 853,
  odohTarget: 443,
  dnscryptRelay: 443,
  odohRelay: 443,
};

export interface StampProps {
  dnssec: boolean;
  noLogs: boolean;
  noFilter: boolean;
}

interface Base {
  props: StampProps;
}

export interface PlainStamp extends Base {
  protocol: 'plain';
  /** `IP:PORT` or `[IPv6]:PORT`, default port filled in. */
  address: string;
}

export interface DnsCryptStamp extends Base {
  protocol: 'dnscrypt';
  address: string;
  /** The provider's Ed25519 public key (32 bytes). */
  providerKey: Buffer;
  /** e.g. `2.dnscrypt-cert.example.org` (no trailing dot). */
  providerName: string;
}

export interface HttpsLikeStamp extends Base {
  protocol: 'doh' | 'odohRelay';
  /** May be empty: the host is then reached through `bootstrap` or another resolver. */
  address: string;
  /** SHA-256 hashes of certificates (TBS) in the chain, each 32 bytes. */
  hashes: Buffer[];
  /** `host` or `host:port`. */
  host: string;
  path: string;
  bootstrap: string[];
}

export interface TlsLikeStamp extends Base {
  protocol: 'dot' | 'doq';
  address: string;
  hashes: Buffer[];
  host: string;
  bootstrap: string[];
}

export interface OdohTargetStamp extends Base {
  protocol: 'odohTarget';
  host: string;
  path: string;
}

export interface RelayStamp {
  protocol: 'dnscryptRelay';
  address: string;
}

export type Stamp = PlainStamp | DnsCryptStamp | HttpsLikeStamp | TlsLikeStamp | OdohTargetStamp | RelayStamp;

export class StampError extends Error {
  override readonly name = 'StampError';
}

const NO_PROPS: StampProps = { dnssec: false, noLogs: false, noFilter: false };

// ---- decoding -------------------------------------------------------------------------------

class Reader {
  pos = 0;
  constructor(private readonly bytes: Buffer) {}

  byte(field: string): number {
    if (this.pos >= this.bytes.length) throw new StampError(`stamp ends before its ${field}`);
    return this.bytes[this.pos++]!;
  }

  lp(field: string): Buffer {
    const length = this.byte(field);
    if (this.pos + length > this.bytes.length) throw new StampError(`stamp ends inside its ${field}`);
    const out = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  vlp(field: string): Buffer[] {
    const items: Buffer[] = [];
    for (;;) {
      const head = this.byte(field);
      const length = head & 0x7f;
      if (this.pos + length > this.bytes.length) throw new StampError(`stamp ends inside its ${field}`);
      const item = this.bytes.subarray(this.pos, this.pos + length);
      this.pos += length;
      if (length > 0 || head & 0x80) items.push(item);
      if (!(head & 0x80)) return items;
    }
  }

  props(): StampProps {
    if (this.pos + 8 > this.bytes.length) throw new StampError('stamp ends inside its props');
    const low = this.bytes.readUInt32LE(this.pos);
    this.pos += 8;
    return { dnssec: (low & 1) !== 0, noLogs: (low & 2) !== 0, noFilter: (low & 4) !== 0 };
  }

  get done(): boolean {
    return this.pos === this.bytes.length;
  }
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Decodes `sdns://…` (or `sdns:…`). Throws StampError naming the field at fault. */
export function parseStamp(text: string): Stamp {
  const m = /^sdns:(?:\/\/)?(.*)$/.exec(text.trim());
  if (!m) throw new StampError('a stamp starts with sdns://');
  const body = m[1]!;
  if (body.includes('/')) throw new StampError('a relay-and-server stamp pair is not one stamp; give the relay and the server separately');
  if (!BASE64URL.test(body)) throw new StampError('stamp is not base64url (characters outside A-Z a-z 0-9 - _, or = padding)');
  const bytes = Buffer.from(body, 'base64url');
  if (bytes.toString('base64url') !== body) throw new StampError('stamp is not canonical base64url');
  if (bytes.length === 0) throw new StampError('stamp is empty');
  const reader = new Reader(bytes);
  const id = reader.byte('protocol');
  let stamp: Stamp;
  switch (id) {
    case StampProtocol.plain:
      stamp = { protocol: 'plain', props: reader.props(), address: address(reader, 'plain', true) };
      break;
    case StampProtocol.dnscrypt: {
      const props = reader.props();
      const addr = address(reader, 'dnscrypt', true);
      const providerKey = Buffer.from(reader.lp('provider public key'));
      if (providerKey.length !== 32) throw new StampError(`provider public key is ${providerKey.length} bytes, not 32`);
      const providerName = text8(reader.lp('provider name'), 'provider name').replace(/\.$/, '');
      if (!providerName) throw new StampError('provider name is empty');
      stamp = { protocol: 'dnscrypt', props, address: addr, providerKey, providerName };
      break;
    }
    case StampProtocol.doh:
    case StampProtocol.odohRelay: {
      const protocol = id === StampProtocol.doh ? 'doh' : 'odohRelay';
      const fields = tlsServerFields(reader, protocol);
      const path = text8(reader.lp('path'), 'path');
      if (!path.startsWith('/')) throw new StampError(`path "${path}" does not start with /`);
      stamp = { protocol, ...fields, path, bootstrap: reader.done ? [] : bootstrap(reader) };
      break;
    }
    case StampProtocol.dot:
    case StampProtocol.doq: {
      const protocol = id === StampProtocol.dot ? 'dot' : 'doq';
      stamp = { protocol, ...tlsServerFields(reader, protocol), bootstrap: reader.done ? [] : bootstrap(reader) };
      break;
    }
    case StampProtocol.odohTarget: {
      const props = reader.props();
      const host = text8(reader.lp('host name'), 'host name');
      const path = text8(reader.lp('path'), 'path');
      if (!host) throw new StampError('host name is empty');
      stamp = { protocol: 'odohTarget', props, host, path };
      break;
    }
    case StampProtocol.dnscryptRelay:
      stamp = { protocol: 'dnscryptRelay', address: address(reader, 'dnscryptRelay', true) };
      break;
    default:
      throw new StampError(`unknown stamp protocol 0x${id.toString(16).padStart(2, '0')}`);
  }
  if (!reader.done) throw new StampError('garbage after the end of the stamp');
  return stamp;
}

/** What DoH, ODoH relay, DoT and DoQ stamps begin with: properties, address, certificate hashes, host. */
function tlsServerFields(reader: Reader, protocol: StampProtocolName): { props: StampProps; address: string; hashes: Buffer[]; host: string } {
  const props = reader.props();
  const addr = address(reader, protocol, false);
  const hashes = hashList(reader);
  const host = text8(reader.lp('host name'), 'host name');
  if (!host) throw new StampError('host name is empty');
  return { props, address: addr, hashes, host };
}

function text8(bytes: Buffer, field: string): string {
  for (const b of bytes) if (b < 0x20 || b > 0x7e) throw new StampError(`${field} has a non-printable byte`);
  return bytes.toString('latin1');
}

function hashList(reader: Reader): Buffer[] {
  const hashes = reader.vlp('certificate hashes').map((h) => Buffer.from(h));
  for (const h of hashes) if (h.length !== 32) throw new StampError(`certificate hash is ${h.length} bytes, not 32`);
  return hashes;
}

function bootstrap(reader: Reader): string[] {
  return reader.vlp('bootstrap addresses').map((b) => {
    const ip = text8(b, 'bootstrap address');
    if (net.isIP(ip.replace(/^\[|\]$/g, '')) === 0) throw new StampError(`bootstrap address "${ip}" is not an IP address`);
    return ip.replace(/^\[|\]$/g, '');
  });
}

/** An address field: `IP[:port]` or `[IPv6][:port]`, returned with the default port filled in. */
function address(reader: Reader, protocol: StampProtocolName, required: boolean): string {
  const text = text8(reader.lp('address'), 'address');
  if (text === '') {
    if (required) throw new StampError('address is empty');
    return '';
  }
  const { host, port } = splitAddress(text, DEFAULT_PORTS[protocol]);
  return joinAddress(host, port);
}

/** `1.2.3.4`, `1.2.3.4:53`, `[::1]`, `[::1]:53` → host and port. Throws StampError. */
export function splitAddress(text: string, defaultPort: number): { host: string; port: number } {
  const parts = hostAndPort(text);
  if (!parts) throw new StampError(`address "${text}" is not IP[:PORT] or [IPv6][:PORT]`);
  const { host, bracketed } = parts;
  const family = net.isIP(host);
  if (family === 0) throw new StampError(`address "${text}" is not an IP address`);
  if (family === 6 && !bracketed) throw new StampError(`IPv6 address "${text}" must be in brackets`);
  return { host, port: parts.port ?? defaultPort };
}

/** Labels of a host name: letters, digits, `_` (DNS names may hold it, RFC 2181 §11), hyphens inside. */
const HOST_NAME = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

/**
 * The host field of a DoH, DoT, DoQ or ODoH stamp: `name`, `name:port`, `IPv4[:port]` or
 * `[IPv6][:port]` → the host (a name lower-cased, without its final dot) and the port if given.
 * A name may hold `_` (whether a server may use it is for its certificate to say); brackets
 * hold an IPv6 address and nothing else; a port is 1–65535. Throws StampError.
 */
export function splitStampHost(text: string): { host: string; port: number | null } {
  const parts = hostAndPort(text);
  if (!parts) throw new StampError(`host "${text}" is not NAME[:PORT] or [IPv6][:PORT]`);
  if (parts.bracketed) {
    if (!net.isIPv6(parts.host)) throw new StampError(`host "${text}": only an IPv6 address goes in brackets`);
    return { host: parts.host.toLowerCase(), port: parts.port };
  }
  const host = parts.host.replace(/\.$/, '').toLowerCase();
  if (net.isIP(host) === 0 && !HOST_NAME.test(host)) throw new StampError(`host "${text}" is not a valid host name`);
  return { host, port: parts.port };
}

/** `host[:port]` or `[host][:port]` taken apart (the port checked), or null when it is neither. */
function hostAndPort(text: string): { host: string; bracketed: boolean; port: number | null } | null {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(text);
  const host = m?.[1] ?? m?.[2];
  if (!m || !host) return null;
  const port = m[3] ? Number(m[3]) : null;
  if (port !== null && (port < 1 || port > 65535)) throw new StampError(`port ${port} is out of range`);
  return { host, bracketed: m[1] !== undefined, port };
}

export function joinAddress(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

// ---- encoding -------------------------------------------------------------------------------

function lp(bytes: Buffer | string): Buffer {
  const b = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
  if (b.length > 255) throw new StampError('a stamp field is longer than 255 bytes');
  return Buffer.concat([Buffer.from([b.length]), b]);
}

function vlp(items: Buffer[]): Buffer {
  if (items.length === 0) return Buffer.from([0]);
  return Buffer.concat(
    items.map((item, i) => {
      if (item.length > 0x7f) throw new StampError('a stamp list item is longer than 127 bytes');
      return Buffer.concat([Buffer.from([item.length | (i < items.length - 1 ? 0x80 : 0)]), item]);
    }),
  );
}

function props(p: StampProps | undefined): Buffer {
  const out = Buffer.alloc(8);
  const v = p ?? NO_PROPS;
  out[0] = (v.dnssec ? 1 : 0) | (v.noLogs ? 2 : 0) | (v.noFilter ? 4 : 0);
  return out;
}

/** Writes an address without its protocol's default port (as other implementations do). */
function encodeAddress(text: string, protocol: StampProtocolName): Buffer {
  if (text === '') return lp('');
  const { host, port } = splitAddress(text, DEFAULT_PORTS[protocol]);
  const bare = net.isIPv6(host) ? `[${host}]` : host;
  return lp(port === DEFAULT_PORTS[protocol] ? bare : `${bare}:${port}`);
}

export function encodeStamp(stamp: Stamp): string {
  let body: Buffer;
  switch (stamp.protocol) {
    case 'plain':
      body = Buffer.concat([Buffer.from([StampProtocol.plain]), props(stamp.props), encodeAddress(stamp.address, 'plain')]);
      break;
    case 'dnscrypt':
      if (stamp.providerKey.length !== 32) throw new StampError('provider public key must be 32 bytes');
      body = Buffer.concat([Buffer.from([StampProtocol.dnscrypt]), props(stamp.props), encodeAddress(stamp.address, 'dnscrypt'), lp(stamp.providerKey), lp(stamp.providerName)]);
      break;
    case 'doh':
    case 'odohRelay':
      body = Buffer.concat([
        Buffer.from([StampProtocol[stamp.protocol]]),
        props(stamp.props),
        encodeAddress(stamp.address, stamp.protocol),
        vlp(stamp.hashes),
        lp(stamp.host),
        lp(stamp.path),
        ...(stamp.bootstrap.length ? [vlp(stamp.bootstrap.map((b) => Buffer.from(b, 'latin1')))] : []),
      ]);
      break;
    case 'dot':
    case 'doq':
      body = Buffer.concat([
        Buffer.from([StampProtocol[stamp.protocol]]),
        props(stamp.props),
        encodeAddress(stamp.address, stamp.protocol),
        vlp(stamp.hashes),
        lp(stamp.host),
        ...(stamp.bootstrap.length ? [vlp(stamp.bootstrap.map((b) => Buffer.from(b, 'latin1')))] : []),
      ]);
      break;
    case 'odohTarget':
      body = Buffer.concat([Buffer.from([StampProtocol.odohTarget]), props(stamp.props), lp(stamp.host), lp(stamp.path)]);
      break;
    case 'dnscryptRelay':
      body = Buffer.concat([Buffer.from([StampProtocol.dnscryptRelay]), encodeAddress(stamp.address, 'dnscryptRelay')]);
      break;
  }
  return `sdns://${body.toString('base64url')}`;
}

export function defaultPort(protocol: StampProtocolName): number {
  return DEFAULT_PORTS[protocol];
}
