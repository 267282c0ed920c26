/**
 * Changing the EDNS(0) options of a message on the wire: padding (RFC 7830, with RFC 8467's
 * block-length policy) for every query that leaves encrypted, and removing options a query must
 * not carry upstream (EDNS Client Subnet: it tells the resolver where the client is).
 */
import { DEFAULT_EDNS_UDP_SIZE, EdnsOption } from './constants.js';
import { buildOpt } from './message.js';
import { forEachEdnsOption, readEdns } from './wire.js';

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
    const out = Buffer.concat([msg, opt]);
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
 * Padding option is replaced; an OPT record is added when there is none).
 */
export function padMessage(msg: Buffer, block = QUERY_PADDING_BLOCK): Buffer {
  const withoutPadding = rewriteEdnsOptions(msg, (options) => options.filter((o) => o.code !== EdnsOption.PADDING), true);
  const padding = (block - ((withoutPadding.length + 4) % block)) % block;
  return rewriteEdnsOptions(withoutPadding, (options) => [...options, { code: EdnsOption.PADDING, data: Buffer.alloc(padding) }]);
}

/** Removes EDNS Client Subnet (RFC 7871) from a query, if it carries one. */
export function stripClientSubnet(msg: Buffer): Buffer {
  let found = false;
  const edns = readEdns(msg);
  if (!edns) return msg;
  forEachEdnsOption(msg, edns, (code) => {
    if (code === EdnsOption.ECS) found = true;
  });
  return found ? rewriteEdnsOptions(msg, (options) => options.filter((o) => o.code !== EdnsOption.ECS)) : msg;
}

/**
 * The response without its OPT record, for a client whose query had none (RFC 6891 §7: OPT
 * only in answer to OPT): an upstream may have seen one only because we added it, e.g. for
 * padding. Responders put OPT last; when it is not last the message is returned unchanged
 * (cutting from the middle would break compression pointers after it).
 */
export function removeOpt(msg: Buffer): Buffer {
  const edns = readEdns(msg);
  if (!edns || edns.end !== msg.length) return msg;
  const out = Buffer.from(msg.subarray(0, edns.start));
  out.writeUInt16BE(out.readUInt16BE(10) - 1, 10);
  return out;
}
