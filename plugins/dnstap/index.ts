/**
 * `dnstap unix:///PATH | tcp://IP:PORT [full]`: every query of the block as dnstap messages
 * (client query and response, and a forwarder query and response per upstream attempt, with the
 * upstream's protocol) over Frame Streams, as CoreDNS, dnsdist, Unbound and BIND send them.
 * `full` adds the DNS messages themselves (wire format); without it only who, when and how.
 *
 *     dnstap unix:///run/dnstap.sock|tcp://IP:PORT [full] {
 *         queue N        # messages waiting for the reader at most; default 10000
 *     }
 *
 * The plugin serves nothing: it listens on the diagnostics channels (core/events.ts), so a
 * block without it pays nothing and a block with it pays an encoding per message, queued for
 * a writer that never makes a query wait (lib/dnstap/writer.ts).
 */
import { Buffer } from 'node:buffer';
import net from 'node:net';
import path from 'node:path';
import { blockServerName } from '../../core/block.js';
import type { Token } from '../../core/config/ast.js';
import { configError, expectArgs, parseInteger, readOptions } from '../../core/config/options.js';
import type { RequestContext } from '../../core/context.js';
import { queryDone, upstreamAttempt } from '../../core/events.js';
import type { Logger } from '../../core/logger.js';
import { AddressError, parseEndpoint } from '../../core/net/address.js';
import type { Plugin, PluginDefinition } from '../../core/plugin.js';
import { serverService } from '../../core/services.js';
import type { PluginCounter } from '../../core/plugin-metrics.js';
import type { Upstream } from '../../core/upstream/upstream.js';
import type { DnstapEvent } from '../../lib/dnstap/message.js';
import { describeTarget, type DnstapTarget, type DnstapWriter } from '../../lib/dnstap/writer.js';

/** Messages waiting for a slow or absent reader, by default; beyond them new ones are dropped (counted). */
const QUEUE_FRAMES = 10_000;
import { veilVersion } from '../../lib/version.js';

const NAME = 'dnstap';

export interface DnstapOptions {
  target: DnstapTarget;
  full: boolean;
  /** Messages waiting for the reader at most (the first block naming a reader sets it). */
  queue: number;
}

export const dnstapPlugin: PluginDefinition<DnstapOptions> = {
  name: NAME,
  once: true,
  roles: ['observe'],

  parse(directives) {
    const d = directives[0]!;
    const [where, word] = expectArgs(NAME, d, 1, 2) as [Token, Token | undefined];
    if (word && word.text !== 'full') throw configError(NAME, word, `unexpected "${word.text}" (the only word allowed after the address is "full")`);
    let queue = QUEUE_FRAMES;
    readOptions(NAME, d.block, { queue: (line) => (queue = parseInteger(NAME, expectArgs(NAME, line, 1)[0]!, 16, 1_000_000)) });
    return { target: parseTarget(where), full: word !== undefined, queue };
  },

  create(options, scope) {
    const sent = scope.metrics.counter('messages_total', 'dnstap messages handed to the writer (queued) or dropped because its queue was full.', ['result']);
    return new DnstapPlugin(options, blockServerName(scope.block), scope.logger, sent, scope.service(DnstapWritersService));
  },
};

/** `unix:///abs/path` (or a path relative to the Corefile), or `tcp://IP:PORT`; never a host name. */
function parseTarget(token: Token): DnstapTarget {
  const text = token.text;
  if (text.startsWith('unix://') || text.startsWith('/')) {
    const file = text.startsWith('unix://') ? text.slice('unix://'.length) : text;
    if (file === '' || file.includes('\0')) throw configError(NAME, token, `"${text}" names no socket file: unix:///run/dnstap.sock`);
    const resolved = path.resolve(path.dirname(path.resolve(token.file)), file);
    // sun_path holds 107 bytes and a NUL.
    if (Buffer.byteLength(resolved) > 107) throw configError(NAME, token, `the socket path ${resolved} is longer than a Unix socket address allows (107 bytes)`);
    return { kind: 'unix', path: resolved };
  }
  let endpoint;
  try {
    endpoint = parseEndpoint(text, null);
  } catch (err) {
    if (err instanceof AddressError) throw configError(NAME, token, `${err.message}; dnstap takes unix:///PATH or tcp://IP:PORT`);
    throw err;
  }
  if (endpoint.scheme !== 'tcp') throw configError(NAME, token, `dnstap takes unix:///PATH or tcp://IP:PORT, not ${endpoint.scheme}://`);
  if (endpoint.path !== '') throw configError(NAME, token, 'a tcp:// address has no path');
  return { kind: 'tcp', host: endpoint.host, port: endpoint.port };
}

/** A server's writers by reader, shared by the blocks (and the reloads) that name the same reader. */
export class DnstapWriters {
  private readonly writers = new Map<string, { writer: DnstapWriter; holders: number }>();

  /** The writer for `key`, made (and started) by `make` when nobody holds it; `made` says which. */
  hold(key: string, make: () => DnstapWriter): { writer: DnstapWriter; made: boolean } {
    let shared = this.writers.get(key);
    const made = !shared;
    if (!shared) {
      shared = { writer: make(), holders: 0 };
      this.writers.set(key, shared);
      shared.writer.start();
    }
    shared.holders++;
    return { writer: shared.writer, made };
  }

  /** Lets go of the writer for `key`; the last holder stops it (sending what is queued). */
  async release(key: string): Promise<void> {
    const shared = this.writers.get(key);
    if (!shared || --shared.holders > 0) return;
    this.writers.delete(key);
    await shared.writer.stop();
  }
}

export const DnstapWritersService = serverService('veil.dnstap.Writers', () => new DnstapWriters());

