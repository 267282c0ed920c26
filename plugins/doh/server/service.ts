/**
 * What a DoH listener does with one HTTP request, whichever HTTP version carried it: find the
 * DNS query (GET `?dns=` base64url, POST `application/dns-message`, or the JSON form's
 * `?name=&type=`), check it, pass it to the query handler, and turn the answer into an HTTP
 * response with `Cache-Control: max-age` from the answer's smallest TTL (RFC 8484 §5.1).
 *
 * Answers to queries with EDNS padding are padded to 468-byte blocks (RFC 8467).
 *
 * Status codes: 400 malformed query, 404 other paths, 405 other methods, 408 a body that does
 * not arrive in time, 413 a body over 65535 bytes (no DNS message is larger), 415 another
 * content type.
 */
// Buffer (and performance) imported, not the globals: in Node 24 the globals are accessors,
// about 10 ns a use, on every request here.
import { Buffer } from 'node:buffer';
import type { ClientAddress, RemoteTrace } from '../../../core/context.js';
import { HEADER_SIZE, MAX_MESSAGE_SIZE } from '../../../core/dns/constants.js';
import { hasPadding, padMessage, RESPONSE_PADDING_BLOCK } from '../../../core/dns/edns.js';
import { arCount, isResponse, minimumTtl, qdCount, readQuestion, WireError } from '../../../core/dns/wire.js';
import type { QueryHandler } from '../../../core/listeners/listener.js';
import { bodyTooLarge, textReply, type HttpReply, type HttpRequest } from '../../../lib/http2/message.js';
import { DNS_MESSAGE } from '../../../lib/https-client/exchange.js';
import { CONFIGS_PATH, MAX_MESSAGE_BYTES, OBLIVIOUS_MEDIA_TYPE } from '../../../lib/odoh/message.js';
import { answerToJson, DNS_JSON, queryFromParams } from './json.js';
import type { ObliviousRoles } from './oblivious.js';

export class DohService {
  constructor(
    private readonly path: string,
    private readonly transport: 'https' | 'http',
    private readonly handler: () => QueryHandler,
    /** The listener's ODoH role, if it has one (odoh_target, odoh_relay). */
    private readonly oblivious: ObliviousRoles | null = null,
  ) {}

