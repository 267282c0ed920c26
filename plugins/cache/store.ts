/**
 * Where cached answers live: a fixed number of slots in flat arrays, found through an
 * open-addressing hash table, evicted with CLOCK (second chance).
 *
 * Memory decides the shape. A million entries is a normal cache, and a JS object, a Buffer view
 * and a key string per entry cost more than the answers themselves (~600 bytes an entry). Here an
 * entry is one latin1 string (the answer, then its TTL offsets) plus a few bytes in typed
 * arrays: about 104 bytes of heap for a typical answer. There is no key string either: the stored
 * answer's question, kept in lower case, is the key, and lookups hash and compare the query's
 * question bytes in place.
 *
 * A hit sets a flag and moves nothing. When the store is full, a hand walks the slots, clearing
 * flags, and evicts the first entry not used since the hand last passed.
 */
import { HEADER_SIZE } from '../../core/dns/constants.js';

export type EntryKind = 'success' | 'denial' | 'servfail';
const KINDS: readonly EntryKind[] = ['success', 'denial', 'servfail'];

/** What a lookup finds. */
export interface StoredEntry {
  slot: number;
  kind: EntryKind;
  /** Monotonic ms when stored. */
  storedAt: number;
  /** Seconds the entry is fresh. */
  ttl: number;
}

const EMPTY = 0;
const DELETED = -1;

/**
 * FNV-1a over the question section's first entry (`end` is just after its type and class) and
 * the key bits; the name's ASCII letters folded to lower case, the type and class as they are.
 */
export function hashQuestion(msg: Buffer | string, end: number, bits: number): number {
  let h = 0x811c9dc5 ^ bits;
  const nameEnd = end - 4;
  for (let i = HEADER_SIZE; i < end; i++) {
    let c = typeof msg === 'string' ? msg.charCodeAt(i) : msg[i]!;
    if (i < nameEnd && c >= 0x41 && c <= 0x5a) c |= 0x20;
    h = Math.imul(h ^ c, 0x01000193);
  }
  return h >>> 0;
}

export class CacheStore {
  private readonly data: Array<string | undefined>;
  private readonly wireLength: Uint16Array;
  private readonly questionEnd: Uint16Array;
  private readonly bits: Uint8Array;
  private readonly kinds: Uint8Array;
  private readonly visited: Uint8Array;
  private readonly storedAt: Float64Array;
  private readonly ttls: Uint32Array;
  /** Hash table of slot + 1; EMPTY or DELETED otherwise. */
  private table: Int32Array;
  private mask: number;
  private deleted = 0;
  private count = 0;
  /** Slots never used yet are handed out first. */
  private fresh = 0;
  private readonly free: number[] = [];
  private hand = 0;
  /** Prefetch's bookkeeping for the entries it watches, by slot. */
  readonly watched = new Map<number, { hits: number; windowStart: number; refreshing: boolean }>();

  constructor(
    readonly capacity: number,
    private readonly onEvict: () => void = () => {},
  ) {
    this.data = new Array(capacity);
    this.wireLength = new Uint16Array(capacity);
    this.questionEnd = new Uint16Array(capacity);
    this.bits = new Uint8Array(capacity);
    this.kinds = new Uint8Array(capacity);
    this.visited = new Uint8Array(capacity);
    this.storedAt = new Float64Array(capacity);
    this.ttls = new Uint32Array(capacity);
    let size = 8;
    while (size < capacity * 2) size *= 2;
    this.table = new Int32Array(size);
    this.mask = size - 1;
  }

  get size(): number {
    return this.count;
  }

  /** The entry for this question (query bytes up to `questionEnd`) and key bits, marked as used. */
  get(query: Buffer, questionEnd: number, bits: number, hash = hashQuestion(query, questionEnd, bits)): StoredEntry | null {
    const slot = this.find(query, questionEnd, bits, hash);
    if (slot < 0) return null;
    this.visited[slot] = 1;
    return { slot, kind: KINDS[this.kinds[slot]!]!, storedAt: this.storedAt[slot]!, ttl: this.ttls[slot]! };
  }

