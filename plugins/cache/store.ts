/**
 * Where cached answers live: a fixed number of slots in flat arrays, found through an
 * open-addressing hash table, evicted with CLOCK (second chance).
 *
 * Memory decides the shape. A million entries is a normal cache, and a JS object, a Buffer view
 * and a key string per entry cost more than the answers themselves (~600 bytes an entry); even
 * one string per entry keeps the entries in V8's heap, which grows to a multiple of them. Here
 * an entry's bytes (the answer, then its TTL offsets) are in a CellArena outside the heap, and
 * the rest is a few bytes in typed arrays: 110 to 150 bytes in all for a typical answer (one or
 * two A records), none of them objects the garbage collector visits. There is no key string either: the stored
 * answer's question, kept in lower case, is the key, and lookups hash and compare the query's
 * question bytes in place.
 *
 * A hit sets a flag and moves nothing. When the store is full, a hand walks the slots, clearing
 * flags, and evicts the first entry not used since the hand last passed.
 */
import { Buffer } from 'node:buffer';
import { HEADER_SIZE } from '../../core/dns/constants.js';
import { CellArena } from './arena.js';

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
 * A slot's `first` when it holds nothing; otherwise `first` is its first cell + 1. Zero, so that
 * the slots never used are pages never touched: a store sized for a million answers that holds
 * few (the denial store, most often) costs address space, not memory.
 */
const UNUSED = 0;

/**
 * FNV-1a over the question section's first entry (`end` is just after its type and class) and
 * the key bits; the name's ASCII letters folded to lower case, the type and class as they are.
 */
export function hashQuestion(msg: Buffer, end: number, bits: number): number {
  let h = 0x811c9dc5 ^ bits;
  const nameEnd = end - 4;
  for (let i = HEADER_SIZE; i < end; i++) {
    let c = msg[i]!;
    if (i < nameEnd && c >= 0x41 && c <= 0x5a) c |= 0x20;
    h = Math.imul(h ^ c, 0x01000193);
  }
  return h >>> 0;
}

export class CacheStore {
  private readonly arena = new CellArena();
  /** Each slot's first cell in the arena + 1, or UNUSED. */
  private readonly first: Int32Array;
  private readonly hashes: Uint32Array;
  private readonly wireLength: Uint16Array;
  private readonly ttlCount: Uint16Array;
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
    this.first = new Int32Array(capacity);
    this.hashes = new Uint32Array(capacity);
    this.wireLength = new Uint16Array(capacity);
    this.ttlCount = new Uint16Array(capacity);
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

  /** Bytes the answers' arena holds (used or free): the most this store ever needed at once. */
  get arenaBytes(): number {
    return this.arena.byteSize;
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
    } else {
      this.arena.free(this.first[slot]! - 1);
    }
    const entry = scratchFor(answer.length + 2 * ttlOffsets.length);
    answer.copy(entry, 0);
    // The question in lower case: it is the key, and each client gets its own case on the way out.
    for (let i = HEADER_SIZE; i < questionEnd - 4; i++) {
      const c = entry[i]!;
      if (c >= 0x41 && c <= 0x5a) entry[i] = c | 0x20;
    }
    let at = answer.length;
    for (const offset of ttlOffsets) at = entry.writeUInt16BE(offset, at);
    this.first[slot] = this.arena.write(entry, 0, at) + 1;
    this.hashes[slot] = hash;
    this.ttlCount[slot] = ttlOffsets.length;
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
    const first = this.first[slot]! - 1;
    const length = this.wireLength[slot]!;
    const out = Buffer.allocUnsafe(length);
    this.arena.read(first, 0, length, out, 0);
    const offsetsLength = 2 * this.ttlCount[slot]!;
    const offsets = scratchFor(offsetsLength);
    this.arena.read(first, length, length + offsetsLength, offsets, 0);
    for (let at = 0; at < offsetsLength; at += 2) {
      const offset = offsets.readUInt16BE(at);
      out.writeUInt32BE(ttlFor(out.readUInt32BE(offset)), offset);
    }
    query.copy(out, HEADER_SIZE, HEADER_SIZE, this.questionEnd[slot]! - 4);
    return out;
  }

  clear(): void {
    this.arena.clear();
    this.first.fill(UNUSED);
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
      if (
        this.hashes[slot] === hash &&
        this.bits[slot] === bits &&
        this.questionEnd[slot] === questionEnd &&
        this.arena.equalsFolded(this.first[slot]! - 1, msg, HEADER_SIZE, questionEnd, questionEnd - 4)
      ) {
        return slot;
      }
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
      if (this.first[slot] === UNUSED) continue;
      if (this.visited[slot]) {
        this.visited[slot] = 0;
        continue;
      }
      this.remove(slot, this.hashes[slot]!);
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
    this.arena.free(this.first[slot]! - 1);
    this.first[slot] = UNUSED;
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
      if (this.first[slot] !== UNUSED) this.index(this.hashes[slot]!, slot);
    }
  }
}

/** A reused buffer for building an entry or reading its TTL offsets: nothing keeps it. */
let scratch = Buffer.allocUnsafeSlow(4096);
function scratchFor(length: number): Buffer {
  if (scratch.length < length) scratch = Buffer.allocUnsafeSlow(length);
  return scratch;
}
