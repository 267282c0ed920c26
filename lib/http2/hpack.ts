/**
 * HPACK (RFC 7541) for Veil's HTTP/2 server and client: a decoder for header blocks, with the
 * dynamic table the other end's encoder keeps in step with, and an encoder for responses that
 * indexes the one field every answer repeats, `content-type` (its model of the client's
 * table: encoder-table.ts). Veil's client indexes the fields its requests repeat: request-fields.ts.
 */
// Buffer (and performance) imported, not the globals: in Node 24 the globals are accessors,
// about 10 ns a use, on every request here.
import { Buffer } from 'node:buffer';
import type { EncoderTable } from './encoder-table.js';
import { decodeHuffman, HuffmanError } from './huffman.js';

/** Appendix A: index 1–61. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

/** The size of the dynamic table Veil allows (the default of SETTINGS_HEADER_TABLE_SIZE). */
export const HEADER_TABLE_SIZE = 4096;
/** An entry's size counts its name and value and 32 bytes of overhead (§4.1). */
const ENTRY_OVERHEAD = 32;

/** A header block that cannot be decoded: a connection error (COMPRESSION_ERROR, RFC 9113 §4.3). */
export class HpackError extends Error {}

/**
 * A request's fields in the order they came. A field read from an HPACK table is that table's
 * entry itself (no copy per request): read it, never change it.
 */
export type HeaderList = [name: string, value: string][];

export interface DecodedBlock {
  headers: HeaderList;
  /** The header list's size as RFC 9113 counts it (name + value + 32 per field). */
  size: number;
  /**
   * A field of the block is not valid HTTP/2 (RFC 9113 §8.2.1): a name with upper-case letters,
   * or a value with NUL, CR or LF. Checked as strings are decoded, so a field taken from the
   * table is not checked again in every request that refers to it.
   */
  invalid?: boolean;
}

export class HpackDecoder {
  /** Newest entry last. */
  private readonly entries: [string, string][] = [];
  private tableSize = 0;
  private maxTableSize: number;
  /** Entries of the dynamic table that are not valid fields (rare: a hostile or broken client). */
  private readonly invalidEntries = new Set<readonly [string, string]>();
  /**
   * Where the integer or string just read ended. A field of the decoder, not a returned tuple:
   * a request's header block is read without allocating anything but its fields.
   */
  private at = 0;

  /** `limit`: the SETTINGS_HEADER_TABLE_SIZE this end announced (Veil's server keeps the default). */
  constructor(private readonly limit = HEADER_TABLE_SIZE) {
    this.maxTableSize = limit;
  }

  /**
   * Decodes one complete header block. Fields are collected only while the list stays within
   * `maxListSize`; past it decoding goes on (the table must stay in step) and `size` tells.
   */
  decode(block: Buffer, maxListSize: number): DecodedBlock {
    const headers: HeaderList = [];
    let size = 0;
    this.at = 0;
    let fieldSeen = false;
    let invalid = false;
    while (this.at < block.length) {
      const first = block[this.at]!;
      let field: [string, string];
      let fieldInvalid: boolean;
      if (first & 0x80) {
        // Indexed field (§6.1): the table's entry, checked when it was decoded (or a constant).
        field = this.entry(this.readInteger(block, 7)) as [string, string];
        fieldInvalid = this.invalidEntries.size > 0 && this.invalidEntries.has(field);
      } else if ((first & 0xe0) === 0x20) {
        // Dynamic table size update (§6.3): only before the first field of a block.
        const limit = this.readInteger(block, 5);
        if (fieldSeen) throw new HpackError('a table size update after a header field');
        if (limit > this.limit) throw new HpackError(`a table size of ${limit}, over the ${this.limit} allowed`);
        this.maxTableSize = limit;
        this.evict(0);
        continue;
      } else {
        // Literal field: with incremental indexing (01), without (0000) or never indexed (0001).
        const indexed = (first & 0xc0) === 0x40;
        const index = this.readInteger(block, indexed ? 6 : 4);
        let nameInvalid = false;
        let name: string;
        if (index === 0) {
          name = this.readString(block);
          nameInvalid = hasUpperCase(name);
        } else {
          const entry = this.entry(index);
          name = entry[0];
          nameInvalid = this.invalidEntries.size > 0 && this.invalidEntries.has(entry) && hasUpperCase(name);
        }
        const value = this.readString(block);
        field = [name, value];
        fieldInvalid = nameInvalid || hasNulOrLineBreak(value);
        if (indexed) this.insert(field, fieldInvalid);
      }
      fieldSeen = true;
      size += field[0].length + field[1].length + ENTRY_OVERHEAD;
      if (size <= maxListSize) {
        headers.push(field);
        if (fieldInvalid) invalid = true; // as the fields collected are judged, not those past the limit
      }
    }
    return { headers, size, invalid };
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError('index 0');
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
    const found = this.entries[this.entries.length - (index - STATIC_TABLE.length)];
    if (!found) throw new HpackError(`index ${index} is past the tables`);
    return found;
  }

