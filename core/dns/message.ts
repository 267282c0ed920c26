/**
 * Building DNS messages on the wire: replies to a query, error replies, truncated replies and
 * plain queries. Everything works on Buffers; no general-purpose encoder is involved.
 */
import { Buffer } from 'node:buffer';
import { DEFAULT_EDNS_UDP_SIZE, HEADER_SIZE, QClass, QType } from './constants.js';
import { encodeName, questionSectionEnd, readEdns, WireError, type Edns } from './wire.js';

/** A resource record ready for the wire. `owner` defaults to a pointer to the question name. */
export interface WireRecord {
  owner?: Buffer;
  type: number;
  qclass?: number;
  ttl: number;
  rdata: Buffer;
}

export interface OptSpec {
  udpSize?: number;
  dnssecOk?: boolean;
  extendedRcode?: number;
  /** Raw EDNS options (code, length, data)… already encoded. */
  options?: Buffer;
}

/** An OPT record's bytes before its RDATA: root name (1), TYPE, CLASS (2 each), TTL (4), RDLENGTH (2). */
export const OPT_FIXED = 11;

/** An OPT pseudo-record (RFC 6891 §6.1.2). */
export function buildOpt(spec: OptSpec = {}): Buffer {
  const options = spec.options ?? Buffer.alloc(0);
  const out = Buffer.allocUnsafe(OPT_FIXED + options.length);
  writeOptFixed(out, 0, spec, options.length);
  options.copy(out, OPT_FIXED);
  return out;
}

/**
 * The fixed part of an OPT record, written at `at` in `out` (its RDATA of `rdataLength` bytes
 * goes after it): for callers that build a message in one buffer.
 */
export function writeOptFixed(out: Buffer, at: number, spec: OptSpec, rdataLength: number): void {
  out[at] = 0; // the root owner name
  out.writeUInt16BE(QType.OPT, at + 1);
  out.writeUInt16BE(spec.udpSize ?? DEFAULT_EDNS_UDP_SIZE, at + 3);
  out[at + 5] = spec.extendedRcode ?? 0;
  out[at + 6] = 0; // version 0
  out.writeUInt16BE(spec.dnssecOk ? 0x8000 : 0, at + 7);
  out.writeUInt16BE(rdataLength, at + 9);
}

/** One EDNS option: code, length, data. */
export function ednsOption(code: number, data: Buffer): Buffer {
  const out = Buffer.alloc(4 + data.length);
  out.writeUInt16BE(code, 0);
  out.writeUInt16BE(data.length, 2);
  data.copy(out, 4);
  return out;
}

function encodeRecord(record: WireRecord): Buffer {
  const owner = record.owner ?? QUESTION_POINTER;
  const out = Buffer.allocUnsafe(owner.length + 10 + record.rdata.length);
  owner.copy(out, 0);
  let pos = owner.length;
  out.writeUInt16BE(record.type, pos);
  out.writeUInt16BE(record.qclass ?? QClass.IN, pos + 2);
  out.writeUInt32BE(record.ttl >>> 0, pos + 4);
  out.writeUInt16BE(record.rdata.length, pos + 8);
  record.rdata.copy(out, pos + 10);
  return out;
}

/** A compression pointer to offset 12, where the (single) question name starts. */
const QUESTION_POINTER = Buffer.from([0xc0, HEADER_SIZE]);

export interface ReplyOptions {
  rcode?: number;
  authoritative?: boolean;
  answers?: WireRecord[];
  authority?: WireRecord[];
  additional?: WireRecord[];
  /** The query's OPT record, if it had one: the reply then carries an OPT of its own. */
  edns?: Edns | null;
  /** Raw EDNS options for the reply's OPT (only used when `edns` is set). */
  ednsOptions?: Buffer;
  /** End of the query's first question; when omitted the reply carries no question. */
  questionEnd?: number;
}

/**
 * A reply to `query`: same ID and opcode, RD and CD copied, RA set, the first question copied
 * byte for byte (so a DNS 0x20 client sees its own case), and the given sections.
 */
