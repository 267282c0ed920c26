/**
 * What the running server knows about itself, for readiness checks (`/ready` of the health
 * plugin): whether it is starting, serving or stopping, which listeners of the active
 * configuration are bound, and the active blocks' upstreams and policies. The server keeps it
 * current; it lives as long as the server, across reloads.
 */
import type { UpstreamPolicy, UpstreamSet } from './upstream/upstream.js';

export interface BlockUpstreams {
  /** The block's keys as written (`. corp.test:53`). */
  readonly server: string;
  readonly upstreams: UpstreamSet;
  readonly policy: UpstreamPolicy;
}

export interface Readiness {
  ready: boolean;
  /** Why not, one line each, for people; empty when ready. */
  reasons: string[];
}

export class ServerState {
  private phase: 'starting' | 'serving' | 'stopping' = 'starting';
  /** Configured listener address → bound yet. */
  private readonly listeners = new Map<string, boolean>();
  private blocks: readonly BlockUpstreams[] = [];

  /** A configuration becomes the active one; `bound` says whether its listeners already are. */
  activate(blocks: readonly BlockUpstreams[], listeners: Iterable<string>, bound: boolean): void {
    this.blocks = blocks;
    this.listeners.clear();
    for (const address of listeners) this.listeners.set(address, bound);
    if (bound && this.phase === 'starting') this.phase = 'serving';
  }

  listenerBound(address: string): void {
    if (this.listeners.has(address)) this.listeners.set(address, true);
    if (this.phase === 'starting' && [...this.listeners.values()].every(Boolean)) this.phase = 'serving';
  }

  stopping(): void {
    this.phase = 'stopping';
  }

  /**
   * Ready when serving, every listener is bound, and each zone a block forwards has at least one
   * upstream that is usable and not marked down by the block's policy. A block without
   * upstreams needs none.
   */
  readiness(): Readiness {
    const reasons: string[] = [];
    if (this.phase === 'stopping') return { ready: false, reasons: ['shutting down'] };
    const unbound = [...this.listeners].filter(([, bound]) => !bound).map(([address]) => address);
    if (unbound.length > 0) reasons.push(`not listening yet on ${unbound.join(', ')}`);
    else if (this.phase === 'starting') reasons.push('starting');
    for (const block of this.blocks) {
      for (const zone of block.upstreams.zones) {
        const group = block.upstreams.candidates(zone);
        if (group.some((u) => u.usable !== false && block.policy.healthy(u))) continue;
        const states = group.map((u) => `${u.name}: ${u.usable === false ? 'not usable' : 'marked down'}`);
        reasons.push(`block "${block.server}": no usable upstream for ${zone} (${states.join(', ')})`);
      }
    }
    return { ready: reasons.length === 0, reasons };
  }
}
