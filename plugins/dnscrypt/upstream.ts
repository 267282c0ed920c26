/**
 * A DNSCrypt server as an upstream. Its certificate is fetched at start (in the background: an
 * unreachable server never stops Veil from starting), checked against the provider key from the
 * stamp, and refreshed on a schedule and before it expires; a failed refresh keeps the
 * certificate in hand while it is valid. Each refresh asks the block's router for the route
 * (direct, or a relay picked by `anonymize`) and keeps it until the next one.
 *
 * Queries go over UDP, padded, and again over TCP when the answer comes back truncated (the
 * base, core/upstream/base.ts, does the retry and gives each attempt its time), all within the
 * query's deadline. Without a valid certificate a query fails: never plaintext.
 */
import { Buffer } from 'node:buffer';
import type { Clock } from '../../core/clock.js';
import type { RequestContext } from '../../core/context.js';
import { isResponse, isTruncated, readId, sameQuestion } from '../../core/dns/wire.js';
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../../core/errors.js';
import { dnscryptCertificate } from '../../core/events.js';
import type { Logger } from '../../core/logger.js';
import { BaseUpstream } from '../../core/upstream/base.js';
import { formatHostPort } from '../../core/upstream/connect.js';
import type { Outcome } from '../../core/upstream/outcome.js';
import { randomId } from '../../core/upstream/query-id.js';
import { buildCertQuery, certificatesFromAnswer, CERT_QUERY_SIZE } from '../../lib/dnscrypt/cert-query.js';
import { selectCertificate, type Certificate } from '../../lib/dnscrypt/certificate.js';
import { DnscryptChannel, idKey, nonceKey } from '../../lib/dnscrypt/channel.js';
import { HALF_NONCE_SIZE, QUERY_OVERHEAD, RELAY_HEADER_SIZE } from '../../lib/dnscrypt/constants.js';
import { sharedKey, tcpQueryLength, udpQueryLength, x25519KeyPair, type KeyPair } from '../../lib/dnscrypt/crypto.js';
import { randomByte, randomInto } from '../../core/util/random-pool.js';
import { probeFragments } from '../../lib/dnscrypt/fragment-probe.js';
import { decryptResponse, encryptQuery, type ClientKeys } from '../../lib/dnscrypt/packet.js';
import { relayHeader } from '../../lib/dnscrypt/relay-header.js';
import type { DnscryptRoute, DnscryptRouter, DnscryptServerInfo } from '../../lib/dnscrypt/route.js';

export interface DnscryptServerConfig extends DnscryptServerInfo {
  providerKey: Buffer;
}

export interface DnscryptClientConfig {
  /** Longest time a certificate is used before it is fetched again. */
  certRefreshMs: number;
  /** A fresh client key pair for every query. */
  ephemeralKeys: boolean;
  tcpOnly: boolean;
}

export interface UpstreamEnvironment {
  logger: Logger;
  clock: Clock;
  /** The block's router, looked up when a certificate is fetched. */
  router: () => DnscryptRouter;
}

interface Session {
  cert: Certificate;
  /** Keys for the long-term client key pair (not used with ephemeral_keys). */
  keys: ClientKeys;
  route: DnscryptRoute;
  channel: DnscryptChannel;
  /** Relayed, and the server drops fragmented UDP: relayed queries stay unfragmented. */
  fragmentsBlocked: boolean;
}

interface CertificateAnswer {
  certs: Buffer[];
  truncated: boolean;
}

/** UDP query plaintext starts padded to this (dnscrypt-proxy's 512-byte estimate)… */
const INITIAL_UDP_LENGTH = 512;
/** …grows by 64 after each truncated answer, up to what fits a 1232-byte datagram. */
const MAX_UDP_LENGTH = Math.floor((1232 - QUERY_OVERHEAD) / 64) * 64;
/**
 * Through a relay, TCP queries are padded large: the relay's hop to the server is UDP, and the
 * server does not answer with more than the query's size.
 */
const RELAYED_TCP_LENGTH = 3968;
/** One UDP attempt at most this long (the query's deadline may cut it shorter). */
const UDP_ATTEMPT_MS = 2000;
const CERT_ATTEMPT_MS = 2000;
/** Retries after a failed certificate fetch back off from 1 s to this. */
const MAX_RETRY_MS = 60_000;

export class DnscryptUpstream extends BaseUpstream {
  usable = true;
  private clientKeys: KeyPair | null = null;
  private session: Session | null = null;
  private refreshing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  private lastError = 'no certificate fetched yet';
  private stopped = false;
  private udpLength = INITIAL_UDP_LENGTH;
  private readonly channels = new Map<string, DnscryptChannel>();

