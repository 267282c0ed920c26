/**
 * The target side of ODoH on a DoH listener: the DoH path takes `application/oblivious-dns-message`
 * bodies too, and `/.well-known/odohconfigs` serves the configs of the current key.
 *
 * An oblivious query is opened with the key its key id names (401 when no accepted key has that
 * id: the client fetches the configs again), checked (400 when it does not open, is malformed,
 * or repeats a query seen lately), answered by the block's chain like any query, and the answer
 * sealed to it. What the listener logs and counts is the peer: the relay, never the client.
 */
import { Buffer } from 'node:buffer';
import { odohTargetEvent } from '../../core/events.js';
import type { Logger } from '../../core/logger.js';
import { textReply, type HttpReply } from '../http2/message.js';
import { OdohCryptoError, openQuery, sealResponse } from './crypto.js';
import { TargetKeyRing } from './key-ring.js';
import { MessageType, OBLIVIOUS_MEDIA_TYPE, OdohFormatError, parseMessage, RESPONSE_PADDING_BLOCK } from './message.js';
import type { OdohTargetOptions } from './server-options.js';

/** Runs the DNS query through the block's chain: the answer, or the HTTP reply for a query it refuses. */
export type AnswerQuery = (dns: Buffer) => Promise<Buffer | HttpReply>;

/** Queries remembered to refuse replays: enough for minutes at busy rates, bounded all the same. */
const REPLAY_WINDOW = 65_536;

export class OdohTargetService {
  readonly keys: TargetKeyRing;
  /** Encapsulated keys of recent queries (each sealed query has its own), oldest first. */
  private readonly seen = new Set<string>();
  private readonly order: string[] = new Array(REPLAY_WINDOW);
  private next = 0;

  constructor(options: OdohTargetOptions, logger: Logger, label: string) {
    this.keys = new TargetKeyRing(options, undefined, (key) => logger.info(`${label}: ODoH key ${key.config.keyId.toString('hex').slice(0, 16)}… published`));
  }

  start(): Promise<void> {
    return this.keys.start();
  }

  update(options: OdohTargetOptions): Promise<void> {
    return this.keys.update(options);
  }

  stop(): void {
    this.keys.stop();
  }

  /** GET (or HEAD) /.well-known/odohconfigs. */
  configsReply(method: string): HttpReply {
    if (method !== 'GET' && method !== 'HEAD') return textReply(405, 'method not allowed: use GET', { allow: 'GET' });
    const body = this.keys.configs;
    return { status: 200, headers: { 'content-type': 'application/octet-stream', 'content-length': body.length, 'cache-control': `max-age=${this.keys.maxAgeSeconds()}` }, body };
  }

  /** One oblivious query (the POST body): its sealed answer, or the reply that says why not. */
  async answer(body: Buffer, answerQuery: AnswerQuery): Promise<HttpReply> {
    let message;
    try {
      message = parseMessage(body);
    } catch (err) {
      if (err instanceof OdohFormatError) return this.refuse(400, 'malformed', `bad request: ${err.message}`);
      throw err;
    }
    if (message.type !== MessageType.query) return this.refuse(400, 'not a query', 'bad request: an oblivious answer where a query was expected');
    const key = this.keys.find(message.keyId);
    // 401: the client's configs are stale; it fetches them again (RFC 9230 §7).
    if (!key) return this.refuse(401, 'unknown key', 'unauthorized: no current key has this key id; fetch /.well-known/odohconfigs again');
    let opened;
    try {
      opened = await openQuery(key, message);
    } catch (err) {
      if (err instanceof OdohCryptoError || err instanceof OdohFormatError) return this.refuse(400, 'does not open', 'bad request: the query does not decrypt');
      throw err;
    }
    if (!this.remember(opened.enc.toString('base64'))) return this.refuse(400, 'replayed', 'bad request: this query was seen already');
    const answer = await answerQuery(opened.dns);
    if (!Buffer.isBuffer(answer)) return this.refuse(answer.status, answer.status === 403 ? 'refused by the chain' : 'malformed DNS', answer);
    const sealed = sealResponse(opened, answer, RESPONSE_PADDING_BLOCK);
    if (odohTargetEvent.hasSubscribers) odohTargetEvent.publish({ event: 'answered' });
    return { status: 200, headers: { 'content-type': OBLIVIOUS_MEDIA_TYPE, 'content-length': sealed.length, 'cache-control': 'no-cache, no-store' }, body: sealed };
  }

  /** False when this encapsulated key was seen within the window (a replayed query). */
  private remember(enc: string): boolean {
    if (this.seen.has(enc)) return false;
    const evicted = this.order[this.next];
    if (evicted !== undefined) this.seen.delete(evicted);
    this.order[this.next] = enc;
    this.next = (this.next + 1) % REPLAY_WINDOW;
    this.seen.add(enc);
    return true;
  }

  private refuse(status: number, reason: string, reply: string | HttpReply): HttpReply {
    if (odohTargetEvent.hasSubscribers) odohTargetEvent.publish({ event: 'refused', reason });
    return typeof reply === 'string' ? textReply(status, reply) : reply;
  }
}
