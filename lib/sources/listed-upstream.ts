/**
 * An upstream named in a resolver list rather than written as a stamp (`server NAME` in
 * dnscrypt, doh or dot). The lists load after the upstreams start (from the cache at once, from
 * the network later), so the real upstream is built when the list brings the entry, and built
 * again when the list changes its stamp. Until then the upstream is not usable: the stage passes
 * over it, and a query that still reaches it fails with the reason (never a fallback).
 */
import type { RequestContext } from '../../core/context.js';
import { UpstreamUnavailableError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Upstream } from '../../core/upstream/upstream.js';
import type { Stamp } from '../stamps.js';
import type { SourceCatalog } from './catalog.js';
import { stampOf } from './selection.js';

export class ListedUpstream<P extends Stamp['protocol']> implements Upstream {
  private inner: Upstream | null = null;
  private stampText: string | null = null;
  private unsubscribe: (() => void) | null = null;
  private said: string | null = null;

  constructor(
    readonly name: string,
    readonly protocol: string,
    private readonly stampProtocol: P,
    private readonly catalog: SourceCatalog,
    private readonly build: (stamp: Extract<Stamp, { protocol: P }>) => Upstream,
    private readonly logger: Logger,
  ) {}

  get address(): string {
    return this.inner?.address ?? 'from the lists';
  }

  get usable(): boolean {
    return this.inner !== null && this.inner.usable !== false;
  }

  get relay(): string | null | undefined {
    return this.inner?.relay;
  }

  exchange(query: Buffer, ctx: RequestContext): Promise<Buffer> {
    if (!this.inner) return Promise.reject(new UpstreamUnavailableError(`${this.name}: ${this.why()}`));
    return this.inner.exchange(query, ctx);
  }

  async start(): Promise<void> {
    this.unsubscribe = this.catalog.onChange(() => void this.update());
    await this.update();
  }

  async close(): Promise<void> {
    const inner = this.detach();
    await inner?.close?.();
  }

  destroy(): void {
    this.detach()?.destroy?.();
  }

  /** Follows the lists no more; returns the upstream built so far. */
  private detach(): Upstream | null {
    this.unsubscribe?.();
    this.unsubscribe = null;
    const inner = this.inner;
    this.inner = null;
    return inner;
  }

  /** Builds the upstream from the entry's stamp when it appears or changes. */
  private async update(): Promise<void> {
    const found = this.catalog.find(this.name);
    const selected = found ? stampOf(found.entry, this.stampProtocol) : null;
    if (!selected) {
      // Before the lists have loaded there is nothing to say yet.
      if (this.catalog.all().length > 0) this.say(this.why());
      return;
    }
    if (selected.stampText === this.stampText) return;
    this.stampText = selected.stampText;
    let next: Upstream;
    try {
      next = this.build(selected.stamp);
    } catch (err) {
      // A stamp this protocol cannot use (no address, say): unusable until the list changes.
      this.say(`the stamp in list ${found!.list.name} cannot be used: ${(err as Error).message}`);
      return;
    }
    const previous = this.inner;
    this.inner = next;
    await next.start?.();
    // Queries already sent through the previous one finish there; it closes after them.
    void previous?.close?.();
    this.say(`from list ${found!.list.name}: ${next.address}`);
  }

  private why(): string {
    const found = this.catalog.find(this.name);
    if (found) return `the list ${found.list.name} has no ${this.stampProtocol} stamp for it`;
    return this.catalog.explain(this.name);
  }

  /** Logs a change of state once. */
  private say(message: string): void {
    if (message === this.said) return;
    this.said = message;
    this.logger.info(`${this.name}: ${message}`);
  }
}
