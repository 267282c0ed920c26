/**
 * `listen relay://IP:PORT { allow_ports PORT…  allow_private }`: an Anonymized DNSCrypt relay
 * (ANONYMIZED-DNSCRYPT.txt), over UDP and TCP. It passes on, over UDP, only packets that carry
 * the relay header and hold a DNSCrypt query or a certificate query, only to allowed ports and
 * addresses, never to itself or to another relay (no loops); and it sends back only the
 * server's answer to that very query, never larger than the query (no amplification). Anything
 * else is dropped without a reply, and counted.
 *
 * Packets go out on connected sockets kept per server (core/upstream/datagram.ts: rotated to a
 * fresh port, an answer waited for under the packet's nonce or ID), else on a socket of their
 * own. Each packet passed on holds a place until its answer or its timeout, so the places are
 * shared out: `max_inflight` in all, at most `max_inflight_per_client` for one client (an address, or an
 * IPv6 /56) and `max_inflight_per_server` for one server; and a server that has not answered
 * through this relay yet is waited for only briefly. A client flooding a silent host thus holds
 * a few places for a short time, never the relay.
 *
 * Before anything else, a packet passes the block's door: its acl (by default loopback and
 * private clients only, so a relay on a public address is never open by accident) and its
 * ratelimit.
 *
 * The relay learns who asks and which server, never the question: it cannot decrypt.
 */
import { performance } from 'node:perf_hooks';
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import os from 'node:os';
import type { Directive } from '../../core/config/ast.js';
import { expectArgs, flag, parseInteger } from '../../core/config/options.js';
import { HEADER_SIZE } from '../../core/dns/constants.js';
import { isResponse, nsCount, anCount, opcodeOf, qdCount, readId, readQuestion, sameQuestion } from '../../core/dns/wire.js';
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
import { clientKey } from '../../core/util/token-buckets.js';
import { UpstreamTimeoutError } from '../../core/errors.js';
import { DatagramSockets, type DatagramSocket } from '../../core/upstream/datagram.js';
import { answerKey, idKey, nonceKey } from '../../lib/dnscrypt/channel.js';

/** encrypted-dns-server's default list: ports DNSCrypt servers are commonly found on. */
export const DEFAULT_ALLOWED_PORTS = [443, 553, 853, 1443, 2053, 4343, 4434, 4443, 5353, 5443, 8443, 15353];
/** How long the relay waits for the answer of a server that has answered through it before… */
const RELAY_TIMEOUT_MS = 5000;
/** …and of one that has not (yet): a silent host holds a place only this long. */
const FIRST_CONTACT_TIMEOUT_MS = 1500;
/** Servers remembered as having answered; the one that first answered goes first. */
const MAX_KNOWN_SERVERS = 10_000;
/** Packets passed on at once (each holds a socket); more are dropped. */
const DEFAULT_MAX_RELAYED = 1000;
/**
 * Datagrams being checked beyond those passed on: the UDP listener's own bound sits this far
 * above max_inflight, so that a burst is turned away by the relay's rules, counted with their
 * reasons, rather than uncounted by the socket.
 */
const CHECKING_ROOM = 1024;
const DEFAULT_PER_CLIENT = 100;
const DEFAULT_PER_SERVER = 250;
/** A client, for its share of places: as ratelimit's defaults. */
const CLIENT_PREFIXES = { ipv4Prefix: 32, ipv6Prefix: 56 };
/**
 * The smallest DNSCrypt query (spec §3): client magic, client key, half nonce, tag, then a
 * padded query, whose length is a multiple of 64 bytes, so 64 at least.
 */
export const MIN_DNSCRYPT_QUERY = QUERY_OVERHEAD + 64;
const MAX_INNER = 8192;
/**
 * Servers with sockets of their own kept open (see `ServerSockets`); past that many, the one
 * used longest ago with nothing in flight is closed, and when every one is busy a packet gets a
 * socket of its own, as every packet did before.
 */
const MAX_SERVER_POOLS = 64;
/** Connected sockets per server (each replaced by a fresh port after its share, as upstreams'). */
const SOCKETS_PER_SERVER = 2;
/** A server's sockets are closed once it has had nothing in flight for this long. */
const POOL_IDLE_MS = 30_000;

