/**
 * `listen dnscrypt://IP:PORT { provider 2.dnscrypt-cert.NAME  key FILE }`: DNSCrypt v2 into
 * the normal pipeline, over UDP and TCP on the same port. Certificate queries (plain TXT for the
 * provider name) get the signed certificate; encrypted queries are decrypted, answered by the
 * dispatcher like any other, padded and encrypted back. Over UDP an answer is never larger than
 * the query that asked for it (the dispatcher truncates to fit, and the client retries over
 * TCP); a certificate answer too, which comes back truncated (TC) to a small certificate query.
 * Anything else — too short, unknown magic, a weak key, a failed authentication, bad padding —
 * is dropped without a word, and counted.
 *
 * Decryption costs: an X25519 key exchange for a client key not yet cached. So before any
 * crypto, a packet passes the door's checks that need no question (the blocks' acl and
 * ratelimit, which the decrypted query then does not pay again), and a key exchange is done
 * only within a budget per client network and one for the listener.
 */
import { Buffer } from 'node:buffer';
import path from 'node:path';
import type { Directive } from '../../core/config/ast.js';
import { configError, expectArgs, parseInteger } from '../../core/config/options.js';
import { canonicalName, encodeName } from '../../core/dns/wire.js';
import { truncateReply } from '../../core/dns/message.js';
import type { Location } from '../../core/errors.js';
import { dnscryptKeyExchange, queryRejected } from '../../core/events.js';
import type { Listener, ListenerEnvironment, QueryHandler, QueryInfo, TransportDefinition } from '../../core/listeners/listener.js';
import { DATAGRAM_OPTION_NAMES, parseDatagramLimits, parseStreamLimits, STREAM_OPTION_NAMES, type DatagramLimits } from '../../core/listeners/options.js';
import type { StreamLimits } from '../../core/listeners/stream-sessions.js';
import { bindPair, type ListenerPair } from '../../core/listeners/pair.js';
import type { Endpoint } from '../../core/net/address.js';
import { clientKey, TokenBuckets } from '../../core/util/token-buckets.js';
import { buildCertAnswer, certQuestion } from '../../lib/dnscrypt/cert-query.js';
import { CERT_NAME_PREFIX, HALF_NONCE_SIZE, RESPONSE_OVERHEAD } from '../../lib/dnscrypt/constants.js';
import { responseLength } from '../../lib/dnscrypt/crypto.js';
import { randomInto } from '../../core/util/random-pool.js';
import { decryptQuery, encryptResponse, readQueryEnvelope } from '../../lib/dnscrypt/packet.js';
import { providerKeyPair, readProviderKeyFile } from '../../lib/dnscrypt/provider-key.js';
import { sodium } from '../../lib/dnscrypt/sodium.js';
import { ResolverCertificates, ROTATE_EVERY_S, type ResolverCertificate } from './resolver-certs.js';

export interface DnscryptListenerOptions {
  providerName: string;
  /** The key file as written, for messages. */
  keyFile: string;
  /** The provider's Ed25519 seed, hex (options are compared as JSON on reload). */
  providerSeed: string;
  stream: StreamLimits;
  datagram: DatagramLimits;
  keyExchanges: KeyExchangeBudget;
}

/** How many key exchanges (client keys not cached) a second: per client network, and in all. */
export interface KeyExchangeBudget {
  perClient: number;
  total: number;
}

export const DEFAULT_KEY_EXCHANGES: KeyExchangeBudget = { perClient: 100, total: 2000 };
/** A client network, for the key exchange budget: as ratelimit's defaults. */
const CLIENT_PREFIXES = { ipv4Prefix: 32, ipv6Prefix: 56 };
/** Client networks whose key exchange budget is remembered; the oldest go first. */
const MAX_BUDGETED_CLIENTS = 50_000;

/** TTL of the certificate TXT record. */
const CERT_TTL = 3600;
/** The largest DNS answer sent over TCP: what a length prefix carries, less the envelope. */
const MAX_STREAM_PACKET = 65535;

export interface DnscryptListenerStats {
  queries: number;
  certQueries: number;
  dropped: Record<string, number>;
}

export class DnscryptListener implements Listener {
  boundAddress = '';
  readonly stats: DnscryptListenerStats = { queries: 0, certQueries: 0, dropped: {} };
  private handler: QueryHandler | null = null;
  private pair: ListenerPair | null = null;
  private certs: ResolverCertificates;
  private providerName: string;
  private rotation: NodeJS.Timeout | null = null;
  private clientKeyExchanges: TokenBuckets;
  private allKeyExchanges: TokenBuckets;

  constructor(
    readonly endpoint: Endpoint,
    private options: DnscryptListenerOptions,
    private readonly env: ListenerEnvironment,
  ) {
    this.certs = this.makeCertificates(options);
    this.providerName = canonicalName(options.providerName);
    [this.clientKeyExchanges, this.allKeyExchanges] = keyExchangeBuckets(options.keyExchanges);
  }