export function buildReply(query: Buffer, options: ReplyOptions = {}): Buffer {
  const rcode = options.rcode ?? 0;
  const question = options.questionEnd !== undefined ? query.subarray(HEADER_SIZE, options.questionEnd) : null;
  const answers = (options.answers ?? []).map(encodeRecord);
  const authority = (options.authority ?? []).map(encodeRecord);
  const additional = (options.additional ?? []).map(encodeRecord);
  if (options.edns) {
    additional.push(
      buildOpt({
        dnssecOk: options.edns.dnssecOk,
        extendedRcode: rcode >> 4,
        ...(options.ednsOptions ? { options: options.ednsOptions } : {}),
      }),
    );
  }
  const header = Buffer.alloc(HEADER_SIZE);
  query.copy(header, 0, 0, 2);
  header[2] = 0x80 | (query[2]! & 0x78) | (options.authoritative ? 0x04 : 0) | (query[2]! & 0x01);
  header[3] = 0x80 | (query[3]! & 0x10) | (rcode & 0x0f);
  header.writeUInt16BE(question ? 1 : 0, 4);
  header.writeUInt16BE(answers.length, 6);
  header.writeUInt16BE(authority.length, 8);
  header.writeUInt16BE(additional.length, 10);
  return Buffer.concat([header, ...(question ? [question] : []), ...answers, ...authority, ...additional]);
}

/**
 * A reply carrying only an rcode. The question is copied when `questionEnd` is known; an OPT
 * record is added when the query had one (also needed to carry extended rcodes like BADVERS).
 */
export function errorReply(query: Buffer, rcode: number, questionEnd?: number, edns?: Edns | null): Buffer {
  return buildReply(query, {
    rcode,
    edns: edns ?? null,
    ...(questionEnd !== undefined ? { questionEnd } : {}),
  });
}

/**
 * Cuts a response down to what fits in `maxSize` bytes, RFC 2181 §9 / RFC 6891 style: TC set,
 * answer, authority and additional sections emptied, the question and a fresh OPT record kept
 * when they fit. A client seeing TC retries over TCP.
 */
export function truncateReply(response: Buffer, maxSize: number): Buffer {
  let questionEnd = HEADER_SIZE;
  let opt: Buffer | null = null;
  try {
    questionEnd = questionSectionEnd(response);
    const edns = readEdns(response, questionEnd);
    if (edns) {
      opt = buildOpt({ udpSize: edns.udpSize, dnssecOk: edns.dnssecOk, extendedRcode: edns.extendedRcode });
    }
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
    // A response we cannot walk still gets a valid, question-less TC reply.
    questionEnd = HEADER_SIZE;
    opt = null;
  }
  const header = Buffer.from(response.subarray(0, HEADER_SIZE));
  header[2] = header[2]! | 0x02;
  header.writeUInt16BE(0, 6);
  header.writeUInt16BE(0, 8);
  let question = response.subarray(HEADER_SIZE, questionEnd);
  if (HEADER_SIZE + question.length + (opt?.length ?? 0) > maxSize) opt = null;
  if (HEADER_SIZE + question.length > maxSize) question = response.subarray(HEADER_SIZE, HEADER_SIZE);
  if (question.length === 0) header.writeUInt16BE(0, 4);
  header.writeUInt16BE(opt ? 1 : 0, 10);
  return Buffer.concat(opt ? [header, question, opt] : [header, question]);
}

export interface QueryOptions {
  id?: number;
  qclass?: number;
  recursionDesired?: boolean;
  checkingDisabled?: boolean;
  /** Add an OPT record. `true` means the defaults (1232 bytes, DO clear). */
  edns?: boolean | OptSpec;
}

/** A standard query for one name and type. */
export function buildQuery(name: string, type: number, options: QueryOptions = {}): Buffer {
  const qname = encodeName(name);
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt16BE(options.id ?? 0, 0);
  header[2] = options.recursionDesired === false ? 0 : 0x01;
  header[3] = options.checkingDisabled ? 0x10 : 0;
  header.writeUInt16BE(1, 4);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(options.qclass ?? QClass.IN, 2);
  const parts = [header, qname, tail];
  if (options.edns) {
    header.writeUInt16BE(1, 10);
    parts.push(buildOpt(options.edns === true ? {} : options.edns));
  }
  return Buffer.concat(parts);
}
