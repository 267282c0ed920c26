/**
 * The oblivious relay (RFC 9230 §4–5) on a DoH listener's path:
 * `POST PATH?targethost=HOST[:PORT]&targetpath=/PATH` with an `application/oblivious-dns-message`
 * body is passed on, body unchanged, to the target over verified HTTPS, and the target's answer
 * comes back unchanged. The relay sees who asks and which target, never the question.
 *
 * Rules: targets only from the allowlist (reached at the addresses it gives: nothing is looked
 * up); no other media type; a body that is one well-formed oblivious query of at most
 * MAX_MESSAGE_BYTES; nothing of the client's request passed on (the request to the target is
 * built afresh: no X-Forwarded-For, cookies or user agent); requests per client address
 * limited; requests in flight bounded. Nothing about the client is logged or counted.
 *
 * Beyond the RFC, `GET PATH?targethost=…&targetpath=/.well-known/odohconfigs` fetches the
 * target's configs through the relay, so a client need not show its own address to the target
 * even for that (GET of that one path only).
 */
import { performance } from 'node:perf_hooks';
import { Buffer } from 'node:buffer';
import { odohRelayEvent } from '../../core/events.js';
import { textReply, type HttpReply, type HttpRequest } from '../http2/message.js';
import { CONFIGS_PATH, MAX_MESSAGE_BYTES, MessageType, OBLIVIOUS_MEDIA_TYPE, OdohFormatError, parseMessage } from './message.js';
import type { OdohRelayOptions, RelayTarget } from './server-options.js';

export interface TargetRequest {
  method: 'GET' | 'POST';
  path: string;
  body: Buffer | null;
}

/** Passes requests to targets (the DoH listener's HTTPS client). Errors with a `status` are the target's own answers. */
export interface RelayForwarder {
  send(target: RelayTarget, request: TargetRequest, timeoutMs: number): Promise<{ body: Buffer; cacheControl?: string }>;
  close(): void;
}

/** Client addresses tracked for the rate limit: the oldest is forgotten past this. */
const MAX_TRACKED_CLIENTS = 10_000;
const PLAIN_PATH = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,254}$/;

interface Bucket {
  tokens: number;
  at: number;
}

