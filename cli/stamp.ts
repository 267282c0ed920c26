/**
 * `veil stamp decode STAMP` prints a DNS stamp's fields; `veil stamp encode --protocol P …`
 * makes one. Every kind of stamp is known (lib/stamps.ts).
 */
import { Buffer } from 'node:buffer';
import { parseArgs } from 'node:util';
import { encodeStamp, parseStamp, StampError, type Stamp, type StampProps } from '../lib/stamps.js';
import { UsageError, type CommandIo } from './io.js';

export const STAMP_USAGE = `Usage:
  veil stamp decode STAMP
  veil stamp encode --protocol PROTOCOL [fields] [--dnssec] [--nolog] [--nofilter]

PROTOCOL and its fields:
  plain            --address IP[:PORT]
  dnscrypt         --address IP[:PORT] --provider-key HEX --provider-name 2.dnscrypt-cert.NAME
  doh              [--address IP[:PORT]] --host HOST[:PORT] --path /dns-query [--hash HEX]… [--bootstrap IP]…
  dot, doq         [--address IP[:PORT]] --host HOST[:PORT] [--hash HEX]… [--bootstrap IP]…
  odoh-target      --host HOST[:PORT] --path PATH
  dnscrypt-relay   --address IP[:PORT]
  odoh-relay       as doh`;

const PROTOCOLS: Record<string, Stamp['protocol']> = {
  plain: 'plain',
  dnscrypt: 'dnscrypt',
  doh: 'doh',
  dot: 'dot',
  doq: 'doq',
  'odoh-target': 'odohTarget',
  'dnscrypt-relay': 'dnscryptRelay',
  'odoh-relay': 'odohRelay',
};
const NAMES = Object.fromEntries(Object.entries(PROTOCOLS).map(([name, protocol]) => [protocol, name]));

export function runStamp(args: string[], io: CommandIo): number {
  const [action, ...rest] = args;
  if (action === 'decode') {
    if (rest.length !== 1) throw new UsageError('stamp decode takes one stamp');
    try {
      for (const line of describeStamp(parseStamp(rest[0]!))) io.out(line);
      return 0;
    } catch (err) {
      if (!(err instanceof StampError)) throw err;
      io.err(`veil: bad stamp: ${err.message}`);
      return 1;
    }
  }
  if (action === 'encode') {
    try {
      io.out(encodeStamp(stampFromFlags(rest)));
      return 0;
    } catch (err) {
      if (!(err instanceof StampError)) throw err;
      io.err(`veil: ${err.message}`);
      return 1;
    }
  }
  throw new UsageError(action ? `unknown stamp command "${action}"` : 'stamp needs "decode" or "encode"');
}

/** One `field value` line per field, aligned. */
export function describeStamp(stamp: Stamp): string[] {
  const rows: Array<[string, string]> = [['protocol', NAMES[stamp.protocol]!]];
  if ('props' in stamp) {
    rows.push(['dnssec', yes(stamp.props.dnssec)], ['no logs', yes(stamp.props.noLogs)], ['no filter', yes(stamp.props.noFilter)]);
  }
  if ('address' in stamp) rows.push(['address', stamp.address || '(none)']);
  if (stamp.protocol === 'dnscrypt') rows.push(['provider key', stamp.providerKey.toString('hex')], ['provider name', stamp.providerName]);
  if ('hashes' in stamp) rows.push(['hashes', stamp.hashes.map((h) => h.toString('hex')).join(' ') || '(none)']);
  if ('host' in stamp) rows.push(['host', stamp.host]);
  if ('path' in stamp) rows.push(['path', stamp.path]);
  if ('bootstrap' in stamp && stamp.bootstrap.length) rows.push(['bootstrap', stamp.bootstrap.join(' ')]);
  return rows.map(([field, value]) => `${field.padEnd(14)}${value}`);
}

const yes = (value: boolean): string => (value ? 'yes' : 'no');

function stampFromFlags(args: string[]): Stamp {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      options: {
        protocol: { type: 'string' },
        address: { type: 'string' },
        'provider-key': { type: 'string' },
        'provider-name': { type: 'string' },
        host: { type: 'string' },
        path: { type: 'string' },
        hash: { type: 'string', multiple: true },
        bootstrap: { type: 'string', multiple: true },
        dnssec: { type: 'boolean' },
        nolog: { type: 'boolean' },
        nofilter: { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const protocol = PROTOCOLS[values.protocol ?? ''];
  if (!protocol) throw new UsageError(`--protocol must be one of ${Object.keys(PROTOCOLS).join(', ')}`);
  const need = (name: keyof typeof values): string => {
    const value = values[name];
    if (typeof value !== 'string' || value === '') throw new UsageError(`--protocol ${values.protocol} needs --${name}`);
    return value;
  };
  const hex = (text: string, what: string, length: number): Buffer => {
    if (!/^[0-9a-f]+$/i.test(text) || text.length !== length * 2) throw new UsageError(`${what} must be ${length} bytes in hex (${length * 2} digits)`);
    return Buffer.from(text, 'hex');
  };
  const props: StampProps = { dnssec: values.dnssec ?? false, noLogs: values.nolog ?? false, noFilter: values.nofilter ?? false };
  const hashes = (values.hash ?? []).map((h) => hex(h, '--hash', 32));
  const bootstrap = values.bootstrap ?? [];
  switch (protocol) {
    case 'plain':
      return { protocol, props, address: need('address') };
    case 'dnscrypt':
      return { protocol, props, address: need('address'), providerKey: hex(need('provider-key'), '--provider-key', 32), providerName: need('provider-name').replace(/\.$/, '') };
    case 'doh':
    case 'odohRelay':
      return { protocol, props, address: values.address ?? '', hashes, host: need('host'), path: need('path'), bootstrap };
    case 'dot':
    case 'doq':
      return { protocol, props, address: values.address ?? '', hashes, host: need('host'), bootstrap };
    case 'odohTarget':
      return { protocol, props, host: need('host'), path: need('path') };
    case 'dnscryptRelay':
      return { protocol, address: need('address') };
  }
}