export interface RelayListenerOptions {
  allowPorts: number[];
  allowPrivate: boolean;
  /** Packets passed on at once (max_inflight). */
  maxRelayed: number;
  /** Packets one client (address, IPv6 /56) may have in flight. */
  maxPerClient: number;
  /** Packets to one server (address and port) in flight. */
  maxPerServer: number;
  stream: StreamLimits;
  datagram: DatagramLimits;
}

/**
 * Places in flight counted per key (client or server), each under a cap. A key is held only
 * while it holds a place, so the table is never larger than the packets in flight, and leaving
 * is O(1). An object's dictionary, not a Map: a key comes and goes with nearly every packet, and
 * a Map's churned tables get promoted together with what they held (core/util/id-table.ts).
 */
class Shares {
  private readonly held: Record<string, number> = Object.create(null) as Record<string, number>;
  private keys = 0;

  take(key: string, cap: number): boolean {
    const count = this.held[key] ?? 0;
    if (count >= cap) return false;
    if (count === 0) this.keys++;
    this.held[key] = count + 1;
    return true;
  }

  give(key: string): void {
    const count = this.held[key]! - 1;
    if (count > 0) {
      this.held[key] = count;
      return;
    }
    delete this.held[key];
    this.keys--;
  }

  get size(): number {
    return this.keys;
  }
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
  /** The block's door (acl, ratelimit); a relay serves no zone, so no query reaches the chain. */
  private handler: QueryHandler | null = null;
  private inflight = 0;
  private readonly byClient = new Shares();
  private readonly byServer = new Shares();
  /** Servers that have answered through this relay (in the order they first did): they get the full wait. */
  private readonly knownServers = new Map<string, true>();
  /** Ends the exchanges in flight (their sockets), on stop. */
  private readonly pending = new Set<() => void>();
  private selfAddresses: Buffer[] = [];
  private unspecified = false;
  /** Connected sockets per server (`host port`). */
  private readonly pools = new Map<string, { sockets: DatagramSockets<string>; usedAt: number }>();
  private sweeper: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    readonly endpoint: Endpoint,
    private options: RelayListenerOptions,
    private readonly env: ListenerEnvironment,
  ) {}

  async start(handler: QueryHandler): Promise<void> {
    this.handler = handler;
    this.unspecified = this.endpoint.host === '0.0.0.0' || this.endpoint.host === '::';
    this.selfAddresses = this.unspecified ? localAddresses() : [ipToBytes(this.endpoint.host)];
    this.pair = await bindPair(this.endpoint, this.options.datagram, this.options.stream, this.env, {
      datagram: (packet, info) => this.relay(packet, info, 'udp'),
      stream: (packet, info) => this.relay(packet, info, 'tcp'),
    });
    this.boundAddress = this.pair.boundAddress('relay');
  }

  /** A relay serves no zone: only the handler's door is asked (`admitClient`), never the chain. */
  setHandler(handler: QueryHandler): void {
    this.handler = handler;
  }

  update(options: unknown): void {
    this.options = options as RelayListenerOptions;
    this.pair?.update(this.options.datagram, this.options.stream);
  }

  async stop(graceMs: number): Promise<void> {
    await this.pair?.stop(graceMs);
    this.pair = null;
    this.stopped = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const cancel of [...this.pending]) cancel();
    for (const pool of this.pools.values()) pool.sockets.close();
    this.pools.clear();
  }

  private async relay(packet: Buffer, info: QueryInfo, transport: Transport): Promise<Buffer | null> {
    if (this.handler?.admitClient?.({ client: info.client, transport: 'relay', datagram: transport === 'udp' }) === null) {
      this.stats.dropped['turned away at the door'] = (this.stats.dropped['turned away at the door'] ?? 0) + 1;
      return null;
    }
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
    /** What the answer will be known by (channel.ts's `answerKey` of it). */
    let key: string;
    if (question) {
      if (!isCertName(question.name)) return this.drop(transport, 'not a certificate query');
      key = idKey(readId(inner));
      accept = (answer) => answer.length >= 12 && isResponse(answer) && readId(answer) === readId(inner) && sameQuestion(inner, answer);
    } else {
      // Encrypted DNS only: the shape of a DNSCrypt query, and not a plain DNS query.
      if (inner.length < MIN_DNSCRYPT_QUERY || isPlainQuery(inner)) return this.drop(transport, 'not DNSCrypt');
      const nonceAt = QUERY_OVERHEAD - 16 - HALF_NONCE_SIZE;
      key = nonceKey(inner.subarray(nonceAt));
      accept = (answer) =>
        answer.length >= RESPONSE_OVERHEAD + 13 &&
        answer.compare(RESOLVER_MAGIC, 0, 8, 0, 8) === 0 &&
        answer.compare(inner, nonceAt, nonceAt + HALF_NONCE_SIZE, 8, 8 + HALF_NONCE_SIZE) === 0;
    }
    if (this.inflight >= this.options.maxRelayed) return this.drop(transport, 'busy');
    const client = clientKey(info.client.address, CLIENT_PREFIXES);
    if (!this.byClient.take(client, this.options.maxPerClient)) return this.drop(transport, 'client over its share');
    const server = `${relayed.host} ${relayed.port}`;
    if (!this.byServer.take(server, this.options.maxPerServer)) {
      this.byClient.give(client);
      return this.drop(transport, 'server over its share');
    }
    this.inflight++;
    try {
      const known = this.knownServers.has(server);
      const timeoutMs = known ? RELAY_TIMEOUT_MS : FIRST_CONTACT_TIMEOUT_MS;
      const { answer, reason } = (await this.forwardPooled(server, relayed, key, accept, timeoutMs)) ?? (await this.forward(relayed, accept, timeoutMs));
      if (!answer) return reason === 'stopped' ? null : this.drop(transport, reason);
      this.rememberAnswered(server);
      this.stats.forwarded++;
      if (relayEvent.hasSubscribers) relayEvent.publish({ event: 'forwarded', transport });
      return answer;
    } finally {
      this.inflight--;
      this.byClient.give(client);
      this.byServer.give(server);
    }
  }

  /**
   * Once per server, not per packet: taking a key out and putting it back at every answer kept
   * the Map's table churning (core/util/id-table.ts). The first to have answered leave first.
   */
  private rememberAnswered(server: string): void {
    if (this.knownServers.has(server)) return;
    if (this.knownServers.size >= MAX_KNOWN_SERVERS) this.knownServers.delete(this.knownServers.keys().next().value!);
    this.knownServers.set(server, true);
  }

  /** What the relay holds per client and server now (for tests: nothing once all is answered). */
  get held(): { inflight: number; clients: number; servers: number; knownServers: number } {
    return { inflight: this.inflight, clients: this.byClient.size, servers: this.byServer.size, knownServers: this.knownServers.size };
  }

  /**
   * Sends the inner packet on the server's connected sockets and waits for the answer, under the
   * key the answer will carry (the client nonce, or the certificate query's ID); null when it
   * cannot go that way (the key already in flight there, or every pool busy), and it then goes
   * on a socket of its own (`forward`). Opening, binding and closing a socket per packet cost
   * the relay about twice the CPU of the packet's whole hop, and a tenth of a millisecond.
   */
  private forwardPooled(server: string, target: RelayedPacket, key: string, accept: (answer: Buffer) => boolean, timeoutMs: number): Promise<{ answer: Buffer | null; reason: string }> | null {
    const inner = target.inner;
    const sockets = this.poolFor(server, target);
    if (!sockets) return null;
    // The sockets are tried in turn; one with the same key in flight cannot tell the answers apart.
    let socket: DatagramSocket<string> | null = null;
    try {
      for (let tries = 0; tries < SOCKETS_PER_SERVER && !socket; tries++) {
        const candidate = sockets.pick();
        if (!candidate.pending.has(key)) socket = candidate;
      }
    } catch {
      // No socket could be opened, or all are full: a socket of its own says why, as before.
    }
    if (!socket) return null;
    let oversized = false;
    const take = (answer: Buffer): Buffer | null => {
      // No amplification: the answer may not be larger than what the client sent.
      if (answer.length > inner.length) {
        oversized = true;
        return null;
      }
      return accept(answer) ? answer : null;
    };
    return socket.send(inner, key, take, timeoutMs).then(
      (answer) => ({ answer, reason: '' }),
      (err: unknown) => {
        if (this.stopped) return { answer: null, reason: 'stopped' };
        if (err instanceof UpstreamTimeoutError) return { answer: null, reason: oversized ? 'answer larger than the query' : 'no answer' };
        return { answer: null, reason: 'server unreachable' };
      },
    );
  }

  /** The server's sockets, opened when first needed; null when every pool is busy. */
  private poolFor(server: string, target: RelayedPacket): DatagramSockets<string> | null {
    const now = performance.now();
    const pool = this.pools.get(server);
    if (pool) {
      pool.usedAt = now;
      return pool.sockets;
    }
    if (this.pools.size >= MAX_SERVER_POOLS) {
      // The one used longest ago of those with nothing in flight.
      let idle: [string, { sockets: DatagramSockets<string>; usedAt: number }] | null = null;
      for (const entry of this.pools) if (entry[1].sockets.inflight === 0 && (!idle || entry[1].usedAt < idle[1].usedAt)) idle = entry;
      if (!idle) return null;
      idle[1].sockets.close();
      this.pools.delete(idle[0]);
    }
    // Leave from the relay's own address, so the server sees the relay and nothing else.
    const local = !this.unspecified && isIPv6(this.endpoint.host) === isIPv6(target.host) ? this.endpoint.host : undefined;
    // No resend: a relay passes what its clients send, and they resend themselves.
    const sockets = new DatagramSockets<string>(target.host, target.port, `relay to ${server}`, answerKey, { count: SOCKETS_PER_SERVER, ...(local ? { localAddress: local } : {}) });
    this.pools.set(server, { sockets, usedAt: now });
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.closeIdlePools(), POOL_IDLE_MS);
      this.sweeper.unref();
    }
    return sockets;
  }

  /** Closes the sockets of servers that have had nothing in flight for a while. */
  private closeIdlePools(): void {
    const now = performance.now();
    for (const [server, pool] of this.pools) {
      if (pool.sockets.inflight > 0 || now - pool.usedAt < POOL_IDLE_MS) continue;
      pool.sockets.close();
      this.pools.delete(server);
    }
  }

  /** Connected sockets open to servers (for tests). */
  get pooledServers(): number {
    return this.pools.size;
  }

  /** Sends the inner packet over UDP from a socket of its own and waits for the answer. */
  private forward(target: RelayedPacket, accept: (answer: Buffer) => boolean, timeoutMs: number): Promise<{ answer: Buffer | null; reason: string }> {
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
      const timer = setTimeout(() => finish(null, oversized ? 'answer larger than the query' : 'no answer'), timeoutMs);
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

/**
 * A plain DNS query (QR clear, standard opcode, one question and no answers), which a DNSCrypt
 * query almost never reads as: its first bytes are a client magic and a random public key.
 */
export function isPlainQuery(packet: Buffer): boolean {
  if (packet.length < HEADER_SIZE + 5 || isResponse(packet) || opcodeOf(packet) !== 0) return false;
  if (qdCount(packet) !== 1 || anCount(packet) !== 0 || nsCount(packet) !== 0) return false;
  try {
    readQuestion(packet);
    return true;
  } catch {
    return false;
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
  optionNames: ['allow_ports', 'allow_private', 'max_inflight_per_client', 'max_inflight_per_server', ...STREAM_OPTION_NAMES, ...DATAGRAM_OPTION_NAMES],
  parseOptions: (_endpoint, options) => parseRelayOptions(options),
  create: (endpoint, options, env) => new RelayListener(endpoint, options, env),
};

function parseRelayOptions(options: Directive[]): RelayListenerOptions {
  let allowPorts = DEFAULT_ALLOWED_PORTS;
  let allowPrivate = false;
  let maxInflight = DEFAULT_MAX_RELAYED;
  let maxPerClient: number | null = null;
  let maxPerServer: number | null = null;
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
      case 'max_inflight_per_client':
        maxPerClient = parseInteger(PLUGIN, expectArgs(PLUGIN, d, 1)[0]!, 1, 100_000);
        break;
      case 'max_inflight_per_server':
        maxPerServer = parseInteger(PLUGIN, expectArgs(PLUGIN, d, 1)[0]!, 1, 100_000);
        break;
      default:
        stream.push(d); // idle_timeout, max_connections, pipeline
    }
  }
  // A share larger than the whole would mean no share: the defaults shrink with max_inflight.
  return {
    allowPorts,
    allowPrivate,
    maxRelayed: maxInflight,
    maxPerClient: maxPerClient ?? Math.max(1, Math.min(DEFAULT_PER_CLIENT, Math.floor(maxInflight / 10))),
    maxPerServer: maxPerServer ?? Math.max(1, Math.min(DEFAULT_PER_SERVER, Math.floor(maxInflight / 4))),
    stream: parseStreamLimits(stream),
    datagram: { maxInflight: maxInflight + CHECKING_ROOM },
  };
}
