/**
 * Values under integer keys from 0 to 2^31 - 1 (HTTP/2 stream IDs, DNS message IDs): a Map's
 * get, set, delete and size, for a long-lived table that sees an insert and a delete for every
 * query.
 *
 * Why not a Map: when V8 grows, shrinks or compacts a Map's hash table it links the old table to
 * the new one, and the old one keeps every entry it held. Once one old table has been promoted to
 * the old generation, each later table is reachable from a dead old one, so every minor GC keeps
 * it and promotes it with all it held (requests, buffers, closures): a table that sees a query
 * at a time then promotes most of each query's objects, and the process stays that way. With a
 * Map of streams, Veil's DoH client fell into that state in about half its runs (1.1 MB promoted
 * a scavenge against 8 KB, 22 full collections in 6 s against 1, 9.6–10.8 µs of CPU a query
 * against 6.8–7.7; docs/benchmarks.md, "Maps that promote"). An object's dictionary has no such
 * link but cost 235 ns a query against a Map's 50.
 *
 * So: open addressing with linear probing over a typed array of keys and a plain array of
 * values. A deletion shifts the entries after it back (no tombstones), and clears the value's
 * slot, so an old array holds only what is still in the table; a resize copies into new arrays,
 * and nothing links the old ones to them.
 */
const EMPTY = -1;
const MIN_CAPACITY = 16;
/** Tables of at most this many slots never shrink (see `delete`). */
const SHRINK_ABOVE = 1024;

export class IdTable<V> {
  private keys = new Int32Array(MIN_CAPACITY).fill(EMPTY);
  private vals: Array<V | undefined> = new Array<V | undefined>(MIN_CAPACITY).fill(undefined);
  private mask = MIN_CAPACITY - 1;
  /** 32 minus log2 of the capacity: a key's home is the top bits of its hash. */
  private shift = 32 - Math.log2(MIN_CAPACITY);
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(id: number): V | undefined {
    const i = this.find(id);
    return i < 0 ? undefined : this.vals[i];
  }

  has(id: number): boolean {
    return this.find(id) >= 0;
  }

  set(id: number, value: V): void {
    if (!(id >= 0 && id <= 0x7fffffff && Number.isInteger(id))) throw new RangeError(`IdTable key out of range: ${id}`);
    let i = this.home(id);
    for (;;) {
      const key = this.keys[i]!;
      if (key === id) {
        this.vals[i] = value;
        return;
      }
      if (key === EMPTY) break;
      i = (i + 1) & this.mask;
    }
    this.keys[i] = id;
    this.vals[i] = value;
    this.count++;
    // At most half full: probes stay short.
    if (this.count * 2 > this.keys.length) this.resize(this.keys.length * 2);
  }

  delete(id: number): boolean {
    let hole = this.find(id);
    if (hole < 0) return false;
    // Entries after the hole that would not be found past it move back into it (Knuth's
    // algorithm R), so a lookup can stop at the first empty slot.
    const mask = this.mask;
    for (let j = (hole + 1) & mask; this.keys[j] !== EMPTY; j = (j + 1) & mask) {
      const home = this.home(this.keys[j]!);
      // The entry at j may fill the hole unless its home lies cyclically within (hole, j].
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      this.keys[hole] = this.keys[j]!;
      this.vals[hole] = this.vals[j];
      hole = j;
    }
    this.keys[hole] = EMPTY;
    this.vals[hole] = undefined;
    this.count--;
    // A burst's room is given back once the table is mostly empty again, if it grew large:
    // smaller tables keep theirs (12 KB at most), as a connection whose queries drain to none
    // and fill again with every burst would be resized each time (1.4% of a DoH query's CPU).
    if (this.keys.length > SHRINK_ABOVE && this.count * 8 < this.keys.length) this.resize(this.keys.length / 2);
    return true;
  }

  /** The values, in no particular order; a copy, so the table may change while the caller goes through it. */
  values(): V[] {
    const out: V[] = [];
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] !== EMPTY) out.push(this.vals[i]!);
    return out;
  }

  clear(): void {
    this.keys = new Int32Array(MIN_CAPACITY).fill(EMPTY);
    this.vals = new Array<V | undefined>(MIN_CAPACITY).fill(undefined);
    this.mask = MIN_CAPACITY - 1;
    this.shift = 32 - Math.log2(MIN_CAPACITY);
    this.count = 0;
  }

  /** Fibonacci hashing: consecutive IDs (stream IDs go up by two) land far apart. */
  private home(id: number): number {
    return Math.imul(id, 0x9e3779b1) >>> this.shift;
  }

  private find(id: number): number {
    for (let i = this.home(id); ; i = (i + 1) & this.mask) {
      const key = this.keys[i]!;
      if (key === id) return i;
      if (key === EMPTY) return -1;
    }
  }

  private resize(capacity: number): void {
    const keys = this.keys;
    const vals = this.vals;
    this.keys = new Int32Array(capacity).fill(EMPTY);
    this.vals = new Array<V | undefined>(capacity).fill(undefined);
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
    for (let i = 0; i < keys.length; i++) {
      const id = keys[i]!;
      if (id === EMPTY) continue;
      let j = this.home(id);
      while (this.keys[j] !== EMPTY) j = (j + 1) & this.mask;
      this.keys[j] = id;
      this.vals[j] = vals[i];
    }
    // The old array may already be in the old generation: emptied, it keeps nothing alive.
    vals.fill(undefined);
  }
}
