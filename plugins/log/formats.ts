/**
 * The query log's line formats. `json` is Veil's own; `text` is CoreDNS's *log* default line,
 * so CoreDNS users' parsers keep working; `tsv` and `ltsv` are dnscrypt-proxy's query log,
 * nx_log and blocked-names log, field for field (local time, names without the final dot,
 * Go-style escaping of anything unprintable, its return codes), so its users' scripts keep
 * working.
 */
import { Rcode, rcodeName, typeName } from '../../core/dns/constants.js';

export const FORMATS = ['json', 'text', 'tsv', 'ltsv'] as const;
export type LogFormat = (typeof FORMATS)[number];

/** What one line says about one query; `client` is already what the policy allows. */
export interface LogRecord {
  timeMs: number;
  /** The address, its keyed hash, or null (`client_address none`). */
  client: string | null;
  /** Only with the full address. */
  port: number | null;
  proto: string;
  id: number;
  name: string;
  type: number;
  qclass: number;
  querySize: number;
  dnssecOk: boolean;
  bufsize: number;
  /** null: nothing was sent. */
  rcode: number | null;
  durationMs: number;
  upstream: string | null;
  flags: string;
  size: number;
  cacheHit: boolean;
  /** The hit came from the fleet's shared level. */
  cacheShared: boolean;
  blockedBy: string | null;
  answeredBy: string | null;
  relay: string | null;
  /** The dnssec plugin's verdict: secure, insecure, bogus (or null without it). */
  dnssec: string | null;
  error: string | null;
  /** The failure's code (VEIL_ERR_…), for dnscrypt-proxy's return codes. */
  errorCode: string | null;
}

/** `[2026-12-04 14:57:09]` in local time, as dnscrypt-proxy writes it. */
function bracketTime(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  return `[${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}]`;
}

/**
 * Go's strconv.QuoteToGraphic without the quotes (dnscrypt-proxy's StringQuote): a name with a
 * tab, a newline or a control byte cannot break a line or a column.
 */
export function goQuote(text: string): string {
  let out = '';
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (ch === '\\' || ch === '"') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\x07') out += '\\a';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (ch === '\v') out += '\\v';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if ((code >= 0x80 && code < 0xa0) || code === 0xad) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return out;
}

/** The name as dnscrypt-proxy logs it: without the final dot (the root stays `.`). */
function bareName(name: string): string {
  return name.length > 1 && name.endsWith('.') ? name.slice(0, -1) : name;
}

/** dnscrypt-proxy's return codes (PluginsReturnCode), from what Veil did. */
export function returnCode(r: LogRecord): string {
  if (r.blockedBy !== null) return 'REJECT';
  if (r.rcode === null) return r.error !== null ? (r.errorCode === 'VEIL_ERR_UPSTREAM_TIMEOUT' || r.errorCode === 'VEIL_ERR_DEADLINE' ? 'SERVER_TIMEOUT' : 'SERVFAIL') : 'DROP';
  if (r.answeredBy === 'hosts') return 'CLOAK';
  if (r.rcode === Rcode.NXDOMAIN) return 'NXDOMAIN';
  if (r.rcode === Rcode.SERVFAIL) return r.errorCode === 'VEIL_ERR_UPSTREAM_TIMEOUT' || r.errorCode === 'VEIL_ERR_DEADLINE' ? 'SERVER_TIMEOUT' : 'SERVFAIL';
  return 'PASS';
}

const host = (r: LogRecord): string => r.client ?? '-';
const server = (r: LogRecord): string => goQuote(r.upstream ?? '-');

function rcodeText(r: LogRecord): string {
  return r.rcode === null ? (r.error !== null ? 'SERVFAIL' : 'DROPPED') : rcodeName(r.rcode);
}