  /** The certificates this listener serves and accepts (for tests). */
  get certificates(): ResolverCertificates {
    return this.certs;
  }

  async start(handler: QueryHandler): Promise<void> {
    this.handler = handler;
    this.certs.rotate();
    this.pair = await bindPair(this.endpoint, this.options.datagram, this.options.stream, this.env, {
      datagram: (packet, info) => this.serve(packet, info, true),
      stream: (packet, info) => this.serve(packet, info, false),
    });
    this.boundAddress = this.pair.boundAddress('dnscrypt');
    this.rotation = setInterval(() => this.certs.rotate(), ROTATE_EVERY_S * 1000);
    this.rotation.unref();
  }

  setHandler(handler: QueryHandler): void {
    this.handler = handler;
  }

  update(options: unknown): void {
    const next = options as DnscryptListenerOptions;
    if (next.providerSeed !== this.options.providerSeed || next.providerName !== this.options.providerName) {
      this.certs = this.makeCertificates(next);
      this.certs.rotate();
      this.providerName = canonicalName(next.providerName);
      this.env.logger.info(`${this.endpoint.text}: new provider key or name; serving a new certificate`);
    }
    if (JSON.stringify(next.keyExchanges) !== JSON.stringify(this.options.keyExchanges)) {
      [this.clientKeyExchanges, this.allKeyExchanges] = keyExchangeBuckets(next.keyExchanges);
    }
    this.options = next;
    this.pair?.update(next.datagram, next.stream);
  }

  async stop(graceMs: number): Promise<void> {
    if (this.rotation) clearInterval(this.rotation);
    this.rotation = null;
    await this.pair?.stop(graceMs);
    this.pair = null;
  }

  private makeCertificates(options: DnscryptListenerOptions): ResolverCertificates {
    return new ResolverCertificates(providerKeyPair(Buffer.from(options.providerSeed, 'hex')), this.env.clock);
  }

  /** One packet from a client: an encrypted query, a certificate query, or something to drop. */
  private async serve(packet: Buffer, info: QueryInfo, datagram: boolean): Promise<Buffer | null> {
    const handler = this.handler!;
    // The door first: a client no block takes, or one over its rate, costs no crypto at all.
    const door = handler.admitClient?.({ client: info.client, transport: 'dnscrypt', datagram });
    if (door === null) {
      this.count('turned away at the door');
      return null;
    }
    const envelope = readQueryEnvelope(packet);
    const entry = envelope && this.certs.lookup(packet);
    if (!entry) return this.answerCertQuery(packet, info, datagram);
    const key = this.certs.cachedKey(entry, envelope!.clientPublicKey) ?? this.exchangeKeys(entry, envelope!.clientPublicKey, info);
    if (typeof key === 'string') return this.drop(key, info);
    const query = decryptQuery(entry.cert.esVersion, key, packet);
    if (!query) return this.drop('undecryptable', info);
    this.stats.queries++;
    // Over UDP the encrypted answer may not be larger than the query (no amplification).
    const limit = datagram ? packet.length : MAX_STREAM_PACKET;
    const maxAnswer = limit - RESPONSE_OVERHEAD - 1;
    const queryInfo: QueryInfo = { client: info.client, transport: 'dnscrypt', datagram, ...(datagram ? { maxSize: maxAnswer } : {}), ...(door ? { door } : {}) };
    let answer = await handler(query, queryInfo);
    if (!answer) return null;
    if (answer.length > maxAnswer) answer = truncateReply(answer, maxAnswer);
    const clientNonce = envelope!.clientNonce;
    const resolverNonce = Buffer.allocUnsafe(HALF_NONCE_SIZE);
    randomInto(resolverNonce, 0, HALF_NONCE_SIZE);
    // Spec §8: the padding length is a function of the shared key and the client's nonce.
    const prf = sodium().crypto_shorthash(clientNonce, key.subarray(0, 16))[0]!;
    const padded = responseLength(answer.length, prf, limit - RESPONSE_OVERHEAD);
    return encryptResponse(entry.cert.esVersion, key, clientNonce, resolverNonce, answer, padded);
  }

  /**
   * The shared key for a client key not cached, within the key exchange budgets; else why not
   * (a drop reason).
   */
  private exchangeKeys(entry: ResolverCertificate, clientPublicKey: Buffer, info: QueryInfo): Buffer | string {
    const now = this.env.clock.monotonic();
    if (!this.clientKeyExchanges.take(clientKey(info.client.address, CLIENT_PREFIXES), now)) return 'over the client\'s key exchange budget';
    if (!this.allKeyExchanges.take('', now)) return 'over the listener\'s key exchange budget';
    if (dnscryptKeyExchange.hasSubscribers) dnscryptKeyExchange.publish({ listener: this.endpoint.text });
    return this.certs.computeKey(entry, clientPublicKey) ?? 'weak client key';
  }

