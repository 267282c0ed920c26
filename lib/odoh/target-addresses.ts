/**
 * Addresses of relay targets that come from a list (`targets_from`): target stamps carry a host
 * name, no address, and the relay never asks the system resolver. It asks its own server block
 * instead (the chain its listener serves: cache, upstreams — encrypted ones, as the operator
 * configured), keeps the answer for its TTL (1 min to 1 h), and passes on only addresses a
 * relay may send to: a name that resolves to loopback or a private range is refused unless
 * `allow_private` (so a list, or whoever answers for the name, cannot point the relay inward).
 */
import { performance } from 'node:perf_hooks';
import { randomInt } from 'node:crypto';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import type { QueryHandler } from '../../core/listeners/listener.js';
import { destinationKind } from '../../core/net/destinations.js';
import { ipToBytes } from '../dnscrypt/relay-header.js';

const MIN_TTL_MS = 60_000;
const MAX_TTL_MS = 3_600_000;
/** Names kept at once: a list holds a few dozen targets; past this the oldest is forgotten. */
const MAX_NAMES = 1024;

export class TargetAddressBook {
  private readonly known = new Map<string, { addresses: string[]; until: number }>();
  private readonly pending = new Map<string, Promise<string[]>>();

  constructor(
    private readonly ask: () => QueryHandler,
    private readonly allowPrivate: boolean,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The usable addresses of `host`; rejects with an Error saying why there are none. */
  addresses(host: string): Promise<string[]> {
    if (net.isIP(host)) return this.usable([host]).length ? Promise.resolve([host]) : Promise.reject(new Error(`${host} is not an address a relay may send to`));
    const known = this.known.get(host);
    if (known && known.until > this.now()) return Promise.resolve(known.addresses);
    let lookup = this.pending.get(host);
    if (!lookup) {
      lookup = this.lookUp(host).finally(() => this.pending.delete(host));
      this.pending.set(host, lookup);
    }
    return lookup;
  }

  private async lookUp(host: string): Promise<string[]> {
    const found: string[] = [];
    let ttl = MAX_TTL_MS;
    for (const type of [QType.A, QType.AAAA]) {
      const answer = await this.ask()(buildQuery(host, type, { id: randomInt(0x10000) }), {
        client: { address: '127.0.0.1', port: 0, family: 'IPv4' },
        transport: 'internal',
        datagram: false,
      });
      if (!answer) continue;
      for (const record of dnsPacket.decode(answer).answers ?? []) {
        if ((record.type === 'A' || record.type === 'AAAA') && typeof record.data === 'string') {
          found.push(record.data);
          ttl = Math.min(ttl, (record.ttl ?? 0) * 1000);
        }
      }
    }
    const addresses = this.usable(found);
    if (addresses.length === 0) throw new Error(found.length ? `${host} resolves only to addresses a relay may not send to` : `no address found for ${host}`);
    if (this.known.size >= MAX_NAMES) this.known.delete(this.known.keys().next().value!);
    this.known.set(host, { addresses, until: this.now() + Math.min(MAX_TTL_MS, Math.max(MIN_TTL_MS, ttl)) });
    return addresses;
  }

  private usable(addresses: string[]): string[] {
    return addresses.filter((a) => {
      const kind = destinationKind(ipToBytes(a));
      return kind === 'global' || (kind === 'private' && this.allowPrivate);
    });
  }
}
