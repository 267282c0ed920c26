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
import type { ClientAddress, RemoteTrace } from '../../../core/context.js';
import { HEADER_SIZE, MAX_MESSAGE_SIZE } from '../../../core/dns/constants.js';
import { hasPadding, padMessage, RESPONSE_PADDING_BLOCK } from '../../../core/dns/edns.js';
import { isResponse, minimumTtl, qdCount, readQuestion, WireError } from '../../../core/dns/wire.js';
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

  async serve(request: HttpRequest, client: ClientAddress): Promise<HttpReply> {
    const queryAt = request.path.indexOf('?');
    const pathname = queryAt < 0 ? request.path : request.path.slice(0, queryAt);
    if (pathname !== this.path) {
      if (pathname === CONFIGS_PATH && this.oblivious?.target) return this.oblivious.target.configsReply(request.method);
      return textReply(404, `not found: DNS queries go to ${this.path}`);
    }
    if (this.oblivious?.relay) return this.oblivious.relay.serve(request, client.address);

    let wire: Buffer;
    let json = false;
    if (request.method === 'GET') {
      const plain = queryAt < 0 ? null : plainDnsParam(request.path, queryAt + 1);
      const params = plain === null ? new URLSearchParams(queryAt < 0 ? '' : request.path.slice(queryAt + 1)) : null;
      const dns = plain ?? params!.get('dns');
      if (dns !== null) {
        const decoded = decodeBase64Url(dns);
        if (!decoded) return textReply(400, 'bad request: the dns parameter is not base64url');
        wire = decoded;
      } else if (params!.has('name') || (request.header('accept') ?? '').includes(DNS_JSON)) {
        const built = queryFromParams(params!);
        if (typeof built === 'string') return textReply(400, `bad request: ${built}`);
        wire = built;
        json = true;
      } else {
        return textReply(400, 'bad request: give the query as ?dns=BASE64URL, or ?name=NAME&type=TYPE');
      }
    } else if (request.method === 'POST') {
      const type = mediaType(request.header('content-type'));
      if (type === OBLIVIOUS_MEDIA_TYPE && this.oblivious?.target) return this.serveOblivious(request, client);
      if (type !== DNS_MESSAGE) return textReply(415, `unsupported media type: POST bodies are ${DNS_MESSAGE}`);
      const length = request.header('content-length');
      if (length !== undefined && Number(length) > MAX_MESSAGE_SIZE) return bodyTooLarge(MAX_MESSAGE_SIZE);
      const body = await request.readBody(MAX_MESSAGE_SIZE);
      if (!Buffer.isBuffer(body)) return body;
      wire = body;
    } else {
      return textReply(405, 'method not allowed: use GET or POST', { allow: 'GET, POST' });
    }

    let answer = await this.answer(wire, client, this.transport, remoteTrace(request));
    if (!Buffer.isBuffer(answer)) return answer;
    // Answers to padded queries are padded too (RFC 8467 §4.1, as the DoT listener does), so
    // their size tells an observer of the encrypted stream as little as the query's did.
    if (!json && hasPadding(wire)) answer = padMessage(answer, RESPONSE_PADDING_BLOCK);
    if (json) {
      const body = Buffer.from(answerToJson(answer));
      return { status: 200, headers: { 'cache-control': cacheControl(answer), 'content-type': DNS_JSON, 'content-length': body.length }, body };
    }
    return { status: 200, headers: { 'cache-control': cacheControl(answer), 'content-type': DNS_MESSAGE, 'content-length': answer.length }, body: answer };
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
  private async answer(wire: Buffer, client: ClientAddress, transport: string, trace?: RemoteTrace): Promise<Buffer | HttpReply> {
    const problem = malformed(wire);
    if (problem) return textReply(400, `bad request: ${problem}`);
    const answer = await this.handler()(wire, trace ? { client, transport, datagram: false, remoteTrace: trace } : { client, transport, datagram: false });
    // A chain that answers nothing (a rule that drops the query) cannot stay silent over
    // HTTP without holding the stream open: the client is told it was refused.
    return answer ?? textReply(403, 'forbidden: the query was refused');
  }
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
 * The `dns` parameter when the query string is that parameter alone and needs no decoding
 * (no `%`, no `+`): what DoH clients send. Then it is read as it stands, without parsing the
 * query string into URLSearchParams; null sends every other query string that way.
 */
function plainDnsParam(path: string, start: number): string | null {
  if (!path.startsWith('dns=', start)) return null;
  for (let i = start + 4; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x26 /* & */ || c === 0x25 /* % */ || c === 0x2b /* + */) return null;
  }
  return path.slice(start + 4);
}

/**
 * Strict base64url (RFC 4648 §5, padding tolerated): Node's decoder would skip bad characters.
 * Checked by character codes, not regular expressions: this runs on every GET.
 */
function decodeBase64Url(text: string): Buffer | null {
  let length = text.length;
  // At most two '=' of padding at the end.
  if (length > 0 && text.charCodeAt(length - 1) === 0x3d) length--;
  if (length > 0 && text.charCodeAt(length - 1) === 0x3d) length--;
  if (length % 4 === 1) return null;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    const ok = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f;
    if (!ok) return null;
  }
  return Buffer.from(length === text.length ? text : text.slice(0, length), 'base64url');
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