  private answerCertQuery(packet: Buffer, info: QueryInfo, datagram: boolean): Buffer | null {
    const question = certQuestion(packet);
    if (!question) return this.drop(packet.length < 12 ? 'short packet' : 'not DNSCrypt', info);
    if (question.name !== this.providerName) return this.drop('certificate query for another provider', info);
    this.stats.certQueries++;
    const answer = buildCertAnswer(packet, question, this.certs.served, CERT_TTL);
    // No amplification over UDP: a certificate query smaller than the answer (clients pad
    // theirs) gets the header and question with TC, and asks again over TCP.
    if (datagram && answer.length > packet.length) {
      this.count('certificate query smaller than its answer (TC)');
      return truncateReply(answer, packet.length);
    }
    return answer;
  }

  private count(reason: string): void {
    this.stats.dropped[reason] = (this.stats.dropped[reason] ?? 0) + 1;
  }

  private drop(reason: string, info: QueryInfo): null {
    this.count(reason);
    if (queryRejected.hasSubscribers) queryRejected.publish({ reason: `dnscrypt: ${reason}`, info: { ...info, transport: 'dnscrypt' } });
    return null;
  }
}

const PLUGIN = 'listen';

export const dnscryptTransport: TransportDefinition<DnscryptListenerOptions> = {
  scheme: 'dnscrypt',
  defaultPort: 443,
  optionNames: ['provider', 'key', 'key_exchanges', ...STREAM_OPTION_NAMES, ...DATAGRAM_OPTION_NAMES],
  parseOptions: (endpoint, options, at) => parseDnscryptListenerOptions(endpoint, options, at),
  create: (endpoint, options, env) => new DnscryptListener(endpoint, options, env),
};

function parseDnscryptListenerOptions(endpoint: Endpoint, options: Directive[], at: Location): DnscryptListenerOptions {
  let providerName: string | null = null;
  let keyFile: string | null = null;
  let providerSeed: string | null = null;
  let keyExchanges = DEFAULT_KEY_EXCHANGES;
  for (const d of options) {
    if (d.name.text === 'key_exchanges') {
      const [perClient, total] = expectArgs(PLUGIN, d, 1, 2);
      keyExchanges = { perClient: parseInteger(PLUGIN, perClient!, 1, 1_000_000), total: total ? parseInteger(PLUGIN, total, 1, 10_000_000) : DEFAULT_KEY_EXCHANGES.total };
      if (keyExchanges.total < keyExchanges.perClient) throw configError(PLUGIN, total!, `key_exchanges: the listener's budget (${keyExchanges.total}) is below one client's (${keyExchanges.perClient})`);
    }
    if (d.name.text === 'provider') {
      const [name] = expectArgs(PLUGIN, d, 1);
      const text = name!.text.replace(/\.$/, '');
      if (!text.toLowerCase().startsWith(CERT_NAME_PREFIX) || text.length <= CERT_NAME_PREFIX.length) {
        throw configError(PLUGIN, name!, `provider "${name!.text}" must be ${CERT_NAME_PREFIX}NAME (relays and clients recognise certificates by that prefix)`);
      }
      try {
        encodeName(text);
      } catch (err) {
        throw configError(PLUGIN, name!, `provider "${name!.text}" is not a valid name: ${(err as Error).message}`);
      }
      providerName = text;
    } else if (d.name.text === 'key') {
      const [file] = expectArgs(PLUGIN, d, 1);
      const full = path.resolve(path.dirname(path.resolve(file!.file)), file!.text);
      try {
        providerSeed = readProviderKeyFile(full).toString('hex');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw configError(PLUGIN, file!, `cannot read provider key ${file!.text}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message} (make one with "veil dnscrypt keygen")`);
      }
      keyFile = file!.text;
    }
  }
  if (!providerName) throw configError(PLUGIN, at, `${endpoint.text} needs "provider ${CERT_NAME_PREFIX}NAME" in its block`);
  if (!providerSeed || !keyFile) throw configError(PLUGIN, at, `${endpoint.text} needs "key FILE" (the provider's secret key; make one with "veil dnscrypt keygen")`);
  const limits = options.filter((d) => d.name.text !== 'key_exchanges');
  return { providerName, keyFile, providerSeed, stream: parseStreamLimits(limits), datagram: parseDatagramLimits(limits), keyExchanges };
}

/** A bucket per client network, and one for the whole listener (key ""); a second's worth each. */
function keyExchangeBuckets(budget: KeyExchangeBudget): [TokenBuckets, TokenBuckets] {
  return [new TokenBuckets(budget.perClient, budget.perClient, MAX_BUDGETED_CLIENTS), new TokenBuckets(budget.total, budget.total, 1)];
}
