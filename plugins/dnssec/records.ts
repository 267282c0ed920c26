/**
 * A DNS message read whole for validation: every record with its names decompressed (so its
 * RDATA can be put in canonical form, RFC 4034 §6.2), records grouped into RRsets with the
 * RRSIGs that cover them, and the message written back out after records were removed.
 */
import { Buffer } from 'node:buffer';
import { HEADER_SIZE, QType } from '../../core/dns/constants.js';
import { anCount, arCount, nsCount, qdCount, rcodeOf, WireError } from '../../core/dns/wire.js';
import { lowerName, readWireName, type WireName } from './names.js';

export const Type = {
  ...QType,
  DNAME: 39,
  DS: 43,
  RRSIG: 46,
  NSEC: 47,
  DNSKEY: 48,
  NSEC3: 50,
  NSEC3PARAM: 51,
} as const;

/** Types that only DNSSEC-aware clients (DO=1) get unless they asked for them (RFC 4035 §3.2.1). */
export const DNSSEC_TYPES: ReadonlySet<number> = new Set([Type.RRSIG, Type.NSEC, Type.NSEC3]);

export interface Rr {
  /** Lower-case owner name. */
  owner: WireName;
  /** The owner as the server wrote it, for the answer we pass on. */
  rawOwner: WireName;
  type: number;
  qclass: number;
  ttl: number;
  /** RDATA with every embedded name decompressed, case kept. */
  rdata: Buffer;
  section: 0 | 1 | 2;
}

export interface Message {
  /** The 12 header bytes as received. */
  header: Buffer;
  rcode: number;
  /** The question section's bytes as received. */
  question: Buffer;
  qname: WireName;
  qtype: number;
  qclass: number;
  answer: Rr[];
  authority: Rr[];
  /** The additional section without the OPT record. */
  additional: Rr[];
}

/**
 * Where names sit in the RDATA of the types that hold them: a number is a fixed number of
 * bytes, 'n' a name, 's' a character-string; anything after the layout is copied as it is.
 */
const LAYOUTS: Record<number, ReadonlyArray<number | 'n' | 's'>> = {
  2: ['n'], 3: ['n'], 4: ['n'], 5: ['n'], 7: ['n'], 8: ['n'], 9: ['n'], 12: ['n'], 39: ['n'],
  6: ['n', 'n'], 14: ['n', 'n'], 17: ['n', 'n'],
  15: [2, 'n'], 18: [2, 'n'], 21: [2, 'n'], 36: [2, 'n'],
  26: [2, 'n', 'n'], 33: [6, 'n'], 35: [4, 's', 's', 's', 'n'],
  24: [18, 'n'], 46: [18, 'n'], 47: ['n'],
};

/**
 * RFC 4034 §6.2 as corrected by RFC 6840 §5.1: the types whose RDATA names are lower-cased in
 * canonical form. NSEC is not one of them; RRSIG is.
 */
const LOWERED: ReadonlySet<number> = new Set([2, 3, 4, 5, 6, 7, 8, 9, 12, 14, 15, 17, 18, 21, 24, 26, 33, 35, 36, 39, 46]);

/** Reads every record of `msg`. Throws WireError when anything is malformed. */
export function parseMessage(msg: Buffer): Message {
  if (msg.length < HEADER_SIZE) throw new WireError('message shorter than a DNS header');
  if (qdCount(msg) !== 1) throw new WireError('a response must carry exactly one question');
  const q = readWireName(msg, HEADER_SIZE);
  if (q.end + 4 > msg.length) throw new WireError('question runs past the end of the message');
  const message: Message = {
    header: Buffer.from(msg.subarray(0, HEADER_SIZE)),
    rcode: rcodeOf(msg),
    question: Buffer.from(msg.subarray(HEADER_SIZE, q.end + 4)),
    qname: lowerName(q.name),
    qtype: msg.readUInt16BE(q.end),
    qclass: msg.readUInt16BE(q.end + 2),
    answer: [],
    authority: [],
    additional: [],
  };
  let pos = q.end + 4;
  const counts = [anCount(msg), nsCount(msg), arCount(msg)];
  const lists = [message.answer, message.authority, message.additional];
  for (let section = 0; section < 3; section++) {
    for (let i = 0; i < counts[section]!; i++) {
      const owner = readWireName(msg, pos);
      const fixed = owner.end;
      if (fixed + 10 > msg.length) throw new WireError('record runs past the end of the message');
      const type = msg.readUInt16BE(fixed);
      const length = msg.readUInt16BE(fixed + 8);
      const start = fixed + 10;
      const end = start + length;
      if (end > msg.length) throw new WireError('record data runs past the end of the message');
      pos = end;
      if (type === Type.OPT) continue;
      lists[section]!.push({
        owner: lowerName(owner.name),
        rawOwner: owner.name,
        type,
        qclass: msg.readUInt16BE(fixed + 2),
        ttl: msg.readUInt32BE(fixed + 4),
        rdata: readRdata(msg, type, start, end),
        section: section as 0 | 1 | 2,
      });
    }
  }
  return message;
}

