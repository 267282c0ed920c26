/**
 * One list: read from its file or its cache at creation, fetched at start and then every
 * `refresh`, used only when its minisign signature verifies. A bad download or signature keeps
 * the last good copy; a list that never verified stays unavailable and says why. A download
 * signed before the copy held is refused too, as dnscrypt-proxy does: an old list, validly
 * signed, replayed by a mirror or on the way, would bring back servers since removed.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import dnsPacket from 'dns-packet';
import type { Clock } from '../../core/clock.js';
import { RequestContext } from '../../core/context.js';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import type { Logger } from '../../core/logger.js';
import type { UpstreamSet } from '../../core/upstream/upstream.js';
import { MinisignError, signedAt, verifyMinisign } from '../../lib/minisign.js';
import type { SourceCatalog, SourceListView } from '../../lib/sources/catalog.js';
import { fetchHttps } from '../../lib/sources/fetch.js';
import { parseList } from '../../lib/sources/list.js';
import type { ListOptions } from './index.js';

const FETCH_TIMEOUT_MS = 15_000;
const isoTime = (seconds: number): string => new Date(Math.min(seconds, 8.64e12) * 1000).toISOString();
/** After a failed fetch, the next one comes sooner than `refresh`: 1 minute, doubling to an hour. */
const FIRST_RETRY_MS = 60_000;
const MAX_RETRY_MS = 3_600_000;
const MAX_LIST_BYTES = 8 << 20;
/** Protocols that may carry the look-up of a list's host: never plaintext. */
const ENCRYPTED = new Set(['dot', 'doh', 'dnscrypt']);

export class ListSource {
  private timer: NodeJS.Timeout | null = null;
  private view: SourceListView;
  /** Fetches failed in a row (0 after a verified one). */
  private failures = 0;

  constructor(
    private readonly options: ListOptions,
    private readonly catalog: SourceCatalog,
    private readonly logger: Logger,
    private readonly upstreams: UpstreamSet,
    private readonly clock: Clock,
  ) {
    this.view = { name: options.name, origin: options.url?.href ?? options.file!, state: 'unavailable', entries: [], error: 'not fetched yet', trustedComment: null };
    this.loadLocal();
  }

  /** The local file, or the cached copy of a URL list, if it verifies. */
  private loadLocal(): void {
    const file = this.options.file ?? this.options.cache;
    if (!file) return;
    let body: Buffer;
    try {
      body = readFileSync(file);
    } catch (err) {
      this.publish({ state: 'unavailable', error: this.options.file ? `cannot read ${file}: ${(err as Error).message}` : 'no cached copy yet' });
      return;
    }
    try {
      const comment = this.verify(body, () => readFileSync(`${file}.minisig`, 'utf8'));
      this.accept(body, comment, this.options.file ? 'verified' : 'cached');
    } catch (err) {
      this.publish({ state: 'unavailable', error: (err as Error).message });
      this.logger.warn(`list ${this.options.name}: ${file} is not usable: ${(err as Error).message}`);
    }
  }

  private verify(body: Buffer, signature: () => string): string | null {
    if (!this.options.key) return null; // a local file without a key is trusted as the user's own
    let text: string;
    try {
      text = signature();
    } catch (err) {
      throw new MinisignError(`no signature: ${(err as Error).message}`);
    }
    return verifyMinisign(body, text, this.options.key);
  }

  private accept(body: Buffer, trustedComment: string | null, state: 'verified' | 'cached'): void {
    const entries = parseList(body.toString('utf8'), this.options.prefix);
    this.publish({ state, entries, error: null, trustedComment });
    this.logger.info(`list ${this.options.name}: ${entries.length} entries, ${state === 'verified' ? 'verified' : 'from the verified cache'}${trustedComment ? ` (${trustedComment.replace(/\t/g, ' ')})` : ''}`);
  }

  private publish(change: Partial<SourceListView>): void {
    this.view = { ...this.view, ...change };
    this.catalog.set(this.view);
  }