  /**
   * Stores `answer` (whose question must be the query's) with its TTL offsets, replacing what the
   * same key held. `answer` is not kept: its bytes are copied.
   */
  set(answer: Buffer, questionEnd: number, bits: number, kind: EntryKind, ttlOffsets: readonly number[], storedAt: number, ttl: number): void {
    const hash = hashQuestion(answer, questionEnd, bits);
    let slot = this.find(answer, questionEnd, bits, hash);
    if (slot < 0) {
      slot = this.allocate();
      this.index(hash, slot);
      this.count++;
    }
    // One buffer, then one string: concatenating strings would keep a rope (two strings and a
    // node joining them, ~40 bytes more an entry) until the first hit flattened it.
    const entry = Buffer.allocUnsafe(answer.length + 2 * ttlOffsets.length);
    answer.copy(entry, 0);
    // The question in lower case: it is the key, and each client gets its own case on the way out.
    for (let i = HEADER_SIZE; i < questionEnd - 4; i++) {
      const c = entry[i]!;
      if (c >= 0x41 && c <= 0x5a) entry[i] = c | 0x20;
    }
    let at = answer.length;
    for (const offset of ttlOffsets) at = entry.writeUInt16BE(offset, at);
    this.data[slot] = entry.toString('latin1');
    this.watched.delete(slot);
    this.wireLength[slot] = answer.length;
    this.questionEnd[slot] = questionEnd;
    this.bits[slot] = bits;
    this.kinds[slot] = KINDS.indexOf(kind);
    this.visited[slot] = 0;
    this.storedAt[slot] = storedAt;
    this.ttls[slot] = ttl;
  }

  delete(query: Buffer, questionEnd: number, bits: number, hash = hashQuestion(query, questionEnd, bits)): void {
    const slot = this.find(query, questionEnd, bits, hash);
    if (slot >= 0) this.remove(slot, hash);
  }

  /**
   * A copy of the stored answer, each TTL field rewritten by `ttlFor(original)`, and the query's
   * question bytes (the client's case) in place of the stored ones.
   */
  render(slot: number, query: Buffer, ttlFor: (original: number) => number): Buffer {
    const text = this.data[slot]!;
    const length = this.wireLength[slot]!;
    const out = Buffer.allocUnsafe(length);
    out.write(text, 0, length, 'latin1');
    for (let at = length; at < text.length; at += 2) {
      const offset = (text.charCodeAt(at) << 8) | text.charCodeAt(at + 1);
      out.writeUInt32BE(ttlFor(out.readUInt32BE(offset)), offset);
    }
    query.copy(out, HEADER_SIZE, HEADER_SIZE, this.questionEnd[slot]! - 4);
    return out;
  }

  clear(): void {
    this.data.fill(undefined);
    this.table.fill(EMPTY);
    this.count = this.deleted = this.fresh = this.hand = 0;
    this.free.length = 0;
    this.watched.clear();
  }

  private find(msg: Buffer, questionEnd: number, bits: number, hash: number): number {
    for (let i = hash & this.mask; ; i = (i + 1) & this.mask) {
      const entry = this.table[i]!;
      if (entry === EMPTY) return -1;
      if (entry === DELETED) continue;
      const slot = entry - 1;
      if (this.bits[slot] === bits && this.questionEnd[slot] === questionEnd && sameQuestion(this.data[slot]!, msg, questionEnd)) return slot;
    }
  }

  private index(hash: number, slot: number): void {
    let i = hash & this.mask;
    while (this.table[i]! > 0) i = (i + 1) & this.mask;
    if (this.table[i] === DELETED) this.deleted--;
    this.table[i] = slot + 1;
  }

  /** A free slot: never used, freed by a delete, or taken from the entry the hand evicts. */
  private allocate(): number {
    if (this.fresh < this.capacity) return this.fresh++;
    const reused = this.free.pop();
    if (reused !== undefined) return reused;
    for (;;) {
      const slot = this.hand;
      this.hand = (this.hand + 1) % this.capacity;
      if (this.data[slot] === undefined) continue;
      if (this.visited[slot]) {
        this.visited[slot] = 0;
        continue;
      }
      const text = this.data[slot]!;
      this.remove(slot, hashQuestion(text, this.questionEnd[slot]!, this.bits[slot]!));
      this.onEvict();
      return this.free.pop()!;
    }
  }

  private remove(slot: number, hash: number): void {
    for (let i = hash & this.mask; ; i = (i + 1) & this.mask) {
      const entry = this.table[i]!;
      if (entry === EMPTY) return;
      if (entry === slot + 1) {
        this.table[i] = DELETED;
        break;
      }
    }
    this.data[slot] = undefined;
    this.watched.delete(slot);
    this.free.push(slot);
    this.count--;
    if (++this.deleted > this.capacity / 2) this.rehash();
  }

  /** Rebuilds the table without its tombstones, so probes stay short. */
  private rehash(): void {
    this.table.fill(EMPTY);
    this.deleted = 0;
    for (let slot = 0; slot < this.fresh; slot++) {
      const text = this.data[slot];
      if (text !== undefined) this.index(hashQuestion(text, this.questionEnd[slot]!, this.bits[slot]!), slot);
    }
  }
}

/** The stored question (name in lower case) against the message's, ignoring ASCII case in its name. */
function sameQuestion(stored: string, msg: Buffer, end: number): boolean {
  const nameEnd = end - 4;
  for (let i = HEADER_SIZE; i < end; i++) {
    let c = msg[i]!;
    if (i < nameEnd && c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (stored.charCodeAt(i) !== c) return false;
  }
  return true;
}