  constructor(
    private readonly server: DnscryptServerConfig,
    private readonly config: DnscryptClientConfig,
    private readonly env: UpstreamEnvironment,
  ) {
    super({ name: server.name, protocol: 'dnscrypt', address: formatHostPort(server.host, server.port) }, { datagramTimeoutMs: UDP_ATTEMPT_MS });
  }

  start(): void {
    this.clientKeys = x25519KeyPair();
    void this.refresh();
  }

  protected release(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
  }

  /** The certificate in use (for tests and diagnostics). */
  get certificate(): Certificate | null {
    return this.session?.cert ?? null;
  }

  /** The relay of the current route, or null when direct. */
  get relay(): string | null {
    return this.session?.route.relay?.name ?? null;
  }

  /** Waits for a certificate first (at start, or after one expired), within the query's time. */
  override exchange(query: Buffer, ctx: RequestContext): Promise<Buffer> {
    // With a valid certificate in hand (nearly always), no await: a turn of microtasks and two
    // promises less per query.
    const session = this.validSession();
    if (session) return this.exchangeWith(session, query, ctx);
    return this.sessionFor(ctx).then((later) => this.exchangeWith(later, query, ctx));
  }

  private exchangeWith(session: Session, query: Buffer, ctx: RequestContext): Promise<Buffer> {
    if (session.route.relay) ctx.meta.relay = session.route.relay.name;
    return super.exchange(query, ctx);
  }

  protected override sendDatagram(query: Buffer, timeoutMs: number, _ctx: RequestContext, outcome: Outcome): boolean {
    if (this.config.tcpOnly || query.length >= MAX_UDP_LENGTH) return false;
    this.overUdp(this.currentSession(), query, timeoutMs, outcome);
    return true;
  }

  protected send(query: Buffer, timeoutMs: number): Promise<Buffer> {
    return this.overTcp(this.currentSession(), query, timeoutMs);
  }

  private overUdp(session: Session, query: Buffer, timeoutMs: number, outcome: Outcome): void {
    const keys = this.keysFor(session);
    const nonce = Buffer.allocUnsafe(HALF_NONCE_SIZE);
    randomInto(nonce, 0, HALF_NONCE_SIZE);
    // Room for the relay header in front, so the channel need not copy the packet to add it.
    const headroom = session.channel.headerLength;
    const packet = encryptQuery(keys, nonce, query, udpQueryLength(query.length, this.udpLength), headroom);
    const accept = (answer: Buffer): Buffer | null => {
      const inside = acceptAnswer(keys, nonce, query, answer);
      // Spec §4: a truncated answer means the padded query was too small for it.
      if (inside && isTruncated(inside)) this.udpLength = Math.min(this.udpLength + 64, MAX_UDP_LENGTH);
      return inside;
    };
    session.channel.udpTo(packet, nonceKey(nonce), accept, timeoutMs, outcome, headroom > 0);
  }

  private overTcp(session: Session, query: Buffer, timeoutMs: number): Promise<Buffer> {
    const keys = this.keysFor(session);
    const nonce = Buffer.allocUnsafe(HALF_NONCE_SIZE);
    randomInto(nonce, 0, HALF_NONCE_SIZE);
    // A server that drops fragments gets, through the relay, no more than fits one datagram:
    // larger answers come back truncated rather than never.
    const relayedLength = session.fragmentsBlocked ? MAX_UDP_LENGTH : RELAYED_TCP_LENGTH;
    const length = session.route.relay && query.length < relayedLength ? relayedLength : tcpQueryLength(query.length, randomByte());
    const packet = encryptQuery(keys, nonce, query, length);
    return session.channel.tcp(packet, (answer) => acceptAnswer(keys, nonce, query, answer), timeoutMs);
  }

  private keysFor(session: Session): ClientKeys {
    if (!this.config.ephemeralKeys) return session.keys;
    const pair = x25519KeyPair();
    const shared = sharedKey(session.cert.esVersion, pair.secretKey, session.cert.resolverPublicKey);
    // The resolver key was checked when the certificate was taken; this cannot fail.
    if (!shared) throw new UpstreamUnavailableError(`${this.name}: the resolver key is unusable`);
    return { ...session.keys, clientPublicKey: pair.publicKey, sharedKey: shared };
  }

  private validSession(): Session | null {
    const session = this.session;
    if (!session) return null;
    if (this.env.clock.now() / 1000 <= session.cert.tsEnd) return session;
    this.session = null;
    this.lastError = `certificate serial ${session.cert.serial} expired`;
    void this.refresh();
    return null;
  }

  private async sessionFor(ctx: RequestContext): Promise<Session> {
    if (!this.validSession() && this.refreshing) {
      // Start-up, or a refresh after expiry: wait for it, within the query's time.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.refreshing, new Promise((resolve) => (timer = setTimeout(resolve, ctx.remaining())))]);
      clearTimeout(timer);
    }
    return this.currentSession();
  }

