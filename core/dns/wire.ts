/**
 * Reading DNS messages straight from wire Buffers, without a full decode.
 *
 * The hot path needs only the header, the question and the OPT record. Everything here is
 * bounds-checked and treats the bytes as hostile: a malformed message throws `WireError`, which
 * the listener turns into FORMERR (or silence when not even a header can be read).
 */
import { Buffer } from 'node:buffer';
import { WireError } from '../errors.js';
import { HEADER_SIZE, QType } from './constants.js';

export { WireError };

// ---- header -------------------------------------------------------------------------------

export const readId = (msg: Buffer): number => msg.readUInt16BE(0);
export const isResponse = (msg: Buffer): boolean => (msg[2]! & 0x80) !== 0;
export const opcodeOf = (msg: Buffer): number => (msg[2]! >> 3) & 0x0f;
export const isTruncated = (msg: Buffer): boolean => (msg[2]! & 0x02) !== 0;
export const recursionDesired = (msg: Buffer): boolean => (msg[2]! & 0x01) !== 0;
export const checkingDisabled = (msg: Buffer): boolean => (msg[3]! & 0x10) !== 0;
/** The 4-bit header rcode; the extended bits live in the OPT record. */
export const rcodeOf = (msg: Buffer): number => msg[3]! & 0x0f;
export const qdCount = (msg: Buffer): number => msg.readUInt16BE(4);
export const anCount = (msg: Buffer): number => msg.readUInt16BE(6);
export const nsCount = (msg: Buffer): number => msg.readUInt16BE(8);
export const arCount = (msg: Buffer): number => msg.readUInt16BE(10);

export function writeId(msg: Buffer, id: number): void {
  msg.writeUInt16BE(id, 0);
}

/** Header flags as dig prints them: `qr aa tc rd ra ad cd`. */
export function flagNames(msg: Buffer): string[] {
  const flags: string[] = [];
  const a = msg[2]!;
  const b = msg[3]!;
  if (a & 0x80) flags.push('qr');
  if (a & 0x04) flags.push('aa');
  if (a & 0x02) flags.push('tc');
  if (a & 0x01) flags.push('rd');
  if (b & 0x80) flags.push('ra');
  if (b & 0x20) flags.push('ad');
  if (b & 0x10) flags.push('cd');
  return flags;
}

// ---- names --------------------------------------------------------------------------------

const MAX_NAME_WIRE_LENGTH = 255;
/** A legal message never needs more jumps than it has labels; this bounds pointer chains. */
const MAX_POINTER_JUMPS = 64;

/**
 * Returns the offset just after the name at `offset`, following no pointers (a pointer ends a
 * name in place). Validates label types and lengths.
 */
export function skipName(msg: Buffer, offset: number): number {
  let pos = offset;
  let total = 1;
  for (;;) {
    if (pos >= msg.length) throw new WireError('name runs past the end of the message');
    const len = msg[pos]!;
    if (len === 0) return pos + 1;
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= msg.length) throw new WireError('truncated compression pointer');
      return pos + 2;
    }
    if (kind !== 0) throw new WireError(`unsupported label type 0x${kind.toString(16)}`);
    total += len + 1;
    if (total > MAX_NAME_WIRE_LENGTH) throw new WireError('name longer than 255 bytes');
    pos += len + 1;
  }
}

export interface DecodedName {
  /** Presentation form with a trailing dot, bytes as sent (case kept). Root is ".". */
  name: string;
  /** Offset just after the name in the message (after the first pointer, if any). */
  end: number;
}

/**
 * Decodes the name at `offset`, following compression pointers. A pointer must point strictly
 * backwards, the number of jumps is bounded, and the expanded name may not exceed 255 bytes: so
 * pointer loops and forward references are errors, never hangs.
 */
export function readName(msg: Buffer, offset: number): DecodedName {
  let pos = offset;
  let end = -1;
  let jumps = 0;
  let total = 1;
  let name = '';
  for (;;) {
    if (pos >= msg.length) throw new WireError('name runs past the end of the message');
    const len = msg[pos]!;
    if (len === 0) {
      if (end < 0) end = pos + 1;
      return { name: name === '' ? '.' : name, end };
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= msg.length) throw new WireError('truncated compression pointer');
      const target = ((len & 0x3f) << 8) | msg[pos + 1]!;
      if (target >= pos) throw new WireError('compression pointer does not point backwards');
      if (++jumps > MAX_POINTER_JUMPS) throw new WireError('too many compression pointers');
      if (end < 0) end = pos + 2;
      pos = target;
      continue;
    }
    if (kind !== 0) throw new WireError(`unsupported label type 0x${kind.toString(16)}`);
    total += len + 1;
    if (total > MAX_NAME_WIRE_LENGTH) throw new WireError('name longer than 255 bytes');
    if (pos + 1 + len > msg.length) throw new WireError('label runs past the end of the message');
    name += labelText(msg, pos + 1, pos + 1 + len) + '.';
    pos += len + 1;
  }
}