function readRdata(msg: Buffer, type: number, start: number, end: number): Buffer {
  const layout = LAYOUTS[type];
  if (!layout) return Buffer.from(msg.subarray(start, end));
  const parts: Buffer[] = [];
  let pos = start;
  for (const field of layout) {
    if (field === 'n') {
      const name = readWireName(msg, pos);
      if (name.end > end) throw new WireError('name runs past its record');
      parts.push(name.name);
      pos = name.end;
    } else {
      const size = field === 's' ? 1 + (msg[pos] ?? 0) : field;
      if (pos + size > end) throw new WireError('record data shorter than its type needs');
      parts.push(msg.subarray(pos, pos + size));
      pos += size;
    }
  }
  parts.push(msg.subarray(pos, end));
  return Buffer.concat(parts);
}

/** The RDATA in canonical form: names lower-cased for the types RFC 4034 §6.2 lists. */
export function canonicalRdata(type: number, rdata: Buffer): Buffer {
  if (!LOWERED.has(type)) return rdata;
  const layout = LAYOUTS[type]!;
  const out = Buffer.from(rdata);
  let pos = 0;
  for (const field of layout) {
    if (field === 'n') {
      while (pos < out.length && out[pos] !== 0) {
        const len = out[pos]!;
        for (let i = pos + 1; i <= pos + len && i < out.length; i++) {
          const c = out[i]!;
          if (c >= 0x41 && c <= 0x5a) out[i] = c | 0x20;
        }
        pos += len + 1;
      }
      pos++;
    } else {
      pos += field === 's' ? 1 + (out[pos] ?? 0) : field;
    }
  }
  return out;
}

// ---- RRSIG ---------------------------------------------------------------------------------

export interface Rrsig {
  rr: Rr;
  typeCovered: number;
  algorithm: number;
  labels: number;
  originalTtl: number;
  expiration: number;
  inception: number;
  keyTag: number;
  /** Lower-case signer name. */
  signer: WireName;
  signature: Buffer;
  /** The RDATA without the signature, signer lower-cased: the start of the signed data. */
  signedPrefix: Buffer;
}

export function readRrsig(rr: Rr): Rrsig {
  const d = rr.rdata;
  if (d.length < 19) throw new WireError('RRSIG shorter than its fixed fields');
  const signer = readWireName(d, 18);
  const prefix = Buffer.concat([d.subarray(0, 18), lowerName(signer.name)]);
  return {
    rr,
    typeCovered: d.readUInt16BE(0),
    algorithm: d[2]!,
    labels: d[3]!,
    originalTtl: d.readUInt32BE(4),
    expiration: d.readUInt32BE(8),
    inception: d.readUInt32BE(12),
    keyTag: d.readUInt16BE(16),
    signer: lowerName(signer.name),
    signature: d.subarray(signer.end),
    signedPrefix: prefix,
  };
}

// ---- RRsets --------------------------------------------------------------------------------

export interface RRset {
  owner: WireName;
  type: number;
  qclass: number;
  rrs: Rr[];
  sigs: Rrsig[];
}

/**
 * Groups the records of one section into RRsets with the RRSIGs covering them. An RRSIG whose
 * RRset is missing from the section is dropped; an unreadable RRSIG makes the message bad.
 */
