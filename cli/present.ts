/**
 * DNS messages in the presentation form people know from dig: one line per record,
 * `name TTL CLASS TYPE data`. A cold path (one answer per command), so dns-packet decodes.
 */
import { Buffer } from 'node:buffer';
import dnsPacket from 'dns-packet';
import { rcodeName } from '../core/dns/constants.js';

type AnyRecord = { name: string; type: string; class?: string; ttl?: number; data?: unknown };

/** Header flags and their bit in the second 16-bit word. */
const HEADER_FLAGS: Array<[string, number]> = [
  ['qr', 15],
  ['aa', 10],
  ['tc', 9],
  ['rd', 8],
  ['ra', 7],
  ['ad', 5],
  ['cd', 4],
];

function absolute(name: string): string {
  return name === '' || name === '.' ? '.' : name.endsWith('.') ? name : `${name}.`;
}

function quoted(text: string): string {
  return `"${text.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** RFC 3597: the generic form for data we do not know how to show. */
function generic(data: Buffer): string {
  return data.length === 0 ? '\\# 0' : `\\# ${data.length} ${data.toString('hex')}`;
}

/** The record's data in presentation form. */
export function formatData(type: string, data: unknown): string {
  if (Buffer.isBuffer(data)) return generic(data);
  if (typeof data === 'string') return ['CNAME', 'NS', 'PTR', 'DNAME'].includes(type) ? absolute(data) : data;
  const d = data as Record<string, unknown>;
  switch (type) {
    case 'MX':
      return `${d.preference} ${absolute(String(d.exchange))}`;
    case 'TXT':
    case 'SPF':
      return (Array.isArray(data) ? data : [data]).map((s) => quoted(Buffer.isBuffer(s) ? s.toString('latin1') : String(s))).join(' ');
    case 'SOA':
      return `${absolute(String(d.mname))} ${absolute(String(d.rname))} ${d.serial} ${d.refresh} ${d.retry} ${d.expire} ${d.minimum}`;
    case 'SRV':
      return `${d.priority} ${d.weight} ${d.port} ${absolute(String(d.target))}`;
    case 'CAA':
      return `${d.flags ?? 0} ${d.tag} ${quoted(String(d.value))}`;
    default:
      return JSON.stringify(data, (_key, value: unknown) => (value && typeof value === 'object' && (value as { type?: string }).type === 'Buffer' ? Buffer.from((value as { data: number[] }).data).toString('hex') : value));
  }
}

export function formatRecord(record: AnyRecord): string {
  const type = record.type;
  return [absolute(record.name), String(record.ttl ?? 0), record.class ?? 'IN', type, formatData(type, record.data)].join('\t');
}

function section(title: string, records: AnyRecord[] | undefined): string[] {
  const shown = (records ?? []).filter((r) => r.type !== 'OPT');
  if (shown.length === 0) return [];
  return ['', `;; ${title} SECTION:`, ...shown.map(formatRecord)];
}

/** What dig prints for a response (header, EDNS, sections), without its timing lines. */
export function describeResponse(wire: Buffer): string[] {
  const message = dnsPacket.decode(wire);
  const flags = wire.readUInt16BE(2);
  const rcode = flags & 0x0f;
  const set = HEADER_FLAGS.filter(([, bit]) => (flags >> bit) & 1).map(([label]) => label);
  const counts = [4, 6, 8, 10].map((offset) => wire.readUInt16BE(offset));
  const opt = (message.additionals ?? []).find((r) => r.type === 'OPT') as { udpPayloadSize?: number; flags?: number; extendedRcode?: number } | undefined;
  const fullRcode = opt ? ((opt.extendedRcode ?? 0) << 4) | rcode : rcode;
  const lines = [
    `;; status: ${rcodeName(fullRcode)}, id: ${wire.readUInt16BE(0)}, flags: ${set.join(' ')}`,
    `;; QUERY: ${counts[0]}, ANSWER: ${counts[1]}, AUTHORITY: ${counts[2]}, ADDITIONAL: ${counts[3]}`,
  ];
  if (opt) lines.push(`;; EDNS: version 0, udp ${opt.udpPayloadSize}${(opt.flags ?? 0) & 0x8000 ? ', do' : ''}`);
  const question = message.questions?.[0] as { name: string; type: string; class?: string } | undefined;
  if (question) lines.push('', ';; QUESTION SECTION:', `;${absolute(question.name)}\t\t${question.class ?? 'IN'}\t${question.type}`);
  lines.push(...section('ANSWER', message.answers as AnyRecord[]), ...section('AUTHORITY', message.authorities as AnyRecord[]), ...section('ADDITIONAL', message.additionals as AnyRecord[]));
  return lines;
}

/** The answer section's data only, one per line (dig +short). */
export function shortAnswer(wire: Buffer): string[] {
  const message = dnsPacket.decode(wire);
  return ((message.answers ?? []) as AnyRecord[]).map((r) => formatData(r.type, r.data));
}