export class OdohRelayService {
  private targets: Map<string, RelayTarget>;
  private inflight = 0;
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private options: OdohRelayOptions,
    private forwarder: RelayForwarder,
    /** Addresses of listed targets (no addresses of their own), from the relay's own block. */
    private readonly resolve: (host: string) => Promise<string[]> = (host) => Promise.reject(new Error(`no addresses for ${host}`)),
    private readonly now: () => number = () => performance.now(),
  ) {
    this.targets = indexTargets(options.targets);
  }

  update(options: OdohRelayOptions, forwarder: RelayForwarder): void {
    this.forwarder.close();
    this.options = options;
    this.forwarder = forwarder;
    this.targets = indexTargets(options.targets);
  }

  stop(): void {
    this.forwarder.close();
  }

  async serve(request: HttpRequest, clientAddress: string): Promise<HttpReply> {
    if (!this.allow(clientAddress)) return this.refuse(429, 'rate limited', 'too many requests');
    if (request.method !== 'POST' && request.method !== 'GET') return this.refuse(405, 'method', 'method not allowed: oblivious queries are POSTed', { allow: 'POST, GET' });
    const queryAt = request.path.indexOf('?');
    const params = new URLSearchParams(queryAt < 0 ? '' : request.path.slice(queryAt + 1));
    const hosts = params.getAll('targethost');
    const paths = params.getAll('targetpath');
    if (hosts.length !== 1 || paths.length !== 1) return this.refuse(400, 'no target', 'bad request: give one targethost and one targetpath');
    const target = this.targets.get(normalAuthority(hosts[0]!));
    if (!target) return this.refuse(403, 'target not allowed', 'forbidden: this relay does not serve that target');
    const targetPath = paths[0]!;
    if (!PLAIN_PATH.test(targetPath) || targetPath.split('/').includes('..')) return this.refuse(400, 'bad target path', 'bad request: targetpath must be a plain absolute path', {}, target);

    let forward: { method: 'GET' | 'POST'; path: string; body: Buffer | null };
    if (request.method === 'GET') {
      if (targetPath !== CONFIGS_PATH) return this.refuse(405, 'method', `method not allowed: only ${CONFIGS_PATH} is fetched with GET`, { allow: 'POST' }, target);
      forward = { method: 'GET', path: CONFIGS_PATH, body: null };
    } else {
      const type = request.header('content-type')?.split(';')[0]!.trim().toLowerCase();
      if (type !== OBLIVIOUS_MEDIA_TYPE) return this.refuse(415, 'media type', `unsupported media type: a relay passes on ${OBLIVIOUS_MEDIA_TYPE} only`, {}, target);
      const length = request.header('content-length');
      if (length !== undefined && Number(length) > MAX_MESSAGE_BYTES) return this.refuse(413, 'too large', 'payload too large', {}, target);
      const body = await request.readBody(MAX_MESSAGE_BYTES);
      if (!Buffer.isBuffer(body)) return this.refuse(body.status, 'body', body, {}, target);
      if (!isObliviousQuery(body)) return this.refuse(400, 'not an oblivious query', 'bad request: the body is not an oblivious query', {}, target);
      forward = { method: 'POST', path: targetPath, body };
    }

    if (this.inflight >= this.options.maxInflight) return this.refuse(503, 'busy', 'service unavailable: too many requests in flight', { 'retry-after': '1' }, target);
    this.inflight++;
    try {
      let reached = target;
      if (target.addresses.length === 0) {
        try {
          reached = { ...target, addresses: await this.resolve(target.host) };
        } catch (err) {
          return this.fail(502, 'error=dns_error', (err as Error).message, target);
        }
      }
      const { body: answer, cacheControl } = await this.forwarder.send(reached, forward, this.options.timeoutMs);
      if (forward.method === 'POST' && !isObliviousAnswer(answer)) return this.fail(502, 'error=http_protocol_error', 'the target answered something that is not an oblivious answer', target);
      if (odohRelayEvent.hasSubscribers) odohRelayEvent.publish({ event: 'forwarded', target: target.host });
      // Answers are never cached; configs keep the target's lifetime.
      const type = forward.method === 'POST' ? OBLIVIOUS_MEDIA_TYPE : 'application/octet-stream';
      const caching = forward.method === 'GET' && cacheControl ? cacheControl : 'no-cache, no-store';
      return { status: 200, headers: { 'content-type': type, 'content-length': answer.length, 'cache-control': caching }, body: answer };
    } catch (err) {
      const status = (err as { status?: unknown }).status;
      // The target's own refusal (401 when the client's configs are stale) goes back as it is.
      if (typeof status === 'number') return this.fail(status, `received-status=${status}`, `the target answered ${status}`, target, status >= 400 && status <= 599 ? status : 502);
      const timedOut = (err as Error).name === 'UpstreamTimeoutError';
      return this.fail(timedOut ? 504 : 502, timedOut ? 'error=connection_timeout' : 'error=destination_unavailable', (err as Error).message, target);
    } finally {
      this.inflight--;
    }
  }

  /** A token bucket per client address: `ratePerSecond` tokens a second, as many at most. */
  private allow(client: string): boolean {
    const rate = this.options.ratePerSecond;
    const now = this.now();
    let bucket = this.buckets.get(client);
    if (!bucket) {
      if (this.buckets.size >= MAX_TRACKED_CLIENTS) this.buckets.delete(this.buckets.keys().next().value!);
      bucket = { tokens: rate, at: now };
      this.buckets.set(client, bucket);
    } else {
      bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) / 1000) * rate);
      bucket.at = now;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  private refuse(status: number, reason: string, reply: string | HttpReply, headers: Record<string, string> = {}, target?: RelayTarget): HttpReply {
    if (odohRelayEvent.hasSubscribers) odohRelayEvent.publish({ event: 'refused', reason, ...(target ? { target: target.host } : {}) });
    return typeof reply === 'string' ? textReply(status, reply, headers) : reply;
  }

  /** The target could not be asked, or refused: RFC 9209's Proxy-Status says which. */
  private fail(status: number, proxyStatus: string, message: string, target: RelayTarget, replyStatus = status): HttpReply {
    if (odohRelayEvent.hasSubscribers) odohRelayEvent.publish({ event: 'failed', reason: proxyStatus.replace(/^(error|received-status)=/, ''), target: target.host });
    return textReply(replyStatus, `${replyStatus === status && status < 500 ? 'the target refused' : 'bad gateway'}: ${message}`, { 'proxy-status': `veil; ${proxyStatus}` });
  }
}

function indexTargets(targets: readonly RelayTarget[]): Map<string, RelayTarget> {
  return new Map(targets.map((t) => [t.authority, t]));
}

/** `Dns.Example.:443` → `dns.example`; `host:8443` stays. */
function normalAuthority(text: string): string {
  const m = /^(\[[^\]]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(text.trim().toLowerCase());
  if (!m) return '';
  const host = m[1]!.replace(/\.$/, '');
  return m[2] && Number(m[2]) !== 443 ? `${host}:${Number(m[2])}` : host;
}

function isObliviousQuery(body: Buffer): boolean {
  try {
    return parseMessage(body).type === MessageType.query;
  } catch (err) {
    if (err instanceof OdohFormatError) return false;
    throw err;
  }
}

function isObliviousAnswer(body: Buffer): boolean {
  try {
    return parseMessage(body).type === MessageType.response;
  } catch (err) {
    if (err instanceof OdohFormatError) return false;
    throw err;
  }
}