  async start(): Promise<void> {
    if (!this.options.url) return;
    // A failed fetch is tried again sooner than `refresh` (with back-off), so a list comes by
    // itself once the network is back; a verified one waits the whole period.
    const every = (): void => {
      const retry = Math.min(FIRST_RETRY_MS * 2 ** Math.min(this.failures - 1, 10), MAX_RETRY_MS);
      this.timer = setTimeout(() => void this.refresh().finally(every), this.failures > 0 ? Math.min(retry, this.options.refreshMs) : this.options.refreshMs);
      this.timer.unref();
    };
    if (this.view.state === 'unavailable' && this.options.bootstrap.length > 0) {
      // Nothing usable yet and a way to fetch without any upstream: fetch before serving.
      await this.refresh();
      every();
    } else {
      // A cached copy serves now; fetch once the upstreams that may carry the look-up are up.
      this.timer = setTimeout(() => void this.refresh().finally(every), 0);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Fetches list and signature; a verified list replaces the current one and the cache. */
  async refresh(): Promise<boolean> {
    const url = this.options.url!;
    try {
      const addresses = this.options.bootstrap.length > 0 ? this.options.bootstrap : await this.resolve(url.hostname);
      const fetch = (target: URL) => fetchHttps({ url: target, addresses, timeoutMs: FETCH_TIMEOUT_MS, maxBytes: MAX_LIST_BYTES, ...(this.options.ca ? { ca: this.options.ca } : {}) });
      const [body, signature] = await Promise.all([fetch(url), fetch(new URL(`${url.href}.minisig`))]);
      const comment = this.verify(body, () => signature.toString('utf8'));
      this.refuseOlder(comment);
      this.writeCache(body, signature);
      this.failures = 0;
      this.accept(body, comment, 'verified');
      return true;
    } catch (err) {
      const keeping = this.view.state === 'unavailable' ? 'no verified copy: servers named from it are unavailable' : 'keeping the last verified copy';
      this.publish({ error: (err as Error).message });
      // Once per outage: the retries that follow say nothing until one succeeds.
      if (++this.failures === 1) this.logger.warn(`list ${this.options.name}: refresh failed (${(err as Error).message}); ${keeping}; tried again from 1 minute on`);
      return false;
    }
  }

  /** Throws when a verified download was signed before the copy held (by the timestamp of the trusted comments). */
  private refuseOlder(comment: string | null): void {
    if (this.view.state === 'unavailable') return;
    const held = signedAt(this.view.trustedComment);
    if (held === null) return;
    const fetched = signedAt(comment);
    if (fetched === null) throw new MinisignError(`its signature carries no timestamp, and the copy held was signed at ${isoTime(held)}`);
    if (fetched < held) throw new MinisignError(`signed at ${isoTime(fetched)}, before the copy held (${isoTime(held)}): an older list is never taken`);
  }

  private writeCache(body: Buffer, signature: Buffer): void {
    const cache = this.options.cache!;
    mkdirSync(path.dirname(cache), { recursive: true });
    // Written beside and renamed: a crash never leaves a half-written list or a mismatched pair.
    writeFileSync(`${cache}.minisig.tmp`, signature);
    writeFileSync(`${cache}.tmp`, body);
    renameSync(`${cache}.tmp`, cache);
    renameSync(`${cache}.minisig.tmp`, `${cache}.minisig`);
  }

  /** The list host's addresses, asked through the block's encrypted upstreams only. */
  private async resolve(host: string): Promise<string[]> {
    const upstreams = this.upstreams.all.filter((u) => ENCRYPTED.has(u.protocol));
    if (upstreams.length === 0) throw new Error(`no bootstrap addresses and no encrypted upstream in this block to find ${host}`);
    const addresses: string[] = [];
    for (const type of [QType.A, QType.AAAA]) {
      const query = buildQuery(host, type, { id: 0, edns: true });
      for (const upstream of upstreams) {
        const ctx = RequestContext.ownQuery({ query, transport: 'internal', server: `sources/${this.options.name}`, clock: this.clock, timeoutMs: 5000 });
        try {
          const answer = dnsPacket.decode(await upstream.exchange(query, ctx));
          for (const record of answer.answers ?? []) {
            if ((record.type === 'A' || record.type === 'AAAA') && typeof record.data === 'string') addresses.push(record.data);
          }
          break;
        } catch {
          // the next upstream
        } finally {
          ctx.finish();
        }
      }
    }
    if (addresses.length === 0) throw new Error(`could not find the addresses of ${host} through the encrypted upstreams`);
    return addresses;
  }
}
