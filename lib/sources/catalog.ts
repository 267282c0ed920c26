/**
 * The lists a server block's `sources` directive keeps, as a service other plugins resolve
 * from the block's container: `dnscrypt`, `dot`, `doh` and `anonymize` look up servers and
 * relays by name here.
 */
import { serviceToken } from '../../core/services.js';
import type { ListEntry } from './list.js';

export type ListState =
  /** Fetched (or read from its file) and verified in this run. */
  | 'verified'
  /** The last verified copy from the cache file; a fresh one has not been verified yet. */
  | 'cached'
  /** Never verified: its entries cannot be used. */
  | 'unavailable';

export interface SourceListView {
  name: string;
  /** URL or file it comes from. */
  origin: string;
  state: ListState;
  entries: readonly ListEntry[];
  /** Why the list is unavailable, or why the last refresh failed. */
  error: string | null;
  /** The trusted comment of the signature that verified it (timestamp, file). */
  trustedComment: string | null;
}

export class SourceCatalog {
  private readonly lists = new Map<string, SourceListView>();
  private readonly listeners = new Set<() => void>();

  set(view: SourceListView): void {
    this.lists.set(view.name, view);
    for (const listener of this.listeners) listener();
  }

  list(name: string): SourceListView | undefined {
    return this.lists.get(name);
  }

  all(): SourceListView[] {
    return [...this.lists.values()];
  }

  /** The entry called `name` in a usable list (lists in declared order; the first wins). */
  find(name: string): { list: SourceListView; entry: ListEntry } | undefined {
    for (const list of this.lists.values()) {
      if (list.state === 'unavailable') continue;
      const entry = list.entries.find((e) => e.name === name);
      if (entry) return { list, entry };
    }
    return undefined;
  }

  /** Why `name` is not available, in words for a log line or an error. */
  explain(name: string): string {
    const unavailable = this.all().filter((l) => l.state === 'unavailable');
    const lists = this.all().map((l) => l.name).join(', ') || 'none';
    if (unavailable.length > 0) {
      return `"${name}" is in no usable list (lists: ${lists}); never verified: ${unavailable.map((l) => `${l.name} (${l.error ?? 'not fetched yet'})`).join('; ')}`;
    }
    return `"${name}" is in none of the lists (${lists})`;
  }

  /** Calls `listener` after every change; returns the function that stops it. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export const SourcesService = serviceToken<SourceCatalog>('veil.Sources');