/** One label in presentation form: `.`, `\` and bytes outside printable ASCII are escaped. */
function labelText(msg: Buffer, start: number, end: number): string {
  let plain = true;
  for (let i = start; i < end; i++) {
    const c = msg[i]!;
    if (c <= 0x20 || c >= 0x7f || c === 0x2e || c === 0x5c) {
      plain = false;
      break;
    }
  }
  if (plain) return msg.toString('latin1', start, end);
  let out = '';
  for (let i = start; i < end; i++) {
    const c = msg[i]!;
    if (c === 0x2e || c === 0x5c) out += '\\' + String.fromCharCode(c);
    else if (c <= 0x20 || c >= 0x7f) out += '\\' + String(c).padStart(3, '0');
    else out += String.fromCharCode(c);
  }
  return out;
}

/**
 * Encodes a presentation-form name (trailing dot optional, `\.` and `\DDD` escapes understood)
 * into uncompressed wire form.
 */
export function encodeName(name: string): Buffer {
  if (name === '.' || name === '') return Buffer.from([0]);
  const labels: number[][] = [];
  let current: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const ch = name.charCodeAt(i);
    if (ch === 0x5c) {
      const digits = name.slice(i + 1, i + 4);
      if (/^\d{3}$/.test(digits)) {
        const value = Number(digits);
        if (value > 255) throw new WireError(`bad escape \\${digits} in name`);
        current.push(value);
        i += 3;
      } else if (i + 1 < name.length) {
        current.push(name.charCodeAt(++i));
      } else {
        throw new WireError('name ends with a backslash');
      }
    } else if (ch === 0x2e) {
      if (current.length === 0) throw new WireError(`empty label in "${name}"`);
      labels.push(current);
      current = [];
    } else {
      if (ch > 0xff) throw new WireError(`non-ASCII character in name "${name}"`);
      current.push(ch);
    }
  }
  if (current.length > 0) labels.push(current);
  let size = 1;
  for (const label of labels) {
    if (label.length > 63) throw new WireError(`label longer than 63 bytes in "${name}"`);
    size += label.length + 1;
  }
  if (size > MAX_NAME_WIRE_LENGTH) throw new WireError(`name longer than 255 bytes: "${name}"`);
  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  for (const label of labels) {
    out[pos++] = label.length;
    for (const byte of label) out[pos++] = byte;
  }
  out[pos] = 0;
  return out;
}

/** Lower-cases ASCII letters only (DNS names compare case-insensitively in ASCII, RFC 4343). */
export function lowerName(name: string): string {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return name.toLowerCase();
  }
  return name;
}

/** Canonical form used for zones and lookups: lower-case, trailing dot, root is ".". */
export function canonicalName(name: string): string {
  if (name === '' || name === '.') return '.';
  const lower = lowerName(name);
  return lower.endsWith('.') && !lower.endsWith('\\.') ? lower : lower + '.';
}

/** True when `name` equals `zone` or lies below it; both canonical. */
export function isSubdomain(name: string, zone: string): boolean {
  if (zone === '.') return true;
  return name === zone || (name.endsWith(zone) && name[name.length - zone.length - 1] === '.');
}

// ---- question -----------------------------------------------------------------------------

export interface Question {
  /** Canonical (lower-case, trailing dot) query name. */
  name: string;
  /** The name as the client wrote it (case kept: DNS 0x20 clients depend on that). */
  rawName: string;
  type: number;
  qclass: number;
  /** Offset just after the question section's first entry. */
  end: number;
}

/**
 * A question read from a message whose name, as a string, is made only when asked for: a cache
 * hit works on the bytes and never needs it. The message is a query nobody writes into.
 */
class WireQuestion implements Question {
  private raw: string | undefined;
  private canonical: string | undefined;

  constructor(
    private readonly msg: Buffer,
    readonly type: number,
    readonly qclass: number,
    readonly end: number,
    raw: string | undefined,
  ) {
    this.raw = raw;
  }