export function groupRRsets(rrs: readonly Rr[]): RRset[] {
  const sets = new Map<string, RRset>();
  const keyOf = (owner: WireName, type: number, qclass: number) => `${owner.toString('latin1')}/${type}/${qclass}`;
  for (const rr of rrs) {
    if (rr.type === Type.RRSIG) continue;
    const key = keyOf(rr.owner, rr.type, rr.qclass);
    let set = sets.get(key);
    if (!set) sets.set(key, (set = { owner: rr.owner, type: rr.type, qclass: rr.qclass, rrs: [], sigs: [] }));
    if (!set.rrs.some((other) => other.rdata.equals(rr.rdata))) set.rrs.push(rr);
  }
  for (const rr of rrs) {
    if (rr.type !== Type.RRSIG) continue;
    const sig = readRrsig(rr);
    sets.get(keyOf(rr.owner, sig.typeCovered, rr.qclass))?.sigs.push(sig);
  }
  return [...sets.values()];
}

/** The smallest TTL of an RRset's records. */
export function rrsetTtl(set: RRset): number {
  let ttl = Infinity;
  for (const rr of set.rrs) ttl = Math.min(ttl, rr.ttl);
  return ttl === Infinity ? 0 : ttl;
}

// ---- type bitmaps (NSEC, NSEC3) ------------------------------------------------------------

/** True when the RFC 4034 §4.1.2 type bitmap at `bitmap` lists `type`. Malformed: false. */
export function bitmapHas(bitmap: Buffer, type: number): boolean {
  const window = type >> 8;
  const bit = type & 0xff;
  let pos = 0;
  while (pos + 2 <= bitmap.length) {
    const w = bitmap[pos]!;
    const len = bitmap[pos + 1]!;
    if (len < 1 || len > 32 || pos + 2 + len > bitmap.length) return false;
    if (w === window) {
      const byte = bit >> 3;
      return byte < len && (bitmap[pos + 2 + byte]! & (0x80 >> (bit & 7))) !== 0;
    }
    pos += 2 + len;
  }
  return false;
}

// ---- writing back --------------------------------------------------------------------------

/**
 * The message with the given sections: owner names compressed against the question and earlier
 * owners, RDATA written uncompressed (always legal, RFC 3597 §4). `opt` is appended to the
 * additional section as it is.
 */
export function writeMessage(header: Buffer, question: Buffer, sections: readonly [Rr[], Rr[], Rr[]], opt: Buffer | null): Buffer {
  const parts: Buffer[] = [];
  const known = new Map<string, number>();
  let size = HEADER_SIZE;
  const head = Buffer.from(header);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(sections[0].length, 6);
  head.writeUInt16BE(sections[1].length, 8);
  head.writeUInt16BE(sections[2].length + (opt ? 1 : 0), 10);
  parts.push(head);
  remember(readWireName(question, 0).name, HEADER_SIZE, known);
  parts.push(question);
  size += question.length;
  for (const section of sections) {
    for (const rr of section) {
      const owner = compressed(rr.rawOwner, size, known);
      const fixed = Buffer.allocUnsafe(10);
      fixed.writeUInt16BE(rr.type, 0);
      fixed.writeUInt16BE(rr.qclass, 2);
      fixed.writeUInt32BE(rr.ttl >>> 0, 4);
      fixed.writeUInt16BE(rr.rdata.length, 8);
      parts.push(owner, fixed, rr.rdata);
      size += owner.length + 10 + rr.rdata.length;
    }
  }
  if (opt) parts.push(opt);
  return Buffer.concat(parts);
}

/** Notes where each suffix of the (uncompressed) name written at `offset` starts, up to `upto`. */
function remember(name: WireName, offset: number, known: Map<string, number>, upto = name.length): void {
  let pos = 0;
  while (pos < upto && name[pos] !== 0 && offset + pos < 0x4000) {
    const key = lowerName(name.subarray(pos)).toString('latin1');
    if (!known.has(key)) known.set(key, offset + pos);
    pos += name[pos]! + 1;
  }
}

function compressed(name: WireName, offset: number, known: Map<string, number>): Buffer {
  let pos = 0;
  while (pos < name.length && name[pos] !== 0) {
    const at = known.get(lowerName(name.subarray(pos)).toString('latin1'));
    if (at !== undefined) {
      const out = Buffer.allocUnsafe(pos + 2);
      name.copy(out, 0, 0, pos);
      out.writeUInt16BE(0xc000 | at, pos);
      remember(name, offset, known, pos);
      return out;
    }
    pos += name[pos]! + 1;
  }
  remember(name, offset, known);
  return name;
}
