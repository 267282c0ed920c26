/**
 * The block's ODoH relays and the route each target takes through them, with anonymize's
 * semantics: a target's own route, else `*`'s, else every relay (`via *`); the relays of a
 * route in a random order picked once and held, so queries share the relay's HTTP/2 session,
 * until that relay fails and the next one takes over. With resolver lists, `relay NAME` takes
 * the relay's stamp from them and `via *` takes every listed ODoH relay too. `direct` in a
 * route (the target itself, which then sees the client's address) is tried only after every
 * relay of the route, and only when the route names it: never a silent fallback.
 */
import { randomInt } from 'node:crypto';
import type { Logger } from '../../core/logger.js';
import type { SourceCatalog } from '../../lib/sources/catalog.js';
import { HttpsConnections } from '../../lib/https-client/connections.js';
import type { TlsContexts } from '../../lib/tls/contexts.js';
import { DIRECT, NAME, relayFromStamp, type RelaySpec, type RouteSpec } from './config.js';

/** One relay, reached over the DoH client's HTTP/2 pool. */
export class Relay {
  readonly connections: HttpsConnections;

  constructor(
    readonly spec: Omit<RelaySpec, 'token'> & { name: string },
    logger: Logger,
    tls: TlsContexts,
  ) {
    this.connections = new HttpsConnections({
      name: `${NAME} relay ${spec.name}`,
      label: `https://${spec.authority}${spec.path}`,
      authority: spec.authority,
      identity: { serverName: spec.host, extraCa: spec.extraCa, pins: spec.pins, certHashes: spec.certHashes },
      addresses: spec.addresses,
      port: spec.port,
      pool: 1,
      ...(spec.http2 ? { http2: spec.http2 } : {}),
      logger,
      tls,
    });
  }

  get name(): string {
    return this.spec.name;
  }

  /** The relay's URL for a request to `targetAuthority` at `targetPath` (RFC 9230 §4.1). */
  pathFor(targetAuthority: string, targetPath: string): string {
    const separator = this.spec.path.includes('?') ? '&' : '?';
    return `${this.spec.path}${separator}targethost=${encodeURIComponent(targetAuthority)}&targetpath=${encodeURIComponent(targetPath)}`;
  }

  close(): void {
    this.connections.close();
  }
}

/** A hop a query may take: a relay, or the target itself when its route says `direct`. */
export type Hop = Relay | typeof DIRECT;

export class RelayDirectory {
  private readonly specs: Map<string, RelaySpec>;
  /** Built relays by name, with what they were built from (a listed relay's stamp changes). */
  private readonly built = new Map<string, { from: string; relay: Relay }>();
  /** Per target: its relays in the order held (the first is the one in use). */
  private readonly held = new Map<string, string[]>();
  private readonly said = new Map<string, string>();

  constructor(
    relays: readonly RelaySpec[],
    private readonly routes: readonly RouteSpec[],
    private readonly catalog: SourceCatalog | null,
    private readonly logger: Logger,
    private readonly tls: TlsContexts,
  ) {
    this.specs = new Map(relays.map((r) => [r.name, r]));
  }

  /** The route of a target: its own, else `*`'s, else every relay. */
  private routeOf(target: string): RouteSpec | { via: string[]; wildcard: true } {
    return this.routes.find((r) => r.server.text === target) ?? this.routes.find((r) => r.server.text === '*') ?? { via: [], wildcard: true };
  }

  /** The hops to try for `target`, in order; empty when no relay is available (and no `direct`). */
  hops(target: string): Hop[] {
    const route = this.routeOf(target);
    const names = route.via.filter((n) => n !== DIRECT);
    if (route.wildcard) names.push(...this.specs.keys(), ...this.listedRelayNames());
    const relays = [...new Set(names)].flatMap((name) => {
      const relay = this.relay(name);
      return relay ? [relay] : [];
    });
    const order = this.order(target, relays.map((r) => r.name));
    const byName = new Map(relays.map((r) => [r.name, r]));
    const hops: Hop[] = order.map((name) => byName.get(name)!);
    if (route.via.includes(DIRECT)) hops.push(DIRECT);
    const line = `${target} via ${hops.map((h) => (h === DIRECT ? 'direct' : h.name)).join(', ') || 'no relay'}`;
    if (this.said.get(target) !== line) {
      this.said.set(target, line);
      this.logger.info(line);
    }
    return hops;
  }

  /** The relay in use for `target` failed: the next one takes over. */
  failed(target: string, hop: Hop): void {
    if (hop === DIRECT) return;
    const order = this.held.get(target);
    if (!order || order[0] !== hop.name) return;
    order.push(order.shift()!);
  }

  /** The held order, kept while the set of relays is the same; a new random one otherwise. */
  private order(target: string, names: string[]): string[] {
    const held = this.held.get(target);
    if (held && held.length === names.length && names.every((n) => held.includes(n))) return held;
    const start = names.length ? randomInt(names.length) : 0;
    const order = [...names.slice(start), ...names.slice(0, start)];
    this.held.set(target, order);
    return order;
  }

  private relay(name: string): Relay | null {
    const spec = this.specs.get(name);
    let from: string;
    let resolved: Omit<RelaySpec, 'token'> & { name: string };
    if (spec && !spec.listed) {
      from = 'line';
      resolved = spec;
    } else {
      const entry = this.catalog?.find(name)?.entry;
      const index = entry?.stamps.findIndex((s) => s.protocol === 'odohRelay') ?? -1;
      if (!entry || index < 0) return null;
      from = entry.stampTexts[index]!;
      const existing = this.built.get(name);
      if (existing?.from === from) return existing.relay;
      try {
        const token = spec?.token ?? { text: from, file: 'lists', line: 0, column: 0, quoted: false, endLine: 0 };
        resolved = { ...relayFromStamp(entry.stamps[index]!, token, spec?.bootstrap ?? null, spec ?? { extraCa: [], pins: [], certHashes: [] }), name, ...(spec?.http2 ? { http2: spec.http2 } : {}) };
      } catch (err) {
        this.sayOnce(`relay:${name}`, `relay ${name} from the lists cannot be used: ${(err as Error).message}`);
        return null;
      }
    }
    const existing = this.built.get(name);
    if (existing?.from === from) return existing.relay;
    existing?.relay.close();
    const relay = new Relay(resolved, this.logger, this.tls);
    this.built.set(name, { from, relay });
    return relay;
  }

  private listedRelayNames(): string[] {
    if (!this.catalog) return [];
    return this.catalog
      .all()
      .filter((list) => list.state !== 'unavailable')
      .flatMap((list) => list.entries.filter((e) => e.stamps.some((s) => s.protocol === 'odohRelay')).map((e) => e.name));
  }

  private sayOnce(key: string, line: string): void {
    if (this.said.get(key) === line) return;
    this.said.set(key, line);
    this.logger.warn(line);
  }

  close(): void {
    for (const { relay } of this.built.values()) relay.close();
    this.built.clear();
  }
}
