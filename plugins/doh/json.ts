/**
 * The JSON form of DoH many tools use (`?name=example.org&type=AAAA`, answered as
 * `application/dns-json`), in the shape Google and Cloudflare publish: Status, the header flags,
 * Question, and Answer/Authority/Additional with name, type, TTL and data in presentation form.
 * Not a hot path: answers are walked record by record.
 */
import { QType, typeNumber } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { forEachRecord, fullRcode, readName, readQuestion, type RecordPosition } from '../../core/dns/wire.js';

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

/** RDATA in presentation form for common types; RFC 3597's `\# LENGTH HEX` otherwise. */
function rdataText(msg: Buffer, rr: RecordPosition): string {
  const start = rr.rdataStart;
  const end = start + rr.rdataLength;
  const name = (at: number) => readName(msg, at);
  switch (rr.type) {
    case QType.A:
      if (rr.rdataLength === 4) return [...msg.subarray(start, end)].join('.');
      break;
    case QType.AAAA:
      if (rr.rdataLength === 16) return ipv6Text(msg.subarray(start, end));
      break;
    case QType.NS:
    case QType.CNAME:
    case QType.PTR:
    case 39: // DNAME
      return name(start).name;
    case QType.MX:
      return `${msg.readUInt16BE(start)} ${name(start + 2).name}`;
    case QType.TXT:
      return characterStrings(msg, start, end);
    case QType.SOA: {
      const mname = name(start);
      const rname = name(mname.end);
      const numbers = [0, 4, 8, 12, 16].map((i) => msg.readUInt32BE(rname.end + i));
      return `${mname.name} ${rname.name} ${numbers.join(' ')}`;
    }
    case QType.SRV:
      return `${msg.readUInt16BE(start)} ${msg.readUInt16BE(start + 2)} ${msg.readUInt16BE(start + 4)} ${name(start + 6).name}`;
  }
  return `\\# ${rr.rdataLength}${rr.rdataLength ? ' ' + msg.toString('hex', start, end) : ''}`;
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