  get rawName(): string {
    return (this.raw ??= readName(this.msg, HEADER_SIZE).name);
  }

  get name(): string {
    return (this.canonical ??= lowerName(this.rawName));
  }
}

/** Reads the first question. Throws WireError when the message has none or it is malformed. */
export function readQuestion(msg: Buffer): Question {
  if (msg.length < HEADER_SIZE) throw new WireError('message shorter than a DNS header');
  if (qdCount(msg) === 0) throw new WireError('message has no question');
  // skipName checks a name written without pointers as fully as readName does; a name with a
  // pointer (legal, rare in a question) is decoded now, so that every error is thrown here.
  let nameEnd = skipName(msg, HEADER_SIZE);
  let label = HEADER_SIZE;
  while (msg[label] !== 0 && (msg[label]! & 0xc0) === 0) label += msg[label]! + 1; // the labels skipName just checked
  let raw: string | undefined;
  if (msg[label] !== 0) ({ name: raw, end: nameEnd } = readName(msg, HEADER_SIZE));
  if (nameEnd + 4 > msg.length) throw new WireError('question runs past the end of the message');
  return new WireQuestion(msg, msg.readUInt16BE(nameEnd), msg.readUInt16BE(nameEnd + 2), nameEnd + 4, raw);
}

/** Offset after the whole question section (all QDCOUNT entries). */
export function questionSectionEnd(msg: Buffer): number {
  if (msg.length < HEADER_SIZE) throw new WireError('message shorter than a DNS header');
  let pos = HEADER_SIZE;
  const count = qdCount(msg);
  for (let i = 0; i < count; i++) {
    pos = skipName(msg, pos) + 4;
    if (pos > msg.length) throw new WireError('question runs past the end of the message');
  }
  return pos;
}

/**
 * True when both messages carry the same first question (name compared case-insensitively,
 * type and class exactly). Used to accept an upstream answer only for the query it belongs to.
 * Compares the bytes in place; only a question written with compression pointers (legal, but
 * no server does it) takes the decoding path.
 */
export function sameQuestion(a: Buffer, b: Buffer): boolean {
  if (a.length < HEADER_SIZE + 5 || b.length < HEADER_SIZE + 5 || qdCount(a) === 0 || qdCount(b) === 0) return false;
  let pos = HEADER_SIZE;
  for (;;) {
    if (pos >= a.length || pos >= b.length) return false;
    const len = a[pos]!;
    if (len !== b[pos]) return false;
    if (len === 0) break;
    if (len > 63) return sameQuestionDecoded(a, b);
    if (pos + 1 + len > a.length || pos + 1 + len > b.length) return false;
    for (let i = pos + 1; i <= pos + len; i++) {
      const x = a[i]!;
      const y = b[i]!;
      if (x !== y && (x | 0x20) !== (y | 0x20)) return false;
      if (x !== y && !((x | 0x20) >= 0x61 && (x | 0x20) <= 0x7a)) return false;
    }
    pos += len + 1;
  }
  pos++;
  if (pos + 4 > a.length || pos + 4 > b.length) return false;
  return a.readUInt32BE(pos) === b.readUInt32BE(pos);
}

function sameQuestionDecoded(a: Buffer, b: Buffer): boolean {
  try {
    const qa = readQuestion(a);
    const qb = readQuestion(b);
    return qa.type === qb.type && qa.qclass === qb.qclass && qa.name === qb.name;
  } catch {
    return false;
  }
}

// ---- resource records ---------------------------------------------------------------------

export interface RecordPosition {
  /** Offset of the owner name. */
  start: number;
  /** Offset of TYPE (just after the owner name). */
  fixed: number;
  type: number;
  rdataStart: number;
  rdataLength: number;
  /** Offset just after the record. */
  end: number;
  /** 0 answer, 1 authority, 2 additional. */
  section: 0 | 1 | 2;
}

/**
 * Walks every record after the question section, calling `visit` with each record's position.
 * `visit` may return `false` to stop early. Throws WireError on malformed records.
 */
