/**
 * Changing the EDNS(0) options of a message on the wire: padding (RFC 7830, with RFC 8467's
 * block-length policy) for every query that leaves encrypted, and removing the client's options
 * from queries on their way upstream (Client Subnet tells the resolver where the client is).
 */
import { Buffer } from 'node:buffer';
import { DEFAULT_EDNS_UDP_SIZE, EdnsOption, HEADER_SIZE } from './constants.js';
import { buildOpt, OPT_FIXED, writeOptFixed } from './message.js';
import { arCount, forEachEdnsOption, forEachRecord, readEdns, WireError, type Edns } from './wire.js';

export interface EdnsOptionValue {
  code: number;
  data: Buffer;
}

/** RFC 8467 §4.1: queries are padded to a multiple of 128 bytes. */
export const QUERY_PADDING_BLOCK = 128;
/** RFC 8467 §4.1: responses to a multiple of 468 bytes. */
export const RESPONSE_PADDING_BLOCK = 468;

/**
 * A copy of `msg` whose OPT options are `transform(options)`. Without an OPT record, one is
 * added (payload size 1232) only when `addIfMissing`; otherwise `msg` is returned unchanged.
 */
export function rewriteEdnsOptions(msg: Buffer, transform: (options: EdnsOptionValue[]) => EdnsOptionValue[], addIfMissing = false): Buffer {
  const edns = readEdns(msg);
  if (!edns) {
    if (!addIfMissing) return msg;
    const opt = buildOpt({ udpSize: DEFAULT_EDNS_UDP_SIZE, options: encodeOptions(transform([])) });
    // after the last record: bytes past the records a header counts are not part of the message
    const end = forEachRecord(msg, () => {});
    const out = Buffer.concat([msg.subarray(0, end), opt]);
    out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
    return out;
  }
  const options: EdnsOptionValue[] = [];
  forEachEdnsOption(msg, edns, (code, start, length) => options.push({ code, data: msg.subarray(start, start + length) }));
  const rdata = encodeOptions(transform(options));
  const rdlengthAt = edns.rdataStart - 2;
  const out = Buffer.concat([msg.subarray(0, rdlengthAt), Buffer.alloc(2), rdata, msg.subarray(edns.rdataStart + edns.rdataLength)]);
  out.writeUInt16BE(rdata.length, rdlengthAt);
  return out;
}

function encodeOptions(options: EdnsOptionValue[]): Buffer {
  return Buffer.concat(
    options.map(({ code, data }) => {
      const head = Buffer.alloc(4);
      head.writeUInt16BE(code, 0);
      head.writeUInt16BE(data.length, 2);
      return Buffer.concat([head, data]);
    }),
  );
}

/**
 * Pads `msg` with a Padding option so that its length is a multiple of `block` (an existing
 * Padding option is replaced; an OPT record is added when there is none). One allocation: every
 * query to an encrypted upstream goes through here.
 */
export function padMessage(msg: Buffer, block = QUERY_PADDING_BLOCK): Buffer {
  // A query without additional records (most) has no OPT: no walk through its records.
  const edns = msg.length >= HEADER_SIZE && arCount(msg) === 0 ? null : readEdns(msg);
  if (!edns) {
    const base = msg.length + OPT_FIXED + 4;
    const padding = (block - (base % block)) % block;
    const out = Buffer.allocUnsafe(base + padding);
    msg.copy(out, 0);
    // The OPT record written in place, its RDATA the Padding option.
    writeOptFixed(out, msg.length, { udpSize: DEFAULT_EDNS_UDP_SIZE }, 4 + padding);
    writePadding(out, msg.length + OPT_FIXED, padding);
    out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
    return out;
  }
  let kept = 0;
  forEachEdnsOption(msg, edns, (code, _start, length) => {
    if (code !== EdnsOption.PADDING) kept += 4 + length;
  });
  const rdataEnd = edns.rdataStart + edns.rdataLength;
  const base = edns.rdataStart + kept + 4 + (msg.length - rdataEnd);
  const padding = (block - (base % block)) % block;
  const out = Buffer.allocUnsafe(base + padding);
  msg.copy(out, 0, 0, edns.rdataStart);
  let pos = edns.rdataStart;
  forEachEdnsOption(msg, edns, (code, start, length) => {
    if (code === EdnsOption.PADDING) return;
    msg.copy(out, pos, start - 4, start + length);
    pos += 4 + length;
  });
  writePadding(out, pos, padding);
  msg.copy(out, pos + 4 + padding, rdataEnd);
  out.writeUInt16BE(kept + 4 + padding, edns.rdataStart - 2);
  return out;
}

