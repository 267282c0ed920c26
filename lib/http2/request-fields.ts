/**
 * How Veil's HTTP/2 client writes request header fields (HPACK, RFC 7541), with the one part
 * of the server's dynamic table it relies on.
 *
 * Every request on a connection repeats the same fields: `:authority`, a POST's `:path`,
 * `accept` and `content-type`. The first request adds them to the server's dynamic table
 * (§6.2.1), and every later one names each by its index in one byte (§6.1): a POST's header
 * block is 11 bytes instead of about 85, and the server reads four indexes instead of four
 * strings (measured in docs/benchmarks.md).
 *
 * Only constant fields are indexed. A field that carries the query (a GET's `:path`) is sent as
 * never indexed (§6.2.3): were it in a table, whether a later field matched it would show in
 * the size of what is sent, a compression side channel (§7.1).
 *
 * The table kept here is the server's as far as Veil needs it: the entries Veil added, evicted
 * by the same rule (§4.4) within the size the server allows (SETTINGS_HEADER_TABLE_SIZE, at most
 * 4096). An entry this table has dropped may still be in the server's, never the other way.
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

export class RequestFieldIndex {
  /** Oldest first: the newest is at index 62. */
  private readonly entries: Entry[] = [];
  private used = 0;
  private capacity = TABLE_SIZE;
  /** The smallest table size since the last header block, to announce (§4.2); -1: none to announce. */
  private smallestSinceBlock = -1;
  /**
   * Changes whenever a block encoded now would differ from one encoded before: an entry added or
   * evicted, a size to announce. A block kept for reuse is good only while this is the same.
   */
  generation = 0;

  /** The server's SETTINGS_HEADER_TABLE_SIZE; in effect from the next header block (after our ACK). */
  allow(limit: number): void {
    const capacity = Math.min(limit, TABLE_SIZE);
    if (capacity === this.capacity) return;
    this.capacity = capacity;
    this.evict(0);
    this.smallestSinceBlock = this.smallestSinceBlock < 0 ? capacity : Math.min(this.smallestSinceBlock, capacity);
    this.generation++;
  }

  /** Starts a header block: a changed table size is announced first, the smallest one too if it went lower in between (§4.2). */
  begin(parts: number[]): void {
    if (this.smallestSinceBlock < 0) return;
    writeInteger(parts, 0x20, 5, this.smallestSinceBlock);
    if (this.capacity !== this.smallestSinceBlock) writeInteger(parts, 0x20, 5, this.capacity);
    this.smallestSinceBlock = -1;
    this.generation++;
  }

  /**
   * One field whose name is static entry `nameIndex`: by index when the table has it; else added
   * to the table (when `constant` and it fits), or never indexed (a field that is not constant).
   */
  field(parts: number[], nameIndex: number, name: string, value: string, constant: boolean): void {
    if (!constant) {
      writeInteger(parts, 0x10, 4, nameIndex);
      writeString(parts, value);
      return;
    }
    const entries = this.entries;
    for (let i = entries.length - 1; i >= 0; i--) {
      const entry = entries[i]!;
      if (entry.value === value && entry.name === name) {
        writeInteger(parts, 0x80, 7, FIRST_DYNAMIC_INDEX + entries.length - 1 - i);
        return;
      }
    }
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.capacity) {
      // Adding it would empty the server's table (§4.4): sent without indexing instead.
      literal(parts, nameIndex, '', value);
      return;
    }
    this.evict(size);
    entries.push({ name, value, size });
    this.used += size;
    this.generation++;
    writeInteger(parts, 0x40, 6, nameIndex);
    writeString(parts, value);
  }

  /** Drops the oldest entries until `room` more bytes fit, as the server's decoder does. */
  private evict(room: number): void {
    let drop = 0;
    while (this.used + room > this.capacity && drop < this.entries.length) this.used -= this.entries[drop++]!.size;
    if (drop > 0) {
      this.entries.splice(0, drop);
      this.generation++;
    }
  }
}

/** A literal field without indexing (§6.2.2): the name by static index, or written out when `index` is 0. */
export function literal(parts: number[], index: number, name: string, value: string): void {
  writeInteger(parts, 0x00, 4, index);
  if (index === 0) writeString(parts, name);
  writeString(parts, value);
}

/** A string literal, raw (not Huffman-coded): header fields are octets. */
function writeString(parts: number[], text: string): void {
  writeInteger(parts, 0x00, 7, text.length);
  for (let i = 0; i < text.length; i++) parts.push(text.charCodeAt(i) & 0xff);
}

/** An integer with an N-bit prefix (§5.1). */
function writeInteger(parts: number[], flags: number, prefixBits: number, value: number): void {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    parts.push(flags | value);
    return;
  }
  parts.push(flags | mask);
  value -= mask;
  while (value >= 0x80) {
    parts.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  parts.push(value);
}