export function forEachRecord(
  msg: Buffer,
  visit: (rr: RecordPosition) => boolean | void,
  from: number = questionSectionEnd(msg),
): number {
  if (msg.length < HEADER_SIZE) throw new WireError('message shorter than a DNS header');
  let pos = from;
  const counts = [anCount(msg), nsCount(msg), arCount(msg)];
  for (let section = 0 as 0 | 1 | 2; section < 3; section = (section + 1) as 0 | 1 | 2) {
    for (let i = 0; i < counts[section]!; i++) {
      const start = pos;
      const fixed = skipName(msg, pos);
      if (fixed + 10 > msg.length) throw new WireError('record runs past the end of the message');
      const rdataLength = msg.readUInt16BE(fixed + 8);
      const end = fixed + 10 + rdataLength;
      if (end > msg.length) throw new WireError('record data runs past the end of the message');
      const rr: RecordPosition = {
        start,
        fixed,
        type: msg.readUInt16BE(fixed),
        rdataStart: fixed + 10,
        rdataLength,
        end,
        section,
      };
      if (visit(rr) === false) return pos;
      pos = end;
    }
    if (section === 2) break;
  }
  return pos;
}

// ---- EDNS(0) ------------------------------------------------------------------------------

export interface Edns {
  /** The requestor's UDP payload size as sent (may be below 512; callers clamp). */
  udpSize: number;
  extendedRcode: number;
  version: number;
  /** The DO bit: the client wants DNSSEC records. */
  dnssecOk: boolean;
  /** Offset of the OPT record (its owner name) and of its end. */
  start: number;
  end: number;
  rdataStart: number;
  rdataLength: number;
}

/**
 * Finds the OPT record. Returns null when there is none. Throws WireError for a message whose
 * records are malformed, an OPT outside the additional section, an OPT with a name other than
 * root, or more than one OPT (RFC 6891 §6.1.1: FORMERR).
 */
export function readEdns(msg: Buffer, from?: number): Edns | null {
  let found: Edns | null = null;
  forEachRecord(
    msg,
    (rr) => {
      if (rr.type !== QType.OPT) return;
      if (rr.section !== 2) throw new WireError('OPT record outside the additional section');
      if (found) throw new WireError('more than one OPT record');
      if (rr.fixed !== rr.start + 1 || msg[rr.start] !== 0) throw new WireError('OPT record with a non-root name');
      const ttl = msg.readUInt32BE(rr.fixed + 4);
      found = {
        udpSize: msg.readUInt16BE(rr.fixed + 2),
        extendedRcode: ttl >>> 24,
        version: (ttl >>> 16) & 0xff,
        dnssecOk: (ttl & 0x8000) !== 0,
        start: rr.start,
        end: rr.end,
        rdataStart: rr.rdataStart,
        rdataLength: rr.rdataLength,
      };
    },
    from,
  );
  return found;
}

/** Calls `visit(code, dataStart, dataLength)` for every option in an OPT record's RDATA. */
export function forEachEdnsOption(
  msg: Buffer,
  edns: Pick<Edns, 'rdataStart' | 'rdataLength'>,
  visit: (code: number, start: number, length: number) => void,
): void {
  let pos = edns.rdataStart;
  const end = edns.rdataStart + edns.rdataLength;
  while (pos < end) {
    if (pos + 4 > end) throw new WireError('truncated EDNS option header');
    const code = msg.readUInt16BE(pos);
    const length = msg.readUInt16BE(pos + 2);
    if (pos + 4 + length > end) throw new WireError('EDNS option runs past its record');
    visit(code, pos + 4, length);
    pos += 4 + length;
  }
}

/** The full response code: header bits plus the OPT record's extended bits. */
export function fullRcode(msg: Buffer): number {
  const low = rcodeOf(msg);
  if (arCount(msg) === 0) return low;
  try {
    const edns = readEdns(msg);
    return edns ? (edns.extendedRcode << 4) | low : low;
  } catch {
    return low;
  }
}

/** The smallest TTL over answer and authority records (the OPT "TTL" is not a TTL). */
export function minimumTtl(msg: Buffer): number | undefined {
  // Its own walk rather than forEachRecord with a callback: it runs on every DoH answer, and
  // this way allocates nothing (no closure, no record object per record). Same records, same
  // errors.
  let pos = questionSectionEnd(msg);
  const records = anCount(msg) + nsCount(msg) + arCount(msg);
  let min: number | undefined;
  for (let i = 0; i < records; i++) {
    const fixed = skipName(msg, pos);
    if (fixed + 10 > msg.length) throw new WireError('record runs past the end of the message');
    const end = fixed + 10 + msg.readUInt16BE(fixed + 8);
    if (end > msg.length) throw new WireError('record data runs past the end of the message');
    if (msg.readUInt16BE(fixed) !== QType.OPT) {
      const ttl = msg.readUInt32BE(fixed + 4);
      if (min === undefined || ttl < min) min = ttl;
    }
    pos = end;
  }
  return min;
}
