/**
 * What the validator learned about names, kept for their TTLs and bounded in number: the
 * validated keys of secure zones, names proved to be insecure delegations, names proved not to
 * be zone cuts, and (briefly) zones whose keys could not be validated. Least recently used
 * entries go first when it is full.
 */
import { Buffer } from 'node:buffer';
import type { Dnskey } from './crypto.js';
import { nameText, type WireName } from './names.js';
import type { Verdict } from './verdict.js';

export type ZoneState =
  | { kind: 'secure'; zone: WireName; keys: readonly Dnskey[] }
  | { kind: 'insecure'; verdict: Verdict }
  | { kind: 'bogus'; verdict: Verdict }
  /** The name exists inside its parent's zone and is not a zone cut. */
  | { kind: 'inside' };

/** Longest time anything is kept, whatever the TTLs say. */
const MAX_KEEP_SECONDS = 86400;
/** How long a failure is kept, so a broken zone is not asked again for every query (unbound's bogus-ttl). */
export const BOGUS_KEEP_SECONDS = 60;

/** Bytes an entry is counted for: its name, its keys' RDATA, and bookkeeping. */
function sizeOf(key: string, state: ZoneState): number {
  let bytes = 100 + key.length;
  if (state.kind === 'secure') for (const k of state.keys) bytes += 64 + k.rdata.length;
  return bytes;
}

export class ZoneCache {
  private readonly entries = new Map<string, { state: ZoneState; expires: number; bytes: number }>();
  private bytes = 0;

  /** At most `capacity` names and `maxBytes` of them (a zone can publish large key sets). */
  constructor(
    readonly capacity: number,
    private readonly nowMs: () => number,
    readonly maxBytes = 16 * 1024 * 1024,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get byteSize(): number {
    return this.bytes;
  }

  get(name: WireName): ZoneState | undefined {
    const key = name.toString('latin1');
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expires <= this.nowMs()) {
      this.remove(key);
      return undefined;
    }
    // move to the most recently used end
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.state;
  }

  set(name: WireName, state: ZoneState, ttlSeconds: number): void {
    const seconds = Math.max(0, Math.min(MAX_KEEP_SECONDS, state.kind === 'bogus' ? Math.min(ttlSeconds, BOGUS_KEEP_SECONDS) : ttlSeconds));
    if (seconds === 0) return;
    const key = name.toString('latin1');
    this.remove(key);
    const bytes = sizeOf(key, state);
    this.entries.set(key, { state, expires: this.nowMs() + seconds * 1000, bytes });
    this.bytes += bytes;
    while (this.entries.size > this.capacity || this.bytes > this.maxBytes) this.remove(this.entries.keys().next().value!);
  }

  private remove(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.bytes -= entry.bytes;
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  /** For debugging and tests: the names known. */
  names(): string[] {
    return [...this.entries.keys()].map((k) => nameText(Buffer.from(k, 'latin1')));
  }
}
