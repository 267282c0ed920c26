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
 * The server's table is modelled as far as Veil needs it (encoder-table.ts): the entries Veil
 * added, evicted by the same rule, within the size the server allows.
 */
import { EncoderTable } from './encoder-table.js';

export class RequestFieldIndex {
  /** What the server's table holds of the entries our requests added. */
  private readonly table = new EncoderTable();

  /** Changes whenever a block encoded now would differ from one encoded before (EncoderTable.generation). */
  get generation(): number {
    return this.table.generation;
  }

  /** The server's SETTINGS_HEADER_TABLE_SIZE; in effect from the next header block (after our ACK). */
  allow(limit: number): void {
    this.table.allow(limit);
  }

  /** Starts a header block: a changed table size is announced first, the smallest one too if it went lower in between (§4.2). */
  begin(parts: number[]): void {
    const table = this.table;
    if (table.smallestToAnnounce < 0) return;
    writeInteger(parts, 0x20, 5, table.smallestToAnnounce);
    if (table.capacity !== table.smallestToAnnounce) writeInteger(parts, 0x20, 5, table.capacity);
    table.announced();
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
    const table = this.table;
    const index = table.indexOf(name, value);
    if (index !== 0) {
      writeInteger(parts, 0x80, 7, index);
      return;
    }
    if (!table.fits(name, value)) {
      literal(parts, nameIndex, '', value);
      return;
    }
    table.add(name, value);
    writeInteger(parts, 0x40, 6, nameIndex);
    writeString(parts, value);
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