/** The query log line of `r` in `format`. */
export function queryLine(format: LogFormat, r: LogRecord): string {
  switch (format) {
    case 'json':
      return JSON.stringify({
        time: new Date(r.timeMs).toISOString(),
        client: r.client,
        ...(r.port !== null ? { port: r.port } : {}),
        proto: r.proto,
        name: r.name,
        type: typeName(r.type),
        rcode: rcodeText(r),
        duration_ms: Math.round(r.durationMs * 1000) / 1000,
        upstream: r.upstream,
        flags: r.flags,
        size: r.size,
        ...(r.cacheHit ? { cache: r.cacheShared ? 'shared' : 'hit' } : {}),
        ...(r.blockedBy !== null ? { blocked_by: r.blockedBy } : {}),
        ...(r.relay !== null ? { relay: r.relay } : {}),
        ...(r.dnssec !== null ? { dnssec: r.dnssec } : {}),
        ...(r.error !== null ? { error: r.error } : {}),
      });
    case 'text': {
      // CoreDNS: {remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}
      const remote = r.client === null ? '-' : r.port !== null ? `${r.client.includes(':') ? `[${r.client}]` : r.client}:${r.port}` : r.client;
      const proto = r.proto === 'udp' || r.proto === 'dnscrypt' ? 'udp' : 'tcp';
      const klass = r.qclass === 1 ? 'IN' : r.qclass === 3 ? 'CH' : r.qclass === 4 ? 'HS' : `CLASS${r.qclass}`;
      return `[INFO] ${remote} - ${r.id} "${typeName(r.type)} ${klass} ${goQuote(r.name)} ${proto} ${r.querySize} ${r.dnssecOk} ${r.bufsize}" ${rcodeText(r)} ${r.flags.replaceAll(' ', ',') || '-'} ${r.size} ${(r.durationMs / 1000).toFixed(9).replace(/0+$/, '').replace(/\.$/, '')}s`;
    }
    case 'tsv':
      return `${bracketTime(r.timeMs)}\t${host(r)}\t${goQuote(bareName(r.name))}\t${typeName(r.type)}\t${returnCode(r)}\t${Math.floor(r.durationMs)}ms\t${server(r)}`;
    case 'ltsv':
      return `time:${Math.floor(r.timeMs / 1000)}\thost:${host(r)}\tmessage:${goQuote(bareName(r.name))}\ttype:${typeName(r.type)}\treturn:${returnCode(r)}\tcached:${r.cacheHit ? 1 : 0}\tduration:${Math.floor(r.durationMs)}\tserver:${server(r)}`;
  }
}

/** dnscrypt-proxy's nx_log line: a query whose answer was NXDOMAIN. */
export function nxLine(format: LogFormat, r: LogRecord): string {
  switch (format) {
    case 'json':
      return JSON.stringify({ time: new Date(r.timeMs).toISOString(), client: r.client, name: r.name, type: typeName(r.type) });
    case 'ltsv':
      return `time:${Math.floor(r.timeMs / 1000)}\thost:${host(r)}\tmessage:${goQuote(bareName(r.name))}\ttype:${typeName(r.type)}`;
    default:
      return `${bracketTime(r.timeMs)}\t${host(r)}\t${goQuote(bareName(r.name))}\t${typeName(r.type)}`;
  }
}

/** dnscrypt-proxy's blocked-names log line: the query and the rule (here, the list) that blocked it. */
export function blockedLine(format: LogFormat, r: LogRecord): string {
  switch (format) {
    case 'json':
      return JSON.stringify({ time: new Date(r.timeMs).toISOString(), client: r.client, name: r.name, type: typeName(r.type), blocked_by: r.blockedBy });
    case 'ltsv':
      return `time:${Math.floor(r.timeMs / 1000)}\thost:${host(r)}\tqname:${goQuote(bareName(r.name))}\tmessage:${goQuote(r.blockedBy ?? '')}`;
    default:
      return `${bracketTime(r.timeMs)}\t${host(r)}\t${goQuote(bareName(r.name))}\t${goQuote(r.blockedBy ?? '')}`;
  }
}
