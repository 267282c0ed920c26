/**
 * The Anonymized DNSCrypt relay header (ANONYMIZED-DNSCRYPT.txt §2): anon-magic (8 × 0xff,
 * 0x00 0x00), the server's address as 16 bytes (IPv4 as IPv4-mapped IPv6), its port; then the
 * DNSCrypt query (or a certificate query) unchanged.
 */
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { ANON_MAGIC, RELAY_HEADER_SIZE } from './constants.js';

/** An IP literal as 16 bytes; IPv4 becomes ::ffff:a.b.c.d. Throws for anything else. */
export function ipToBytes(ip: string): Buffer {
  const out = Buffer.alloc(16);
  if (net.isIPv4(ip)) {
    out[10] = 0xff;
    out[11] = 0xff;
    ip.split('.').forEach((octet, i) => (out[12 + i] = Number(octet)));
    return out;
  }
  if (!net.isIPv6(ip)) throw new Error(`"${ip}" is not an IP address`);
  let text = ip.replace(/%.*$/, '');
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const o = v4[1]!.split('.').map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const front = head ? head.split(':') : [];
  const back = tail ? tail.split(':') : [];
  const groups = tail === undefined ? front : [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back];
  groups.forEach((group, i) => out.writeUInt16BE(parseInt(group, 16), i * 2));
  return out;
}

/** 16 address bytes as an IP literal: IPv4-mapped addresses as dotted IPv4. */
export function bytesToIp(bytes: Buffer): string {
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return groups.join(':');
}

/** The 28-byte header that asks a relay to pass a packet on to `host:port`. */
export function relayHeader(host: string, port: number): Buffer {
  const out = Buffer.alloc(RELAY_HEADER_SIZE);
  ANON_MAGIC.copy(out, 0);
  ipToBytes(host).copy(out, ANON_MAGIC.length);
  out.writeUInt16BE(port, ANON_MAGIC.length + 16);
  return out;
}

export function startsWithAnonMagic(packet: Buffer): boolean {
  return packet.length >= ANON_MAGIC.length && packet.compare(ANON_MAGIC, 0, ANON_MAGIC.length, 0, ANON_MAGIC.length) === 0;
}

export interface RelayedPacket {
  /** The target's address bytes (16) and its IP literal. */
  addressBytes: Buffer;
  host: string;
  port: number;
  /** What the relay passes on, unchanged. */
  inner: Buffer;
}

/** The header's fields, or null when the packet does not start with a relay header. */
export function readRelayHeader(packet: Buffer): RelayedPacket | null {
  if (packet.length < RELAY_HEADER_SIZE || !startsWithAnonMagic(packet)) return null;
  const addressBytes = packet.subarray(ANON_MAGIC.length, ANON_MAGIC.length + 16);
  return {
    addressBytes,
    host: bytesToIp(addressBytes),
    port: packet.readUInt16BE(ANON_MAGIC.length + 16),
    inner: packet.subarray(RELAY_HEADER_SIZE),
  };
}
