/**
 * `listen relay://IP:PORT { allow_ports PORT…  allow_private }`: an Anonymized DNSCrypt relay
 * (ANONYMIZED-DNSCRYPT.txt), over UDP and TCP. It passes on, over UDP, only packets that carry
 * the relay header and hold a DNSCrypt query or a certificate query, only to allowed ports and
 * addresses, never to itself or to another relay (no loops); and it sends back only the
 * server's answer to that very query, never larger than the query (no amplification). Anything
 * else is dropped without a reply, and counted.
 *
 * The relay learns who asks and which server, never the question: it cannot decrypt.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import os from 'node:os';
import type { Directive } from '../../core/config/ast.js';
import { expectArgs, flag, parseInteger } from '../../core/config/options.js';
import { isResponse, readId, sameQuestion } from '../../core/dns/wire.js';
import { relayEvent } from '../../core/events.js';
import type { Listener, ListenerEnvironment, QueryHandler, QueryInfo, TransportDefinition } from '../../core/listeners/listener.js';
import { DATAGRAM_OPTION_NAMES, parseStreamLimits, STREAM_OPTION_NAMES, type DatagramLimits } from '../../core/listeners/options.js';
import { bindPair, type ListenerPair } from '../../core/listeners/pair.js';
import type { StreamLimits } from '../../core/listeners/stream-sessions.js';
import type { Endpoint } from '../../core/net/address.js';
import { certQuestion, isCertName } from '../../lib/dnscrypt/cert-query.js';
import { HALF_NONCE_SIZE, QUERY_OVERHEAD, RESOLVER_MAGIC, RESPONSE_OVERHEAD } from '../../lib/dnscrypt/constants.js';
import { ipToBytes, readRelayHeader, startsWithAnonMagic, type RelayedPacket } from '../../lib/dnscrypt/relay-header.js';
import { destinationKind } from '../../core/net/destinations.js';
import { ipLiteralLookup } from '../../core/net/ip-lookup.js';

/** encrypted-dns-server's default list: ports DNSCrypt servers are commonly found on. */
export const DEFAULT_ALLOWED_PORTS = [443, 553, 853, 1443, 2053, 4343, 4434, 4443, 5353, 5443, 8443, 15353];
/** How long the relay waits for the server's answer. */
const RELAY_TIMEOUT_MS = 5000;
/** Packets passed on at once (each holds a socket); more are dropped. */
const DEFAULT_MAX_RELAYED = 1000;
/** The smallest DNSCrypt query: envelope, tag, a DNS header and one byte of padding. */
const MIN_DNSCRYPT_QUERY = QUERY_OVERHEAD + 12 + 1;
const MAX_INNER = 8192;

export interface RelayListenerOptions {
  allowPorts: number[];
  allowPrivate: boolean;
  stream: StreamLimits;
  datagram: DatagramLimits;
}

export interface RelayStats {
  forwarded: number;
  dropped: Record<string, number>;
}

type Transport = 'udp' | 'tcp';

export class RelayListener implements Listener {
  boundAddress = '';
  readonly stats: RelayStats = { forwarded: 0, dropped: {} };
  private pair: ListenerPair | null = null;
  private inflight = 0;
  /** Ends the exchanges in flight (their sockets), on stop. */
  private readonly pending = new Set<() => void>();
  private selfAddresses: Buffer[] = [];
  private unspecified = false;

  constructor(
    readonly endpoint: Endpoint,
    private options: RelayListenerOptions,
    private readonly env: ListenerEnvironment,
  ) {}

  async start(): Promise<void> {
    this.unspecified = this.endpoint.host === '0.0.0.0' || this.endpoint.host === '::';
    this.selfAddresses = this.unspecified ? localAddresses() : [ipToBytes(this.endpoint.host)];
    this.pair = await bindPair(this.endpoint, this.options.datagram, this.options.stream, this.env, {
      datagram: (packet, info) => this.relay(packet, info, 'udp'),
      stream: (packet, info) => this.relay(packet, info, 'tcp'),
    });
    this.boundAddress = this.pair.boundAddress('relay');
  }

  /** A relay serves no zone: the pipeline's handler is never called. */
  setHandler(_handler: QueryHandler): void {}

  update(options: unknown): void {
    this.options = options as RelayListenerOptions;
    this.pair?.update(this.options.datagram, this.options.stream);
  }

  async stop(graceMs: number): Promise<void> {
    await this.pair?.stop(graceMs);
    this.pair = null;
    for (const cancel of [...this.pending]) cancel();
  }