function writePadding(out: Buffer, at: number, length: number): void {
  out.writeUInt16BE(EdnsOption.PADDING, at);
  out.writeUInt16BE(length, at + 2);
  out.fill(0, at + 4, at + 4 + length);
}

/** True when `msg` carries an EDNS Padding option (a client asking for padded answers). */
export function hasPadding(msg: Buffer): boolean {
  let found = false;
  try {
    const edns = readEdns(msg);
    if (edns) {
      forEachEdnsOption(msg, edns, (code) => {
        if (code === EdnsOption.PADDING) found = true;
      });
    }
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
  }
  return found;
}

/**
 * An answer from an encrypted upstream, fitted to the query the client sent: the padding the
 * upstream added goes (on the way back it only fills the client's UDP buffer), and so does an
 * OPT record when the client's query had none (RFC 6891 §7: no OPT in answers to queries
 * without one; we added it to carry the padding). Responders put OPT last; one that is not last
 * stays (cutting from the middle would break compression pointers after it). Unreadable answers
 * are returned unchanged.
 */
export function fitAnswerToQuery(answer: Buffer, queryHadEdns: boolean): Buffer {
  if (answer.length >= HEADER_SIZE && arCount(answer) === 0) return answer; // no OPT to look for
  let edns: Edns | null;
  try {
    edns = readEdns(answer);
  } catch (err) {
    if (err instanceof WireError) return answer;
    throw err;
  }
  if (!edns) return answer;
  if (!queryHadEdns) {
    if (edns.end !== answer.length) return answer;
    const out = Buffer.from(answer.subarray(0, edns.start));
    out.writeUInt16BE(out.readUInt16BE(10) - 1, 10);
    return out;
  }
  let padded = false;
  forEachEdnsOption(answer, edns, (code) => {
    if (code === EdnsOption.PADDING) padded = true;
  });
  return padded ? rewriteEdnsOptions(answer, (options) => options.filter((o) => o.code !== EdnsOption.PADDING)) : answer;
}

/**
 * The query as it may leave for an upstream: the OPT record keeps its flags (DO) and version but
 * none of the client's options, and advertises at most 1232 bytes. Every option a client sends
 * is either about the hop to Veil or tells something about the client: Client Subnet (RFC 7871)
 * its network, a Cookie (RFC 7873) a value that follows it across networks, and the rest
 * (NSID, Keepalive, Padding...) concern the client's own connection. Veil adds what it needs
 * (padding on encrypted transports) after this. A client's large buffer size would invite
 * answers that fragment on the way back (RFC 8900); the UDP upstream asks again over TCP when
 * an answer does not fit. One copy when something changes; the query itself otherwise.
 */
export function ednsForUpstream(msg: Buffer): Buffer {
  const edns = readEdns(msg);
  if (!edns) return msg;
  const udpSize = Math.min(edns.udpSize, DEFAULT_EDNS_UDP_SIZE);
  if (edns.rdataLength === 0 && udpSize === edns.udpSize) return msg;
  const rdataEnd = edns.rdataStart + edns.rdataLength;
  const out = Buffer.allocUnsafe(msg.length - edns.rdataLength);
  msg.copy(out, 0, 0, edns.rdataStart);
  msg.copy(out, edns.rdataStart, rdataEnd);
  out.writeUInt16BE(0, edns.rdataStart - 2);
  // OPT: root name (1 byte), TYPE (2), then CLASS, which carries the payload size.
  out.writeUInt16BE(udpSize, edns.start + 3);
  return out;
}
