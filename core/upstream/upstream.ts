/**
 * Upstreams are values: a protocol plugin (forward, dot, doh, odoh, dnscrypt) turns its
 * directive into named `Upstream`s (most extend `BaseUpstream`, core/upstream/base.ts) and adds
 * them to the block's `UpstreamSet`. The block's `UpstreamPolicy` (in-order failover unless
 * `loadbalance` installs another) decides which one gets each query.
 */
import type { RequestContext } from '../context.js';
import { isSubdomain } from '../dns/wire.js';

export interface Upstream {
  /** Unique within the server block; used in logs, metrics and the `log` line. */
  readonly name: string;
  /** `udp`, `tcp`, `dot`, `doh`, `dnscrypt`, … */
  readonly protocol: string;
  /** Where it is, for people: `127.0.0.1:5300`, `https://dns.example/dns-query`. */
  readonly address: string;
  /**
   * Sends `query` (wire form, the client's ID) and resolves with the answer, ID restored to the
   * query's. Must settle by the context's deadline; rejects with a VeilError on failure.
   */
  exchange(query: Buffer, ctx: RequestContext): Promise<Buffer>;
  /**
   * False while the upstream cannot take a query and is left out of its block (a DNSCrypt server
   * that cannot be reached through its relays, with anonymize's skip_incompatible): the upstream
   * stage passes over it without an attempt, and readiness (`/ready`) counts it out. Absent
   * means always usable.
   */
  readonly usable?: boolean;
  /**
   * The relay its packets go through now (Anonymized DNSCrypt), null when they go direct; absent
   * for protocols that have no relays. For the path query and `veil doctor`.
   */
  readonly relay?: string | null;
  /** Opens pools, fetches certificates: called once before listeners bind. */
  start?(): Promise<void> | void;
  /**
   * Drains: takes no new exchange, lets those under way finish, then closes its connections;
   * resolves when it has (never rejects). For a reload's old configuration, and an upstream a
   * list no longer names or names with another stamp.
   */
  close?(): Promise<void> | void;
  /** Closes its connections now: exchanges under way fail at once. For a server that stops. */
  destroy?(): void;
}

interface Entry {
  readonly upstream: Upstream;
  readonly zone: string;
}

/** The upstreams of one server block, each optionally limited to names under a zone. */
export class UpstreamSet {
  private readonly entries: Entry[] = [];
  /** Candidates per zone, computed once: every query for that zone gets the same array. */
  private readonly groups = new Map<string, readonly Upstream[]>();
  private zonesByLength: string[] = [];

  add(upstream: Upstream, zone = '.'): void {
    if (this.entries.some((e) => e.upstream.name === upstream.name)) {
      throw new Error(`an upstream named "${upstream.name}" already exists in this server block`);
    }
    this.entries.push({ upstream, zone });
    this.groups.clear();
    this.zonesByLength = [...new Set(this.entries.map((e) => e.zone))].sort((a, b) => b.length - a.length);
  }

  /** Takes an upstream out (a list that no longer names it); the caller stops it. */
  remove(name: string): void {
    const index = this.entries.findIndex((e) => e.upstream.name === name);
    if (index < 0) return;
    this.entries.splice(index, 1);
    this.groups.clear();
    this.zonesByLength = [...new Set(this.entries.map((e) => e.zone))].sort((a, b) => b.length - a.length);
  }

  has(name: string): boolean {
    return this.entries.some((e) => e.upstream.name === name);
  }

  get(name: string): Upstream | undefined {
    return this.entries.find((e) => e.upstream.name === name)?.upstream;
  }

  get all(): readonly Upstream[] {
    return this.entries.map((e) => e.upstream);
  }

  get size(): number {
    return this.entries.length;
  }

  /** The zones upstreams were added for, longest first; `candidates(zone)` gives each group. */
  get zones(): readonly string[] {
    return this.zonesByLength;
  }

  /**
   * The upstreams that may answer `name`: those of the longest zone containing it, in the
   * order they were declared. Empty when none covers the name.
   */
  candidates(name: string): readonly Upstream[] {
    for (const zone of this.zonesByLength) {
      if (!isSubdomain(name, zone)) continue;
      let group = this.groups.get(zone);
      if (!group) {
        group = this.entries.filter((e) => e.zone === zone).map((e) => e.upstream);
        this.groups.set(zone, group);
      }
      return group;
    }
    return [];
  }

  async start(): Promise<void> {
    await Promise.all(this.entries.map((e) => e.upstream.start?.()));
  }

  /** Drains every upstream (see `Upstream.close`). */
  async close(): Promise<void> {
    await Promise.allSettled(this.entries.map((e) => e.upstream.close?.()));
  }

  /** Closes every upstream now; exchanges under way fail. */
  destroy(): void {
    for (const { upstream } of this.entries) {
      try {
        upstream.destroy?.();
      } catch {
        // best effort: one upstream's failure must not keep the others open
      }
    }
  }
}

export interface AttemptOutcome {
  /** True when the upstream gave a usable answer (not SERVFAIL/REFUSED, no error). */
  ok: boolean;
  /** Milliseconds the attempt took. */
  rttMs: number;
  error?: unknown;
}

/**
 * Chooses the order in which a query tries the candidates. The default tries them as declared;
 * the `loadbalance` plugin registers policies that spread load and track health.
 */
export abstract class UpstreamPolicy {
  abstract readonly name: string;
  /** The attempt order for one query. May omit upstreams that are marked down. */
  abstract order(candidates: readonly Upstream[], ctx: RequestContext): Iterable<Upstream>;
  /** Called after every attempt, in the order attempts finish. */
  report(_upstream: Upstream, _outcome: AttemptOutcome): void {}
  /** Called when an exchange starts, for policies that count in-flight queries. */
  begin(_upstream: Upstream): void {}
  /** False while the policy keeps this upstream out of rotation (marked down); for readiness. */
  healthy(_upstream: Upstream): boolean {
    return true;
  }
  start?(): Promise<void> | void;
  stop?(): Promise<void> | void;
}

/** Tries the candidates in the order the Corefile declares them. */
export class InOrderPolicy extends UpstreamPolicy {
  readonly name = 'in_order';
  order(candidates: readonly Upstream[]): Iterable<Upstream> {
    return candidates;
  }
}