  private async relay(packet: Buffer, _info: QueryInfo, transport: Transport): Promise<Buffer | null> {
    const relayed = readRelayHeader(packet);
    if (!relayed) return this.drop(transport, 'no relay header');
    if (!this.options.allowPorts.includes(relayed.port)) return this.drop(transport, 'port not allowed');
    const kind = destinationKind(relayed.addressBytes);
    if (kind === 'forbidden' || (kind === 'private' && !this.options.allowPrivate)) return this.drop(transport, 'address not allowed');
    if (this.isSelf(relayed)) return this.drop(transport, 'to the relay itself');
    const inner = relayed.inner;
    if (startsWithAnonMagic(inner)) return this.drop(transport, 'relay loop');
    if (inner.length >= 7 && inner.subarray(0, 7).every((b) => b === 0)) return this.drop(transport, 'looks like QUIC');
    if (inner.length > MAX_INNER) return this.drop(transport, 'too large');
    const question = certQuestion(inner);
    let accept: (answer: Buffer) => boolean;
    if (question) {
      if (!isCertName(question.name)) return this.drop(transport, 'not a certificate query');
      accept = (answer) => answer.length >= 12 && isResponse(answer) && readId(answer) === readId(inner) && sameQuestion(inner, answer);
    } else {
      if (inner.length < MIN_DNSCRYPT_QUERY) return this.drop(transport, 'not DNSCrypt');
      const nonceAt = QUERY_OVERHEAD - 16 - HALF_NONCE_SIZE;
      accept = (answer) =>
        answer.length >= RESPONSE_OVERHEAD + 13 &&
        answer.compare(RESOLVER_MAGIC, 0, 8, 0, 8) === 0 &&
        answer.compare(inner, nonceAt, nonceAt + HALF_NONCE_SIZE, 8, 8 + HALF_NONCE_SIZE) === 0;
    }
    if (this.inflight >= this.options.datagram.maxInflight) return this.drop(transport, 'busy');
    this.inflight++;
    try {
      const { answer, reason } = await this.forward(relayed, accept);
      if (!answer) return reason === 'stopped' ? null : this.drop(transport, reason);
      this.stats.forwarded++;
      if (relayEvent.hasSubscribers) relayEvent.publish({ event: 'forwarded', transport });
      return answer;
    } finally {
      this.inflight--;
    }
  }

  /** Sends the inner packet over UDP from a socket of its own and waits for the answer. */
  private forward(target: RelayedPacket, accept: (answer: Buffer) => boolean): Promise<{ answer: Buffer | null; reason: string }> {
    const inner = target.inner;
    const v6 = isIPv6(target.host);
    return new Promise((resolve) => {
      const socket = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', lookup: ipLiteralLookup });
      let oversized = false;
      let settled = false;
      const finish = (answer: Buffer | null, reason: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.pending.delete(cancel);
        socket.close();
        resolve({ answer, reason });
      };
      const cancel = (): void => finish(null, 'stopped');
      this.pending.add(cancel);
      const timer = setTimeout(() => finish(null, oversized ? 'answer larger than the query' : 'no answer'), RELAY_TIMEOUT_MS);
      socket.on('error', () => finish(null, 'server unreachable'));
      socket.on('message', (answer) => {
        // No amplification: the answer may not be larger than what the client sent.
        if (answer.length > inner.length) {
          oversized = true;
          return;
        }
        if (accept(answer)) finish(answer, '');
      });
      const connect = (): void => {
        if (settled) return; // stopped while binding
        socket.connect(target.port, target.host, () => {
          if (!settled) socket.send(inner);
        });
      };
      // Leave from the relay's own address, so the server sees the relay and nothing else.
      if (!this.unspecified && isIPv6(this.endpoint.host) === v6) socket.bind(0, this.endpoint.host, connect);
      else connect();
    });
  }

  private isSelf(target: RelayedPacket): boolean {
    if (target.port !== this.pair?.port) return false;
    return this.selfAddresses.some((address) => address.equals(target.addressBytes));
  }

  private drop(transport: Transport, reason: string): null {
    this.stats.dropped[reason] = (this.stats.dropped[reason] ?? 0) + 1;
    if (relayEvent.hasSubscribers) relayEvent.publish({ event: 'dropped', reason, transport });
    return null;
  }
}

/** Every address of this host (for a relay bound to 0.0.0.0 or ::), loopback included. */
function localAddresses(): Buffer[] {
  const addresses = [ipToBytes('127.0.0.1'), ipToBytes('::1')];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const entry of list ?? []) addresses.push(ipToBytes(entry.address));
  }
  return addresses;
}

const PLUGIN = 'listen';

export const relayTransport: TransportDefinition<RelayListenerOptions> = {
  scheme: 'relay',
  defaultPort: 443,
  optionNames: ['allow_ports', 'allow_private', ...STREAM_OPTION_NAMES, ...DATAGRAM_OPTION_NAMES],
  parseOptions: (_endpoint, options) => parseRelayOptions(options),
  create: (endpoint, options, env) => new RelayListener(endpoint, options, env),
};

function parseRelayOptions(options: Directive[]): RelayListenerOptions {
  let allowPorts = DEFAULT_ALLOWED_PORTS;
  let allowPrivate = false;
  let maxInflight = DEFAULT_MAX_RELAYED;
  const stream: Directive[] = [];
  for (const d of options) {
    switch (d.name.text) {
      case 'allow_ports':
        allowPorts = expectArgs(PLUGIN, d, 1, Infinity).map((token) => parseInteger(PLUGIN, token, 1, 65535));
        break;
      case 'allow_private':
        allowPrivate = flag(PLUGIN, d);
        break;
      case 'max_inflight':
        maxInflight = parseInteger(PLUGIN, expectArgs(PLUGIN, d, 1)[0]!, 1, 100_000);
        break;
      default:
        stream.push(d); // idle_timeout, max_connections, pipeline
    }
  }
  return { allowPorts, allowPrivate, stream: parseStreamLimits(stream), datagram: { maxInflight } };
}
