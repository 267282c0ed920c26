/**
 * `path [{ canary ZONE }]`: names Veil answers itself and never forwards, so a client can see
 * which way its queries go.
 *
 *   - `dig CH TXT NAME`: the path query. NAME is resolved through the rest of this block's chain
 *     (type A; NS for the root) and the answer is a list of TXT strings saying which listener and
 *     transport the path query came in on, which block served NAME, and how NAME was answered:
 *     cache, a local plugin, or which upstream, protocol and relay, whether the query left
 *     encrypted and padded. Its answer itself is not given.
 *   - The canary zone (default `canary.veil.test`): an A query for any name under it is answered
 *     here (192.0.2.1, TTL 0) and remembered (the last 64); the path query of such a name says
 *     whether Veil saw it and how. `veil doctor` looks one up through the system resolver and
 *     asks, to learn whether this machine's DNS really goes through Veil.
 *
 * Both are answered only to clients the block admits: the door applies the block's acl first.
 */
import { Buffer } from 'node:buffer';
import { randomInt } from 'node:crypto';
import type { Directive } from '../../core/config/ast.js';
import { configError, expectArgs, expectNoBlock, readOptions } from '../../core/config/options.js';
import type { RequestContext } from '../../core/context.js';
import { QClass, QType, Rcode, rcodeName, typeName } from '../../core/dns/constants.js';
import { buildQuery, buildReply, errorReply, type WireRecord } from '../../core/dns/message.js';
import { canonicalName, encodeName, isSubdomain, rcodeOf } from '../../core/dns/wire.js';
import { PluginError, WireError } from '../../core/errors.js';
import type { BlockScope, Next, Plugin, PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';
import type { UpstreamSet } from '../../core/upstream/upstream.js';

const NAME = 'path';
export const DEFAULT_CANARY_ZONE = 'canary.veil.test.';
/** The address a canary name resolves to (TEST-NET-1: nothing ever connects to it). */
export const CANARY_ADDRESS = Buffer.from([192, 0, 2, 1]);
/** Canary names remembered; the oldest goes first. */
const CANARY_MEMORY = 64;
/** Protocols whose queries leave encrypted, and padded (EDNS padding, or DNSCrypt's own). */
const ENCRYPTED = new Set(['dot', 'doh', 'dnscrypt', 'odoh']);

export interface PathOptions {
  canaryZone: string;
}

interface Sighting {
  at: number;
  transport: string;
  listener: string;
  client: string;
}

export const pathPlugin: PluginDefinition<PathOptions> = {
  name: NAME,
  once: true,

  parse(directives) {
    const d = directives[0]!;
    expectArgs(NAME, d, 0);
    const options: PathOptions = { canaryZone: DEFAULT_CANARY_ZONE };
    readOptions(NAME, d.block, {
      canary: (line: Directive) => {
        expectNoBlock(NAME, line);
        const [zone] = expectArgs(NAME, line, 1);
        try {
          encodeName(zone!.text);
        } catch (err) {
          if (err instanceof WireError) throw configError(NAME, zone!, `"${zone!.text}" is not a domain name: ${err.message}`);
          throw err;
        }
        options.canaryZone = canonicalName(zone!.text);
        if (options.canaryZone === '.') throw configError(NAME, zone!, 'the canary zone cannot be the root: every name would be a canary');
      },
    });
    return options;
  },

  create(options, scope) {
    const sightings = scope.keep('canary', () => new Map<string, Sighting>());
    return new PathPlugin(options, sightings, scope.upstreams, scope);
  },
};

export class PathPlugin implements Plugin {
  readonly name = NAME;

  constructor(
    private readonly options: PathOptions,
    private readonly sightings: Map<string, Sighting>,
    private readonly upstreams: UpstreamSet,
    private readonly scope: BlockScope,
  ) {}

  /** The canary zone, canonical (`canary.veil.test.`): `veil doctor` reads it. */
  get canaryZone(): string {
    return this.options.canaryZone;
  }

  serve(ctx: RequestContext, next: Next): Promise<Buffer | null> {
    if (ctx.qclass === QClass.CH) return this.chaos(ctx, next);
    if (ctx.qclass === QClass.IN && isSubdomain(ctx.name, this.options.canaryZone)) return Promise.resolve(this.canary(ctx));
    return next(ctx);
  }

  /** An IN query under the canary zone: remembered, and answered here. */
  private canary(ctx: RequestContext): Buffer {
    if (ctx.name !== this.options.canaryZone) {
      this.sightings.delete(ctx.name);
      if (this.sightings.size >= CANARY_MEMORY) this.sightings.delete(this.sightings.keys().next().value!);
      this.sightings.set(ctx.name, { at: Date.now(), transport: ctx.transport, listener: ctx.listener, client: ctx.client.address });
    }
    const answers: WireRecord[] = ctx.type === QType.A ? [{ type: QType.A, ttl: 0, rdata: CANARY_ADDRESS }] : [];
    return buildReply(ctx.query, { questionEnd: ctx.question.end, edns: ctx.edns, authoritative: true, answers });
  }

  /**
   * CHAOS class: TXT is the path query; nothing else is answered. The server-identity names
   * (`version.bind`, `id.server`, RFC 4892), which monitoring tools ask, are not path queries:
   * REFUSED, rather than resolving `version.bind. A` upstream.
   */
  private async chaos(ctx: RequestContext, next: Next): Promise<Buffer> {
    if (ctx.type !== QType.TXT || isSubdomain(ctx.name, 'bind.') || isSubdomain(ctx.name, 'server.')) {
      return errorReply(ctx.query, Rcode.REFUSED, ctx.question.end, ctx.edns);
    }
    const lines = [
      `listener=${ctx.listener || 'none'}`,
      `transport=${ctx.transport}`,
      `client=${ctx.client.address}`,
      `block=${ctx.server}`,
      ...(isSubdomain(ctx.name, this.options.canaryZone) ? [...this.canaryReport(ctx.name), this.upstreamSummary(ctx.name)] : await this.resolve(ctx, next)),
    ];
    const answers = lines.map((line): WireRecord => ({ type: QType.TXT, qclass: QClass.CH, ttl: 0, rdata: txt(line) }));
    return buildReply(ctx.query, { questionEnd: ctx.question.end, edns: ctx.edns, answers });
  }

  private canaryReport(name: string): string[] {
    const seen = this.sightings.get(name);
    if (!seen) return [`canary=not seen`];
    const ago = Math.max(0, Math.round((Date.now() - seen.at) / 1000));
    return [`canary=seen`, `seen_listener=${seen.listener || 'none'}`, `seen_transport=${seen.transport}`, `seen_client=${seen.client}`, `seen_ago=${ago}s`];
  }

  /** Resolves the name through the rest of the chain, as a client would ask it, and says how. */
  private async resolve(ctx: RequestContext, next: Next): Promise<string[]> {
    const type = ctx.name === '.' ? QType.NS : QType.A;
    const query = buildQuery(ctx.name, type, {
      id: randomInt(0x10000),
      checkingDisabled: ctx.checkingDisabled,
      ...(ctx.edns ? { edns: { dnssecOk: ctx.dnssecOk } } : {}),
    });
    const inner = ctx.withQuery(query);
    const lines = [`query=${ctx.name} ${typeName(type)}`];
    let answer: Buffer | null = null;
    try {
      answer = await next(inner);
    } catch (error) {
      const cause = error instanceof PluginError ? error.cause : error;
      lines.push(`error=${(cause instanceof Error ? cause.message : String(cause)).slice(0, 200)}`);
    } finally {
      inner.finish();
    }
    const meta = inner.meta;
    const by = meta.cacheHit ? 'cache' : (meta.answeredBy ?? 'none');
    lines.push(`answered_by=${by}`, `cache=${meta.cacheHit ? (meta.stale ? 'hit (stale)' : 'hit') : 'miss'}`);
    if (meta.blockedBy) lines.push(`blocked_by=${meta.blockedBy}`);
    if (!meta.cacheHit && meta.upstream) {
      const upstream = this.upstreams.get(meta.upstream);
      const protocol = meta.upstreamProtocol ?? upstream?.protocol ?? 'unknown';
      const encrypted = ENCRYPTED.has(protocol);
      lines.push(
        `left_veil=yes`,
        `upstream=${meta.upstream}`,
        `protocol=${protocol}`,
        ...(upstream ? [`address=${upstream.address}`] : []),
        `relay=${meta.relay ?? 'none'}`,
        `encrypted=${encrypted ? 'yes' : 'no'}`,
        `padded=${encrypted ? 'yes' : 'no'}`,
        `client_subnet=removed`,
        `attempts=${meta.attempts ?? 1}`,
      );
    } else if (meta.cacheHit || answer !== null) {
      lines.push('left_veil=no');
    } else if (meta.attempts) {
      lines.push('left_veil=tried', `attempts=${meta.attempts}`);
    }
    if (answer) lines.push(`rcode=${rcodeName(rcodeOf(answer))}`);
    lines.push(this.upstreamSummary(ctx.name));
    return lines;
  }

  /** How many of the upstreams that serve the name can take a query now, and how many through relays. */
  private upstreamSummary(name: string): string {
    const policy = this.scope.service(Services.upstreamPolicy)!;
    const candidates = this.upstreams.candidates(name);
    const usable = candidates.filter((u) => u.usable !== false && policy.healthy(u));
    const relayed = usable.filter((u) => typeof u.relay === 'string');
    return `upstreams=${usable.length} usable of ${candidates.length}, ${relayed.length} through relays`;
  }
}

/** One character-string of TXT RDATA (at most 255 bytes). */
function txt(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8').subarray(0, 255);
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}