  private insert(field: [string, string], invalid: boolean): void {
    const size = field[0].length + field[1].length + ENTRY_OVERHEAD;
    // An entry larger than the table empties it and is not added (§4.4).
    this.evict(size);
    if (size <= this.maxTableSize) {
      this.entries.push(field);
      this.tableSize += size;
      if (invalid) this.invalidEntries.add(field);
    }
  }

  /** Evicts the oldest entries until `room` more bytes fit. */
  private evict(room: number): void {
    let drop = 0;
    while (this.tableSize + room > this.maxTableSize && drop < this.entries.length) {
      const entry = this.entries[drop++]!;
      this.tableSize -= entry[0].length + entry[1].length + ENTRY_OVERHEAD;
      this.invalidEntries.delete(entry);
    }
    if (drop > 0) this.entries.splice(0, drop);
  }

  /** An integer with an N-bit prefix at `this.at` (§5.1); values past 2^28 are refused as hostile. */
  private readInteger(block: Buffer, prefixBits: number): number {
    const mask = (1 << prefixBits) - 1;
    let at = this.at;
    let value = block[at]! & mask;
    at++;
    if (value < mask) {
      this.at = at;
      return value;
    }
    for (let shift = 0; ; shift += 7) {
      if (at >= block.length) throw new HpackError('an integer cut off');
      if (shift > 21) throw new HpackError('an integer too large');
      const byte = block[at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) {
        this.at = at;
        return value;
      }
    }
  }

  /** A string literal at `this.at` (§5.2), Huffman-coded or raw, read as latin1 (header fields are octets). */
  private readString(block: Buffer): string {
    if (this.at >= block.length) throw new HpackError('a string cut off');
    const huffman = (block[this.at]! & 0x80) !== 0;
    const length = this.readInteger(block, 7);
    const start = this.at;
    const end = start + length;
    if (end > block.length) throw new HpackError('a string longer than its block');
    this.at = end;
    if (!huffman) return block.toString('latin1', start, end);
    try {
      return decodeHuffman(block, start, length);
    } catch (err) {
      if (err instanceof HuffmanError) throw new HpackError(err.message);
      throw err;
    }
  }
}

// Loops over character codes, not regular expressions: literal strings of every request pass here.

function hasUpperCase(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return true;
  }
  return false;
}

function hasNulOrLineBreak(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return true;
  }
  return false;
}

/** Static indexes of the names and fields a DoH answer uses. */
const STATUS_INDEX: Record<number, number> = { 200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14 };
const NAME_INDEX = new Map<string, number>();
STATIC_TABLE.forEach(([name], i) => {
  if (!NAME_INDEX.has(name)) NAME_INDEX.set(name, i + 1);
});

/**
 * A response header block: `:status` (indexed when the static table has it), then each header
 * as a literal without indexing, its name indexed when the static table has the name. With the
 * model of the client's table (`table`), `content-type` is named by its index once the table
 * holds it, and added to it the first time.
 */
export function encodeResponseHeaders(status: number, headers: Record<string, string | number>, table?: EncoderTable): Buffer {
  // Tried in a buffer that doubles until the block fits (a few tries for any real block).
  for (let size = 256, tries = 0; tries < 40; size *= 2, tries++) {
    const target = Buffer.allocUnsafe(size);
    const end = encodeResponseHeadersInto(status, headers, target, 0, table);
    if (end >= 0) return target.subarray(0, end);
  }
  throw new RangeError('a response header block too large to encode');
}

/**
 * The same block written into `target` at `at`: where it ends, or -1 when it does not fit
 * (then what was written past `at` means nothing, and `table` is as it was: what a block adds
 * to it is recorded only once the whole block is written). The HTTP/2 connection encodes
 * straight into its output this way: no array, no Buffer, no string for a number.
 *
 * Only `content-type` is indexed: the one field whose value every answer on a connection
 * repeats. `cache-control` carries the answer's TTL and `content-length` its size, so entries
 * for them would crowd the table for answers that seldom repeat them.
 */
