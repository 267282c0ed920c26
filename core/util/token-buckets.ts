/**
 * Token buckets by key (a client's address or network): each holds at most `burst` tokens and
 * refills at `perSecond`. At most `maxKeys` buckets are kept; when that many exist, the oldest
 * goes first (a Map keeps insertion order, so finding it is O(1)). Used by `ratelimit` (queries
 * per client) and the DNSCrypt listener (key exchanges per client).
 */
import net from 'node:net';
import { unmapIpv4 } from '../net/address.js';

interface Bucket {
  tokens: number;
  /** Monotonic ms of the last refill. */
  at: number;
}

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly maxKeys: number,
  ) {}

  /** Takes a token from `key`'s bucket; false when it is empty. `now` is monotonic ms. */
  take(key: string, now: number): boolean {
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
      bucket = { tokens: this.burst, at: now };
      this.buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
      bucket.at = now;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  get size(): number {
    return this.buckets.size;
  }
}

export interface ClientPrefixes {
  ipv4Prefix: number;
  ipv6Prefix: number;
}

/** The address, or its network when a prefix is set: `192.0.2.0/24`, `2001:db8:1:200/56`. */
export function clientKey(address: string, options: ClientPrefixes): string {
  const plain = unmapIpv4(address);
  if (net.isIPv4(plain)) {
    if (options.ipv4Prefix === 32) return plain;
    const value = plain.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
    const masked = value - (value % 2 ** (32 - options.ipv4Prefix));
    return `${[24, 16, 8, 0].map((shift) => Math.floor(masked / 2 ** shift) % 256).join('.')}/${options.ipv4Prefix}`;
  }
  const socket = new net.SocketAddress({ address: plain, family: 'ipv6' });
  const groups = expandV6(socket.address);
  const keep = Math.ceil(options.ipv6Prefix / 16);
  const kept = groups.slice(0, keep);
  const rest = options.ipv6Prefix % 16;
  if (rest) kept[keep - 1] = kept[keep - 1]! & ((0xffff << (16 - rest)) & 0xffff);
  return `${kept.map((g) => g.toString(16)).join(':')}/${options.ipv6Prefix}`;
}

function expandV6(address: string): number[] {
  const [head = '', tail] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16));
}