  /**
   * Serves one request. Not an async function: a GET (what DoH clients mostly send) then
   * waits on one promise, the chain's, instead of suspending a large async frame; that frame
   * was most of what a request allocated here. Whatever goes wrong becomes a rejection, as an
   * async function's would (the listener answers 500).
   */
  serve(request: HttpRequest, client: ClientAddress): Promise<HttpReply> {
    try {
      const path = request.path;
      const queryAt = path.indexOf('?');
      // The path compared in place: no substring made for a request to the DoH path.
      const ours = queryAt < 0 ? path === this.path : queryAt === this.path.length && path.startsWith(this.path);
      if (!ours) {
        const pathname = queryAt < 0 ? path : path.slice(0, queryAt);
        if (pathname === CONFIGS_PATH && this.oblivious?.target) return Promise.resolve(this.oblivious.target.configsReply(request.method));
        return Promise.resolve(textReply(404, `not found: DNS queries go to ${this.path}`));
      }
      if (this.oblivious?.relay) return this.oblivious.relay.serve(request, client.address);
      if (request.method === 'GET') return this.serveGet(request, client, queryAt);
      if (request.method === 'POST') return this.servePost(request, client);
      return Promise.resolve(textReply(405, 'method not allowed: use GET or POST', { allow: 'GET, POST' }));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** A GET: the query from `?dns=` (base64url), or the JSON form's `?name=&type=`. */
  private serveGet(request: HttpRequest, client: ClientAddress, queryAt: number): Promise<HttpReply> {
    const plainAt = queryAt < 0 ? -1 : plainDnsParam(request.path, queryAt + 1);
    const params = plainAt < 0 ? new URLSearchParams(queryAt < 0 ? '' : request.path.slice(queryAt + 1)) : null;
    const dns = plainAt >= 0 ? request.path : params!.get('dns');
    if (dns !== null) {
      const decoded = decodeBase64Url(dns, Math.max(plainAt, 0));
      if (!decoded) return Promise.resolve(textReply(400, 'bad request: the dns parameter is not base64url'));
      return this.serveQuery(request, client, decoded, false);
    }
    if (params!.has('name') || (request.header('accept') ?? '').includes(DNS_JSON)) {
      const built = queryFromParams(params!);
      if (typeof built === 'string') return Promise.resolve(textReply(400, `bad request: ${built}`));
      return this.serveQuery(request, client, built, true);
    }
    return Promise.resolve(textReply(400, 'bad request: give the query as ?dns=BASE64URL, or ?name=NAME&type=TYPE'));
  }

  /** A POST: an `application/dns-message` body, or an oblivious query for this target. */
  private async servePost(request: HttpRequest, client: ClientAddress): Promise<HttpReply> {
    const type = mediaType(request.header('content-type'));
    if (type === OBLIVIOUS_MEDIA_TYPE && this.oblivious?.target) return this.serveOblivious(request, client);
    if (type !== DNS_MESSAGE) return textReply(415, `unsupported media type: POST bodies are ${DNS_MESSAGE}`);
    const length = request.header('content-length');
    if (length !== undefined && Number(length) > MAX_MESSAGE_SIZE) return bodyTooLarge(MAX_MESSAGE_SIZE);
    const body = await request.readBody(MAX_MESSAGE_SIZE);
    if (!Buffer.isBuffer(body)) return body;
    return this.serveQuery(request, client, body, false);
  }

  /** Asks the chain and makes its answer the HTTP reply (as JSON for the JSON form). */
  private serveQuery(request: HttpRequest, client: ClientAddress, wire: Buffer, json: boolean): Promise<HttpReply> {
    const problem = malformed(wire);
    if (problem) return Promise.resolve(textReply(400, `bad request: ${problem}`));
    return this.ask(wire, client, this.transport, remoteTrace(request)).then((answer) => httpAnswer(wire, answer, json));
  }
  /**
   * An oblivious query for this target: opened, answered by the chain as transport `odoh`
   * (the client is the peer, a relay), and the answer sealed to it.
   */
  private async serveOblivious(request: HttpRequest, client: ClientAddress): Promise<HttpReply> {
    const length = request.header('content-length');
    if (length !== undefined && Number(length) > MAX_MESSAGE_BYTES) return bodyTooLarge(MAX_MESSAGE_BYTES);
    const body = await request.readBody(MAX_MESSAGE_BYTES);
    if (!Buffer.isBuffer(body)) return body;
    return this.oblivious!.target!.answer(body, (dns) => this.answer(dns, client, 'odoh'));
  }

  /** The chain's answer to a DNS query, or the reply that refuses it. */
  private async answer(wire: Buffer, client: ClientAddress, transport: string): Promise<Buffer | HttpReply> {
    const problem = malformed(wire);
    if (problem) return textReply(400, `bad request: ${problem}`);
    return refusedIfSilent(await this.ask(wire, client, transport));
  }

  private ask(wire: Buffer, client: ClientAddress, transport: string, trace?: RemoteTrace): Promise<Buffer | null> {
    return this.handler()(wire, trace ? { client, transport, datagram: false, remoteTrace: trace } : { client, transport, datagram: false });
  }
}

/**
 * A chain that answers nothing (a rule that drops the query) cannot stay silent over HTTP
 * without holding the stream open: the client is told it was refused.
 */
function refusedIfSilent(answer: Buffer | null): Buffer | HttpReply {
  return answer ?? textReply(403, 'forbidden: the query was refused');
}

/** The HTTP reply for the chain's answer to `wire`, with Cache-Control from its smallest TTL. */
function httpAnswer(wire: Buffer, chainAnswer: Buffer | null, json: boolean): HttpReply {
  let answer = refusedIfSilent(chainAnswer);
  if (!Buffer.isBuffer(answer)) return answer;
  // Answers to padded queries are padded too (RFC 8467 §4.1, as the DoT listener does), so
  // their size tells an observer of the encrypted stream as little as the query's did.
  // (A query with no additional records has no OPT record to pad with: not looked for.)
  if (!json && arCount(wire) > 0 && hasPadding(wire)) answer = padMessage(answer, RESPONSE_PADDING_BLOCK);
  if (json) {
    const body = Buffer.from(answerToJson(answer));
    return { status: 200, headers: { 'cache-control': cacheControl(answer), 'content-type': DNS_JSON, 'content-length': body.length }, body };
  }
  return { status: 200, headers: { 'cache-control': cacheControl(answer), 'content-type': DNS_MESSAGE, 'content-length': answer.length }, body: answer };
}

/**
 * The caller's W3C trace context (as CoreDNS reads it since its PR #5439), for trace to
 * continue. Only a plain DoH request's: an oblivious one comes through a relay, whose headers
 * are not the client's. Values longer than the specification allows are ignored.
 */
function remoteTrace(request: HttpRequest): RemoteTrace | undefined {
  const traceparent = request.header('traceparent');
  if (traceparent === undefined || traceparent.length > 128) return undefined;
  const tracestate = request.header('tracestate');
  return tracestate !== undefined && tracestate.length <= 512 ? { traceparent, tracestate } : { traceparent };
}

function mediaType(header: string | undefined): string | undefined {
  return header?.split(';')[0]!.trim().toLowerCase();
}

/**
 * Where the `dns` parameter's value starts in `path` when the query string (at `start`) is
 * that parameter alone and needs no decoding (no `%`, no `+`): what DoH clients send. It is
 * then read in place, without parsing the query string into URLSearchParams; -1 sends every
 * other query string that way.
 */
function plainDnsParam(path: string, start: number): number {
  if (!path.startsWith('dns=', start)) return -1;
  for (let i = start + 4; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x26 /* & */ || c === 0x25 /* % */ || c === 0x2b /* + */) return -1;
  }
  return start + 4;
}

/** The value of each base64url digit (RFC 4648 §5) by character code; -1 for a character that is none. */
const BASE64URL_VALUES = (() => {
  const values = new Int8Array(128).fill(-1);
  const digits = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  for (let i = 0; i < digits.length; i++) values[digits.charCodeAt(i)] = i;
  return values;
})();

/**
 * The text from `start` as strict base64url (RFC 4648 §5, padding tolerated): Node's decoder
 * would skip bad characters.
 * Checked and decoded in one pass over the character codes (this runs on every GET): no
 * regular expressions, and no call into Node's decoder for a query of a few dozen characters.
 * Like Node's decoder, 2 or 3 trailing digits give 1 or 2 bytes and their spare bits are dropped.
 */
function decodeBase64Url(text: string, start: number): Buffer | null {
  let end = text.length;
  // At most two '=' of padding at the end.
  if (end > start && text.charCodeAt(end - 1) === 0x3d) end--;
  if (end > start && text.charCodeAt(end - 1) === 0x3d) end--;
  const length = end - start;
  if (length % 4 === 1) return null;
  const out = Buffer.allocUnsafe((length * 3) >>> 2);
  let written = 0;
  let bits = 0;
  let pending = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    const value = c < 128 ? BASE64URL_VALUES[c]! : -1;
    if (value < 0) return null;
    pending = (pending << 6) | value;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[written++] = pending >>> bits;
      pending &= (1 << bits) - 1;
    }
  }
  return out;
}

/** Why `wire` is not a DNS query we can answer, or null. */
function malformed(wire: Buffer): string | null {
  if (wire.length < HEADER_SIZE) return `${wire.length} bytes is shorter than a DNS header`;
  if (isResponse(wire)) return 'the message is a response, not a query';
  if (qdCount(wire) !== 1) return `the query has ${qdCount(wire)} questions`;
  try {
    readQuestion(wire);
  } catch (err) {
    if (err instanceof WireError) return err.message;
    throw err;
  }
  return null;
}

function cacheControl(answer: Buffer): string {
  try {
    const ttl = minimumTtl(answer);
    return ttl === undefined ? 'max-age=0' : `max-age=${ttl}`;
  } catch {
    return 'no-store';
  }
}
