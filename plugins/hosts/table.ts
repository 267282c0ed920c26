/** Hosts-format data (`IP NAME [ALIAS…]` per line, `#` comments) as lookup tables of wire rdata. */
import { Buffer } from 'node:buffer';
import { isIPv4, isIPv6 } from 'node:net';
import { expandIpv6 } from '../../core/config/zones.js';
import { canonicalName, encodeName } from '../../core/dns/wire.js';

export interface HostsEntry {
  address: string;
  names: string[];
  /** 1-based line in its source, for messages. */
  line: number;
}

export interface HostsParseResult {
  entries: HostsEntry[];
  /** Lines that were not `IP NAME…`, with why. */
  rejected: Array<{ line: number; reason: string }>;
}

export function parseHostsText(text: string): HostsParseResult {
  const entries: HostsEntry[] = [];
  const rejected: HostsParseResult['rejected'] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const [address, ...names] = line.split(/\s+/);
    const problem = checkEntry(address!, names);
    if (problem) rejected.push({ line: index + 1, reason: problem.reason });
    else entries.push({ address: address!, names, line: index + 1 });
  });
  return { entries, rejected };
}

/**
 * Why `IP NAME…` is not a usable entry, and the word at fault (0: the address, i + 1: names[i]),
 * or null when it is usable.
 */
export function checkEntry(address: string, names: string[]): { reason: string; word: number } | null {
  const plain = address.replace(/%.*$/, ''); // a zone index (fe80::1%eth0) says nothing to DNS
  if (!isIPv4(plain) && !isIPv6(plain)) return { reason: `"${address}" is not an IP address`, word: 0 };
  if (names.length === 0) return { reason: `no name after ${address}`, word: 0 };
  for (const [i, name] of names.entries()) {
    try {
      encodeName(name);
    } catch (err) {
      return { reason: `"${name}" is not a valid name: ${(err as Error).message}`, word: i + 1 };
    }
  }
  return null;
}

export class HostsTable {
  readonly v4 = new Map<string, Buffer[]>();
  readonly v6 = new Map<string, Buffer[]>();
  /** Reverse name (`10.2.0.192.in-addr.arpa.`) → wire-encoded target names. */
  readonly ptr = new Map<string, Buffer[]>();

  constructor(entries: Iterable<HostsEntry>, reverse = true) {
    for (const entry of entries) {
      const address = entry.address.replace(/%.*$/, '');
      const v4 = isIPv4(address);
      const rdata = v4 ? Buffer.from(address.split('.').map(Number)) : Buffer.from(expandIpv6(address), 'hex');
      const table = v4 ? this.v4 : this.v6;
      for (const name of entry.names.map(canonicalName)) {
        const list = table.get(name) ?? [];
        if (!list.some((b) => b.equals(rdata))) list.push(rdata);
        table.set(name, list);
      }
      if (reverse) {
        const reverseName = reverseNameOf(address);
        const targets = this.ptr.get(reverseName) ?? [];
        for (const name of entry.names) targets.push(encodeName(canonicalName(name)));
        this.ptr.set(reverseName, targets);
      }
    }
  }

  /** True when the name has any data here (so other types get NODATA, not a pass). */
  knows(name: string): boolean {
    return this.v4.has(name) || this.v6.has(name) || this.ptr.has(name);
  }

  get size(): number {
    return this.v4.size + this.v6.size;
  }
}

export function reverseNameOf(address: string): string {
  if (isIPv4(address)) return `${address.split('.').reverse().join('.')}.in-addr.arpa.`;
  return `${expandIpv6(address).split('').reverse().join('.')}.ip6.arpa.`;
}