  /** The session to send with now; without a valid certificate the query fails (never plaintext). */
  private currentSession(): Session {
    const session = this.validSession();
    if (!session) throw new UpstreamUnavailableError(`${this.name}: no valid DNSCrypt certificate (${this.lastError})`);
    return session;
  }

  // ---- certificates -------------------------------------------------------------------------

  /** Fetches the certificate now (one fetch at a time). */
  refresh(): Promise<void> {
    const before = this.session;
    this.refreshing ??= this.fetchCertificate().finally(() => {
      this.refreshing = null;
      this.closeUnusedChannels(before);
    });
    return this.refreshing;
  }

  /**
   * Closes the channels (and their sockets) of relays no session uses: the one in use and the
   * one before it (queries may still be waiting on it) stay. Without this, every relay a route
   * ever picked (a new pick at each refresh and each retry, among all the relays of the lists)
   * would keep its sockets for the life of the process.
   */
  private closeUnusedChannels(previous: Session | null): void {
    const used = new Set([this.session?.channel, previous?.channel]);
    for (const [key, channel] of this.channels) {
      if (used.has(channel)) continue;
      channel.close();
      this.channels.delete(key);
    }
  }

  /** Channels open (for tests). */
  get channelCount(): number {
    return this.channels.size;
  }

  private async fetchCertificate(): Promise<void> {
    if (this.stopped || !this.clientKeys) return;
    let route: DnscryptRoute;
    try {
      route = this.env.router().route(this.server);
    } catch (err) {
      // A routed server without a relay stays unreachable: never the direct path instead.
      this.usable = false;
      this.failures++;
      this.lastError = (err as Error).message;
      this.warnOnce(`${this.name}: ${this.lastError}; tried again every ${Math.round(MAX_RETRY_MS / 1000)}s at most`);
      this.schedule(this.retryMs());
      return;
    }
    const channel = this.channelFor(route);
    const via = route.relay ? ` via relay ${route.relay.name}` : '';
    try {
      const { certs, fragmentsBlocked: probed } = await this.certificatesVia(channel, route.relay !== null);
      const fragmentsBlocked = route.relay !== null && (probed || route.fragmentsBlocked === true);
      if (fragmentsBlocked && route.skipWhenUnreachable) {
        this.usable = false;
        this.session = null;
        this.lastError = `drops fragmented UDP${probed ? ' (probed)' : ' (fragments_blocked)'}, so it is incompatible with relays`;
        this.env.logger.warn(`${this.name}: ${this.lastError}; left out until the next refresh (skip_incompatible)`);
        this.schedule(this.config.certRefreshMs);
        return;
      }
      const { chosen, refused } = selectCertificate(certs, this.server.providerKey, Math.floor(this.env.clock.now() / 1000));
      if (!chosen) throw new Error(`no usable certificate among ${certs.length}${refused.length ? `: ${refused.join('; ')}` : ''}`);
      const shared = sharedKey(chosen.esVersion, this.clientKeys.secretKey, chosen.resolverPublicKey);
      if (!shared) throw new Error(`certificate serial ${chosen.serial} has an unusable resolver key`);
      const previous = this.session;
      this.session = {
        cert: chosen,
        keys: { esVersion: chosen.esVersion, clientMagic: chosen.clientMagic, clientPublicKey: this.clientKeys.publicKey, sharedKey: shared },
        route,
        channel,
        fragmentsBlocked,
      };
      this.usable = true;
      const recovered = this.failures > 0;
      this.failures = 0;
      if (fragmentsBlocked && !previous?.fragmentsBlocked) {
        this.env.logger.warn(
          `${this.name}: drops fragmented UDP${probed ? ' (probed)' : ' (fragments_blocked)'}; through relays its answers larger than ${MAX_UDP_LENGTH} bytes come back truncated`,
        );
      }
      if (!previous || previous.cert.serial !== chosen.serial || previous.cert.esVersion !== chosen.esVersion || previous.route.relay !== route.relay) {
        this.env.logger.info(
          `${this.name}: certificate serial ${chosen.serial}, es-version ${chosen.esVersion}, valid until ${new Date(chosen.tsEnd * 1000).toISOString()}${via}`,
        );
      } else if (recovered) {
        this.env.logger.info(`${this.name}: reachable again${via}`);
      }
      if (dnscryptCertificate.hasSubscribers) {
        dnscryptCertificate.publish({ upstream: this.name, serial: chosen.serial, esVersion: chosen.esVersion, expiresAt: chosen.tsEnd });
      }
      this.schedule(this.nextRefreshMs(chosen));
    } catch (err) {
      this.failures++;
      this.lastError = `${(err as Error).message}${via}`;
      const kept = this.validSession();
      // Said once per outage (its return is said too); retries back off to a minute, each
      // through a relay picked again, so the server comes back by itself with the network.
      if (kept) {
        this.warnOnce(`${this.name}: certificate refresh failed${via} (${(err as Error).message}); keeping serial ${kept.cert.serial} while it is valid`);
        this.schedule(Math.min(this.retryMs(), this.nextRefreshMs(kept.cert)));
      } else if (route.skipWhenUnreachable) {
        this.usable = false;
        this.warnOnce(`${this.name}: no certificate${via} (${(err as Error).message}); left out until it answers (skip_incompatible)`);
        this.schedule(this.retryMs());
      } else {
        this.warnOnce(`${this.name}: no certificate${via} (${(err as Error).message}); queries to it fail until one is fetched`);
        this.schedule(this.retryMs());
      }
    }
  }

