/**
 * The JSON form of DoH many tools use (`?name=example.org&type=AAAA`, answered as
 * `application/dns-json`), in the shape Google and Cloudflare publish: Status, the header flags,
 * Question, and Answer/Authority/Additional with name, type, TTL and data in presentation form.
 * Not a hot path: answers are walked record by record.
 */
import { QType, typeNumber } from '../../../core/dns/constants.js';
import { buildQuery } from '../../../core/dns/message.js';
import { forEachRecord, fullRcode, readName, readQuestion, WireError, type RecordPosition } from '../../../core/dns/wire.js';

export const DNS_JSON = 'application/dns-json';

/** Why the parameters are unusable, or the wire query they ask for. */
export function queryFromParams(params: URLSearchParams): Buffer | string {
  const name = params.get('name');
  if (!name) return 'the "name" parameter is missing';
  const typeText = params.get('type') ?? 'A';
  const type = /^\d+$/.test(typeText) ? Number(typeText) : typeNumber(typeText);
  if (type === undefined || type < 1 || type > 65535) return `"${typeText}" is not a record type`;
  const dnssecOk = isTrue(params.get('do'));
  try {
    return buildQuery(name, type, { id: 0, checkingDisabled: isTrue(params.get('cd')), edns: { dnssecOk } });
  } catch (err) {
    return `"${name}" is not a domain name: ${(err as Error).message}`;
  }
}

function isTrue(value: string | null): boolean {
  return value === '1' || value === 'true';
}

interface JsonRecord {
  name: string;
  type: number;
  TTL: number;
  data: string;
}

/** The answer as a JSON document. */
export function answerToJson(answer: Buffer): string {
  const question = readQuestion(answer);
  const sections: JsonRecord[][] = [[], [], []];
  forEachRecord(answer, (rr) => {
    if (rr.type === QType.OPT) return;
    sections[rr.section]!.push({
      name: readName(answer, rr.start).name,
      type: rr.type,
      TTL: answer.readUInt32BE(rr.fixed + 4),
      data: rdataText(answer, rr),
    });
  });
  const flags = answer.readUInt16BE(2);
  const doc: Record<string, unknown> = {
    Status: fullRcode(answer),
    TC: (flags & 0x0200) !== 0,
    RD: (flags & 0x0100) !== 0,
    RA: (flags & 0x0080) !== 0,
    AD: (flags & 0x0020) !== 0,
    CD: (flags & 0x0010) !== 0,
    Question: [{ name: question.rawName, type: question.type }],
  };
  if (sections[0]!.length) doc.Answer = sections[0];
  if (sections[1]!.length) doc.Authority = sections[1];
  if (sections[2]!.length) doc.Additional = sections[2];
  return JSON.stringify(doc);
}

/**
 * RDATA in presentation form for common types; RFC 3597's `\# LENGTH HEX` otherwise, and for
 * RDATA that does not hold what its type promises (an upstream's bytes are not to be trusted:
 * names and numbers must end exactly where the record does).
 */
function rdataText(msg: Buffer, rr: RecordPosition): string {
  const start = rr.rdataStart;
  const end = start + rr.rdataLength;
  try {
    const text = typedRdataText(msg, rr.type, start, end);
    if (text !== null) return text;
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
  }
  return `\\# ${rr.rdataLength}${rr.rdataLength ? ' ' + msg.toString('hex', start, end) : ''}`;
}

/** The presentation form of a known type, or null when the RDATA does not fit it. */
function typedRdataText(msg: Buffer, type: number, start: number, end: number): string | null {
  const length = end - start;
  /** A name in the RDATA that must be followed by exactly `after` bytes. */
  const name = (at: number, after = 0) => {
    if (at >= end) return null;
    const read = readName(msg, at);
    return read.end + after === end ? read : null;
  };
  switch (type) {
    case QType.A:
      return length === 4 ? [...msg.subarray(start, end)].join('.') : null;
    case QType.AAAA:
      return length === 16 ? ipv6Text(msg.subarray(start, end)) : null;
    case QType.NS:
    case QType.CNAME:
    case QType.PTR:
    case 39: // DNAME
      return name(start)?.name ?? null;
    case QType.MX: {
      const exchange = length > 2 ? name(start + 2) : null;
      return exchange && `${msg.readUInt16BE(start)} ${exchange.name}`;
    }
    case QType.TXT:
      return characterStrings(msg, start, end);
    case QType.SOA: {
      const mname = start < end ? readName(msg, start) : null;
      const rname = mname && mname.end < end ? name(mname.end, 20) : null;
      if (!mname || !rname) return null;
      const numbers = [0, 4, 8, 12, 16].map((i) => msg.readUInt32BE(rname.end + i));
      return `${mname.name} ${rname.name} ${numbers.join(' ')}`;
    }
    case QType.SRV: {
      const target = length > 6 ? name(start + 6) : null;
      return target && `${msg.readUInt16BE(start)} ${msg.readUInt16BE(start + 2)} ${msg.readUInt16BE(start + 4)} ${target.name}`;
    }
  }
  return null;
}

function characterStrings(msg: Buffer, start: number, end: number): string {
  const parts: string[] = [];
  let pos = start;
  while (pos < end) {
    const length = msg[pos]!;
    const text = msg.toString('latin1', pos + 1, Math.min(end, pos + 1 + length));
    parts.push(`"${text.replace(/["\\]/g, '\\$&').replace(/[^\x20-\x7e]/g, (c) => `\\${String(c.charCodeAt(0)).padStart(3, '0')}`)}"`);
    pos += 1 + length;
  }
  return parts.join(' ');
}

function ipv6Text(bytes: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16));
  // The longest run of two or more zero groups becomes "::" (RFC 5952).
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLength).join(':')}`;
}
