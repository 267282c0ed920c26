/**
 * What the other end's HPACK dynamic table (RFC 7541 §2.3.2) holds of the entries this end
 * added: a model an encoder keeps so that it can name a field it sent before by its index.
 * Veil's client keeps one for its request fields (request-fields.ts) and its server one for
 * the fields its answers repeat (hpack.ts, encodeResponseHeadersInto).
 *
 * Entries are evicted by the decoder's rule (§4.4) within the size the other end allows
 * (its SETTINGS_HEADER_TABLE_SIZE, at most 4096 here). An entry this model has dropped may still
 * be in the other end's table, never the other way: every index an encoder takes from here is
 * good at the decoder.
 */

/** Entries of the static table (Appendix A) come first: the dynamic table's newest is 62. */
const FIRST_DYNAMIC_INDEX = 62;
/** The table size Veil uses at most: the protocol's initial SETTINGS_HEADER_TABLE_SIZE. */
const TABLE_SIZE = 4096;
/** An entry's size counts its name and value and 32 bytes of overhead (§4.1). */
const ENTRY_OVERHEAD = 32;

interface Entry {
  name: string;
  value: string;
  size: number;
}

export class EncoderTable {
  /** Oldest first: the newest is at index 62. */
  private readonly entries: Entry[] = [];
  private used = 0;
  /** The table size in effect: the next header block's entries must fit it. */
  capacity = TABLE_SIZE;
  /** The smallest table size since the last header block, to announce (§4.2); -1: none to announce. */
  smallestToAnnounce = -1;
  /**
   * Changes whenever a block encoded now would differ from one encoded before: an entry added or
   * evicted, a size to announce. A block kept for reuse is good only while this is the same.
   */
  generation = 0;

  /** The other end's SETTINGS_HEADER_TABLE_SIZE; in effect from the next header block (after our ACK). */
  allow(limit: number): void {
    const capacity = Math.min(limit, TABLE_SIZE);
    if (capacity === this.capacity) return;
    this.capacity = capacity;
    this.evict(0);
    this.smallestToAnnounce = this.smallestToAnnounce < 0 ? capacity : Math.min(this.smallestToAnnounce, capacity);
    this.generation++;
  }

  /** The size updates were written at the start of a block (§4.2: the smallest first, then `capacity` if it differs). */
  announced(): void {
    this.smallestToAnnounce = -1;
    this.generation++;
  }

  /** The field's index in the other end's table (62 and up), or 0 when the table does not hold it. */
  indexOf(name: string, value: string): number {
    const entries = this.entries;
    for (let i = entries.length - 1; i >= 0; i--) {
      const entry = entries[i]!;
      if (entry.value === value && entry.name === name) return FIRST_DYNAMIC_INDEX + entries.length - 1 - i;
    }
    return 0;
  }

  /** Whether a field fits the table at all: one larger would empty the other end's table (§4.4). */
  fits(name: string, value: string): boolean {
    return name.length + value.length + ENTRY_OVERHEAD <= this.capacity;
  }

  /** A field sent with incremental indexing (§6.2.1), once it is written: the decoder adds it, evicting as it does. */
  add(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    this.evict(size);
    this.entries.push({ name, value, size });
    this.used += size;
    this.generation++;
  }

  /** Drops the oldest entries until `room` more bytes fit, as the other end's decoder does. */
  private evict(room: number): void {
    let drop = 0;
    while (this.used + room > this.capacity && drop < this.entries.length) this.used -= this.entries[drop++]!.size;
    if (drop > 0) {
      this.entries.splice(0, drop);
      this.generation++;
    }
  }
}