  /**
   * The server's certificates, over UDP (TCP when the answer is truncated or UDP fails).
   * Through a relay, the UDP queries are the fragment probe: it also says whether the server
   * drops fragmented UDP.
   */
  private async certificatesVia(channel: DnscryptChannel, relayed: boolean): Promise<{ certs: Buffer[]; fragmentsBlocked: boolean }> {
    let fromUdp: Buffer[] | null = null;
    let udpError: unknown = null;
    let fragmentsBlocked = false;
    if (!this.config.tcpOnly) {
      try {
        let answer: CertificateAnswer;
        if (relayed) {
          const probe = await probeFragments((wireSize) => this.certificateQuery(channel, wireSize - RELAY_HEADER_SIZE, 'udp'));
          answer = probe.value;
          fragmentsBlocked = probe.fragmentsBlocked;
        } else {
          answer = await this.certificateQuery(channel, CERT_QUERY_SIZE, 'udp');
        }
        if (!answer.truncated) return { certs: answer.certs, fragmentsBlocked };
        fromUdp = answer.certs; // a truncated answer may still hold a usable certificate
      } catch (err) {
        udpError = err;
      }
    }
    try {
      return { certs: (await this.certificateQuery(channel, CERT_QUERY_SIZE, 'tcp')).certs, fragmentsBlocked };
    } catch (err) {
      if (fromUdp) return { certs: fromUdp, fragmentsBlocked };
      throw udpError instanceof UpstreamTimeoutError || udpError === null ? err : udpError;
    }
  }

  /** One certificate query of `size` bytes, with its own ID. */
  private certificateQuery(channel: DnscryptChannel, size: number, transport: 'udp' | 'tcp'): Promise<CertificateAnswer> {
    const id = randomId();
    const query = buildCertQuery(this.server.providerName, id, size);
    const parse = (answer: Buffer): CertificateAnswer | null => {
      try {
        return { certs: certificatesFromAnswer(query, answer), truncated: isTruncated(answer) };
      } catch {
        return null;
      }
    };
    return transport === 'udp' ? channel.udp(query, idKey(id), parse, CERT_ATTEMPT_MS) : channel.tcp(query, parse, CERT_ATTEMPT_MS);
  }

  private channelFor(route: DnscryptRoute): DnscryptChannel {
    const relay = route.relay;
    const key = relay ? `relay ${relay.name} ${relay.host} ${relay.port}` : 'direct';
    let channel = this.channels.get(key);
    if (!channel) {
      channel = relay
        ? new DnscryptChannel(relay.host, relay.port, relayHeader(this.server.host, this.server.port), `${this.name} via relay ${relay.name} (${formatHostPort(relay.host, relay.port)})`)
        : new DnscryptChannel(this.server.host, this.server.port, null, `${this.name} (${this.address})`);
      this.channels.set(key, channel);
    }
    return channel;
  }

  /** Refresh after cert_refresh, or sooner: before the certificate's end. */
  private nextRefreshMs(cert: Certificate): number {
    const untilEnd = cert.tsEnd * 1000 - this.env.clock.now();
    const early = Math.min(10 * 60_000, (cert.tsEnd - cert.tsStart) * 100); // a tenth of its life, at most 10 minutes
    return Math.max(1000, Math.min(this.config.certRefreshMs, untilEnd - early));
  }

  /** Logs the first failure of an outage only: an unreachable server must not fill the log. */
  private warnOnce(message: string): void {
    if (this.failures === 1) this.env.logger.warn(message);
  }

  private retryMs(): number {
    return Math.min(1000 * 2 ** Math.min(this.failures - 1, 16), MAX_RETRY_MS, this.config.certRefreshMs);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.refresh();
    }, delayMs);
    this.timer.unref();
  }
}

/** The answer inside `packet` if it is the one to `query`: decrypts, then checks ID and question. */
function acceptAnswer(keys: ClientKeys, nonce: Buffer, query: Buffer, packet: Buffer): Buffer | null {
  const answer = decryptResponse(keys.esVersion, keys.sharedKey, nonce, packet);
  if (!answer || !isResponse(answer) || readId(answer) !== readId(query) || !sameQuestion(query, answer)) return null;
  return answer;
}