export function encodeResponseHeadersInto(status: number, headers: Record<string, string | number>, target: Buffer, at: number, table?: EncoderTable): number {
  const announcing = table !== undefined && table.smallestToAnnounce >= 0;
  if (announcing) {
    // A changed table size first (§4.2): the smallest since the last block, then the one in effect.
    at = writeInteger(target, at, 0x20, 5, table.smallestToAnnounce);
    if (at >= 0 && table.capacity !== table.smallestToAnnounce) at = writeInteger(target, at, 0x20, 5, table.capacity);
    if (at < 0) return -1;
  }
  const statusIndex = STATUS_INDEX[status];
  if (statusIndex) {
    if (at >= target.length) return -1;
    target[at++] = 0x80 | statusIndex;
  } else {
    at = literal(target, at, STATUS_NAME_INDEX, String(status));
  }
  let added: string | undefined;
  for (const name in headers) {
    if (at < 0) return -1;
    const value = headers[name]!;
    const index = staticNameIndex(name);
    if (index === undefined) {
      // A name the static table does not have: a literal name (§6.2.2, index 0).
      if (at + 1 > target.length) return -1;
      target[at++] = 0x00;
      at = writeString(target, at, name);
      if (at >= 0) at = typeof value === 'number' ? writeDecimal(target, at, value) : writeString(target, at, value);
    } else if (index === CONTENT_TYPE_INDEX && table !== undefined && typeof value === 'string' && table.fits(name, value)) {
      const known = table.indexOf(name, value);
      if (known !== 0) {
        at = writeInteger(target, at, 0x80, 7, known);
      } else {
        // A literal with incremental indexing (§6.2.1): the client adds it to its table.
        at = writeInteger(target, at, 0x40, 6, index);
        if (at >= 0) at = writeString(target, at, value);
        added = value;
      }
    } else {
      at = typeof value === 'number' ? literalNumber(target, at, index, value) : literal(target, at, index, value);
    }
  }
  if (at < 0) return -1;
  if (announcing) table.announced();
  if (added !== undefined) table!.add('content-type', added);
  return at;
}

const STATUS_NAME_INDEX = NAME_INDEX.get(':status')!;
const CACHE_CONTROL_INDEX = NAME_INDEX.get('cache-control')!;
const CONTENT_TYPE_INDEX = NAME_INDEX.get('content-type')!;
const CONTENT_LENGTH_INDEX = NAME_INDEX.get('content-length')!;

/** A name's index in the static table: the three every DoH answer carries first (compared as the interned strings they are), then the Map. */
function staticNameIndex(name: string): number | undefined {
  if (name === 'content-type') return CONTENT_TYPE_INDEX;
  if (name === 'content-length') return CONTENT_LENGTH_INDEX;
  if (name === 'cache-control') return CACHE_CONTROL_INDEX;
  return NAME_INDEX.get(name);
}

/** A literal field without indexing whose name is indexed (§6.2.2); -1 when it does not fit. */
function literal(target: Buffer, at: number, nameIndex: number, value: string): number {
  at = writeInteger(target, at, 0x00, 4, nameIndex);
  return at < 0 ? at : writeString(target, at, value);
}

function literalNumber(target: Buffer, at: number, nameIndex: number, value: number): number {
  at = writeInteger(target, at, 0x00, 4, nameIndex);
  return at < 0 ? at : writeDecimal(target, at, value);
}

/** A string literal, raw (not Huffman-coded); -1 when it does not fit. */
function writeString(target: Buffer, at: number, text: string): number {
  at = writeInteger(target, at, 0x00, 7, text.length);
  if (at < 0 || at + text.length > target.length) return -1;
  for (let i = 0; i < text.length; i++) target[at++] = text.charCodeAt(i) & 0xff;
  return at;
}

/** A number as the string literal of its decimal digits, without making that string (for a whole number). */
function writeDecimal(target: Buffer, at: number, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) return writeString(target, at, String(value));
  let digits = 1;
  for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) digits++;
  if (at + 1 + digits > target.length) return -1;
  target[at++] = digits; // a length under 127 fits the 7-bit prefix, raw
  for (let i = digits - 1, rest = value; i >= 0; i--, rest = Math.floor(rest / 10)) target[at + i] = 0x30 + (rest % 10);
  return at + digits;
}

/** An integer with an N-bit prefix (§5.1); -1 when it does not fit. */
function writeInteger(target: Buffer, at: number, flags: number, prefixBits: number, value: number): number {
  const mask = (1 << prefixBits) - 1;
  if (at >= target.length) return -1;
  if (value < mask) {
    target[at++] = flags | value;
    return at;
  }
  target[at++] = flags | mask;
  value -= mask;
  while (value >= 0x80) {
    if (at >= target.length) return -1;
    target[at++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  if (at >= target.length) return -1;
  target[at++] = value;
  return at;
}