const SOCKET_PROTOCOL: Record<string, number> = { udp: 1, tcp: 2, tls: 3, dot: 3, https: 4, http: 4, doh: 4, odoh: 4 };

class DnstapPlugin implements Plugin {
  readonly name = NAME;
  private writer: DnstapWriter | null = null;
  private encode: ((event: DnstapEvent) => Uint8Array) | null = null;
  private frame: ((payload: Uint8Array) => Buffer) | null = null;
  private readonly onQuery = (m: { ctx: RequestContext; response: Buffer | null; durationMs: number }): void => {
    if (m.ctx.server === this.server) this.clientMessages(m.ctx, m.response, m.durationMs);
  };
  private readonly onAttempt = (m: { ctx: RequestContext; upstream: Upstream; rttMs: number; query?: Buffer; answer?: Buffer }): void => {
    if (m.ctx.server === this.server) this.forwarderMessages(m.upstream, m.rttMs, m.query, m.answer);
  };

  constructor(
    private readonly options: DnstapOptions,
    private readonly server: string,
    private readonly logger: Logger,
    private readonly counter: PluginCounter,
    private readonly writers: DnstapWriters,
  ) {}

  async start(): Promise<void> {
    const [{ encodeDnstap }, { dataFrame }, { DnstapWriter }] = await Promise.all([
      import('../../lib/dnstap/message.js'),
      import('../../lib/dnstap/frame-streams.js'),
      import('../../lib/dnstap/writer.js'),
    ]);
    const who = { version: Buffer.from(`veil ${veilVersion()}`) };
    this.encode = (event) => encodeDnstap(event, who);
    this.frame = dataFrame;
    const key = describeTarget(this.options.target);
    const { writer, made } = this.writers.hold(key, () => new DnstapWriter(this.options.target, this.logger, this.options.queue));
    if (made) this.logger.info(`sending dnstap${this.options.full ? ' (full messages)' : ''} to ${key}`);
    this.writer = writer;
    queryDone.subscribe(this.onQuery as never);
    upstreamAttempt.subscribe(this.onAttempt as never);
  }

  async stop(): Promise<void> {
    if (!this.writer) return;
    queryDone.unsubscribe(this.onQuery as never);
    upstreamAttempt.unsubscribe(this.onAttempt as never);
    const key = this.writer.label;
    this.writer = null;
    await this.writers.release(key);
  }

  private send(event: DnstapEvent): void {
    const accepted = this.writer!.enqueue(this.frame!(this.encode!(event)));
    this.counter.inc({ result: accepted ? 'queued' : 'dropped' });
  }

  private clientMessages(ctx: RequestContext, response: Buffer | null, durationMs: number): void {
    const now = Date.now();
    const family = ctx.client.family === 'IPv6' ? 2 : 1;
    const base: DnstapEvent = {
      type: 5,
      family,
      protocol: ctx.transport === 'dnscrypt' ? (ctx.datagram ? 5 : 6) : (SOCKET_PROTOCOL[ctx.transport] ?? (ctx.datagram ? 1 : 2)),
      queryAddress: addressBytes(ctx.client.address),
      queryPort: ctx.client.port,
      queryTime: now - durationMs,
    };
    const full = this.options.full;
    this.send(full ? { ...base, queryMessage: ctx.query } : base);
    if (response) this.send({ ...base, type: 6, responseTime: now, ...(full ? { responseMessage: response } : {}) });
  }

  private forwarderMessages(upstream: Upstream, rttMs: number, query: Buffer | undefined, answer: Buffer | undefined): void {
    const now = Date.now();
    const server = upstreamAddress(upstream.address);
    const base: DnstapEvent = {
      type: 7,
      protocol: upstream.protocol === 'dnscrypt' ? 5 : (SOCKET_PROTOCOL[upstream.protocol] ?? 1),
      queryTime: now - rttMs,
      ...(server ? { family: server.family, responseAddress: server.bytes, responsePort: server.port } : {}),
    };
    const full = this.options.full;
    this.send(full && query ? { ...base, queryMessage: query } : base);
    if (answer) this.send({ ...base, type: 8, responseTime: now, ...(full ? { responseMessage: answer } : {}) });
  }
}

/** An IP address as dnstap carries it: 4 or 16 bytes. */
function addressBytes(address: string): Buffer | undefined {
  const kind = net.isIP(address);
  if (kind === 4) return Buffer.from(address.split('.').map(Number));
  if (kind !== 6) return undefined;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), Buffer.from(mapped[1]!.split('.').map(Number))]);
  const [head, tail] = address.split('::') as [string, string | undefined];
  const words = (text: string | undefined) => (text ? text.split(':').map((w) => parseInt(w, 16)) : []);
  const left = words(head);
  const right = words(tail);
  const all = tail === undefined ? left : [...left, ...new Array(8 - left.length - right.length).fill(0), ...right];
  const bytes = Buffer.alloc(16);
  all.forEach((word, i) => bytes.writeUInt16BE(word, i * 2));
  return bytes;
}

/** The upstream's IP and port from `IP:PORT`, `[IPv6]:PORT` or a URL with an IP host; else undefined. */
function upstreamAddress(text: string): { family: number; bytes: Buffer; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:/[\]]+):(\d+)$/.exec(text) ?? /^[a-z]+:\/\/\[?([0-9a-f.:]+?)\]?(?::(\d+))?(?:\/|$)/i.exec(text);
  if (!m) return undefined;
  const bytes = addressBytes(m[1]!);
  if (!bytes) return undefined;
  return { family: bytes.length === 4 ? 1 : 2, bytes, port: m[2] ? Number(m[2]) : 443 };
}
