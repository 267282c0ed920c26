/**
 * `veil query [@SERVER] NAME [TYPE] [--tcp|--tls|--https URL|--dnscrypt STAMP [--relay STAMP]|--odoh TARGET --relay RELAY]`:
 * a dig-like client for every transport Veil speaks.
 *
 * It does not carry a second implementation of each protocol: it writes a one-block Corefile
 * with the matching upstream plugin (forward, dot, doh, dnscrypt with anonymize), starts that
 * server on a loopback TCP port of its own, sends the query through it and prints the answer. So
 * `veil query` checks exactly what a Corefile with the same upstream would do, and it never
 * reads /etc/resolv.conf or asks the system resolver for anything.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseCorefileText } from '../core/config/corefile.js';
import { QType, rcodeName, typeName, typeNumber } from '../core/dns/constants.js';
import { fullRcode } from '../core/dns/wire.js';
import { buildQuery } from '../core/dns/message.js';
import { ConfigError } from '../core/errors.js';
import { upstreamAttempt } from '../core/events.js';
import { MemoryLogger } from '../core/logger.js';
import { SystemClock } from '../core/clock.js';
import { AddressError, isPrivateAddress, parseHostPort } from '../core/net/address.js';
import { VeilServer } from '../core/server.js';
import { queryTcp } from '../core/testing/client.js';
import { createBuiltinRegistry } from '../plugins/index.js';
import { UsageError, type CommandIo } from './io.js';
import { buildPathQuery, describePath, parsePathAnswer } from './path.js';
import { describeResponse, shortAnswer } from './present.js';

export const QUERY_USAGE = `Usage:
  veil query [@SERVER] NAME [TYPE] [options]

Transports (default: plain DNS over UDP, with TCP when the answer is truncated):
  --tcp                     plain DNS over TCP
  --tls                     DNS over TLS (port 853); needs --tls-hostname or --pin
  --https URL               DNS over HTTPS; @SERVER is the address of URL's host (bootstrap)
  --dnscrypt STAMP          DNSCrypt to the server of an sdns:// stamp
  --relay STAMP             with --dnscrypt: through this Anonymized DNSCrypt relay
  --odoh TARGET --relay RELAY
                            Oblivious DoH: TARGET (sdns://BQ… or https://HOST/PATH) through
                            RELAY (sdns://hQ… or https://HOST/PATH); @SERVER is RELAY's address

Options:
  --path                    ask which path NAME takes through the server (a Veil with the path
                            plugin): CH TXT NAME, answered by Veil itself, printed readably
  -p, --port N              the server's port (default 53, 853 with --tls)
  --tls-hostname HOST       the name the TLS certificate must carry (SNI)
  --ca FILE                 extra trust anchors for --tls and --https
  --pin BASE64              SPKI SHA-256 pin for --tls and --https
  --dnssec                  set the DO bit
  --short                   print the answer's data only
  --timeout SECONDS         give up after this long (default 5)

SERVER is an IP address (default 127.0.0.1): names are never resolved through the system.
Plain DNS to a public address is sent as asked, with a warning: it is not private.`;

export interface QueryRequest {
  server: string | null;
  name: string;
  type: number;
  transport: 'udp' | 'tcp' | 'tls' | 'https' | 'dnscrypt' | 'odoh';
  port: number | null;
  url: string | null;
  stamp: string | null;
  relay: string | null;
  tlsHostname: string | null;
  ca: string | null;
  pin: string | null;
  dnssec: boolean;
  short: boolean;
  /** --path: the path query (CH TXT) for `name`. */
  path: boolean;
  timeoutMs: number;
}

/** Values become Corefile tokens, so they must be single tokens (no spaces, quotes, braces). */
function token(option: string, value: string): string {
  if (!/^[^\s"'{}#`]+$/.test(value)) throw new UsageError(`${option}: "${value}" cannot contain spaces, quotes, braces or #`);
  return value;
}

export function parseQueryArgs(args: string[]): QueryRequest {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        port: { type: 'string', short: 'p' },
        tcp: { type: 'boolean' },
        tls: { type: 'boolean' },
        https: { type: 'string' },
        dnscrypt: { type: 'string' },
        odoh: { type: 'string' },
        relay: { type: 'string' },
        'tls-hostname': { type: 'string' },
        ca: { type: 'string' },
        pin: { type: 'string' },
        dnssec: { type: 'boolean' },
        short: { type: 'boolean' },
        path: { type: 'boolean' },
        timeout: { type: 'string' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const servers = positionals.filter((p) => p.startsWith('@'));
  const rest = positionals.filter((p) => !p.startsWith('@'));
  if (servers.length > 1) throw new UsageError('one @SERVER at most');
  if (rest.length === 0) throw new UsageError('which name? veil query [@SERVER] NAME [TYPE]');
  if (rest.length > 2) throw new UsageError(`unexpected "${rest[2]}"`);
  const name = rest[0]!;
  if (!/^[A-Za-z0-9_.*-]+$/.test(name) && name !== '.') throw new UsageError(`"${name}" is not a domain name`);
  if (values.path && rest[1] !== undefined) throw new UsageError('--path asks about NAME; it takes no TYPE');
  const type = values.path ? QType.TXT : typeNumber(rest[1] ?? 'A');
  if (type === undefined) throw new UsageError(`unknown type "${rest[1]}"`);

  const chosen = (['tcp', 'tls', 'https', 'dnscrypt', 'odoh'] as const).filter((t) => values[t] !== undefined && values[t] !== false);
  if (chosen.length > 1) throw new UsageError(`choose one transport, not --${chosen.join(' and --')}`);
  const transport = chosen[0] ?? 'udp';
  if (values.relay !== undefined && transport !== 'dnscrypt' && transport !== 'odoh') throw new UsageError('--relay goes with --dnscrypt or --odoh');
  if (transport === 'odoh' && values.relay === undefined) throw new UsageError('--odoh needs --relay RELAY: an oblivious query goes through a relay');
  if (transport === 'tls' && values['tls-hostname'] === undefined && values.pin === undefined) throw new UsageError('--tls needs --tls-hostname HOST (or --pin) to verify the server');

  let port: number | null = null;
  if (values.port !== undefined) {
    port = Number(values.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--port: "${values.port}" is not a port number`);
  }
  let server: string | null = null;
  if (servers[0]) {
    try {
      const at = parseHostPort(servers[0].slice(1), port ?? 0);
      server = at.host;
      if (at.port !== 0) port = at.port;
    } catch (err) {
      if (!(err instanceof AddressError)) throw err;
      throw new UsageError(`${servers[0]}: ${err.message} (an IP address: names are not resolved)`);
    }
  }
  if ((transport === 'https' || transport === 'dnscrypt' || transport === 'odoh') && values.port !== undefined) throw new UsageError(`--port does not apply to --${transport}: the ${transport === 'https' ? 'URL' : 'stamp'} says where`);

  const timeout = Number(values.timeout ?? 5);
  if (!(timeout > 0 && timeout <= 60)) throw new UsageError('--timeout takes seconds, more than 0 and at most 60');
  return {
    server,
    name,
    type,
    transport,
    port,
    url: values.https !== undefined ? token('--https', values.https) : null,
    stamp: values.dnscrypt !== undefined ? token('--dnscrypt', values.dnscrypt) : values.odoh !== undefined ? token('--odoh', values.odoh) : null,
    relay: values.relay !== undefined ? token('--relay', values.relay) : null,
    tlsHostname: values['tls-hostname'] !== undefined ? token('--tls-hostname', values['tls-hostname']) : null,
    ca: values.ca !== undefined ? token('--ca', path.resolve(values.ca)) : null,
    pin: values.pin !== undefined ? token('--pin', values.pin) : null,
    dnssec: values.dnssec ?? false,
    short: values.short ?? false,
    path: values.path ?? false,
    timeoutMs: timeout * 1000,
  };
}

function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The upstream lines of the one-block Corefile, and what to call the path in the output. */
export function upstreamConfig(request: QueryRequest): { lines: string[]; via: string } {
  const server = request.server ?? '127.0.0.1';
  const tlsLines = [
    ...(request.tlsHostname ? [`server_name ${request.tlsHostname}`] : []),
    ...(request.ca ? [`ca ${request.ca}`] : []),
    ...(request.pin ? [`pin_sha256 ${request.pin}`] : []),
  ];
  switch (request.transport) {
    case 'udp':
    case 'tcp': {
      const at = hostPort(server, request.port ?? 53);
      const insecure = isPrivateAddress(server) ? '' : ' insecure';
      return { lines: [`forward . {`, `server q ${request.transport}://${at}${insecure}`, `}`], via: `${request.transport} ${at}` };
    }
    case 'tls': {
      const at = hostPort(server, request.port ?? 853);
      return { lines: ['dot {', `server q tls://${at} {`, ...tlsLines, '}', '}'], via: `tls ${at}${request.tlsHostname ? ` (${request.tlsHostname})` : ''}` };
    }
    case 'https': {
      const bootstrap = request.server ? [`bootstrap ${request.server}`] : [];
      const https = [...bootstrap, ...(request.ca ? [`ca ${request.ca}`] : []), ...(request.pin ? [`pin_sha256 ${request.pin}`] : [])];
      return { lines: ['doh {', `server q ${request.url} {`, ...https, '}', '}'], via: `https ${request.url}${request.server ? ` at ${request.server}` : ''}` };
    }
    case 'dnscrypt': {
      const relay = request.relay ? ['anonymize {', `relay r ${request.relay}`, 'route q via r', '}'] : [];
      return { lines: ['dnscrypt {', `server q ${request.stamp}`, '}', ...relay], via: request.relay ? 'dnscrypt through a relay' : 'dnscrypt' };
    }
    case 'odoh': {
      const relayOptions = [...(request.server ? [`bootstrap ${request.server}`] : []), ...(request.ca ? [`ca ${request.ca}`] : []), ...(request.pin ? [`pin_sha256 ${request.pin}`] : [])];
      const relay = relayOptions.length ? [`relay r ${request.relay} {`, ...relayOptions, '}'] : [`relay r ${request.relay}`];
      return { lines: ['odoh {', `server q ${request.stamp}`, ...relay, 'route q via r', '}'], via: `odoh ${request.stamp} through ${request.relay}` };
    }
  }
}

/** The config error, in the words of the command line rather than of the generated Corefile. */
function configProblem(err: ConfigError): string {
  return `${err.plugin ? `${err.plugin}: ` : ''}${err.detail}`;
}

export async function runQuery(args: string[], io: CommandIo): Promise<number> {
  const request = parseQueryArgs(args);
  const { lines, via } = upstreamConfig(request);
  if ((request.transport === 'udp' || request.transport === 'tcp') && !isPrivateAddress(request.server ?? '127.0.0.1')) {
    io.err(`veil query: warning: plain DNS to ${request.server} is readable by every network on the way`);
  }
  const corefile = ['. {', 'listen tcp://127.0.0.1:0', ...lines, '}'].join('\n');
  const logs: string[] = [];
  const server = new VeilServer({ registry: createBuiltinRegistry(), logger: new MemoryLogger(logs), clock: new SystemClock(), graceMs: 0, queryTimeoutMs: request.timeoutMs });
  try {
    // Relative paths (--ca was made absolute) and error positions refer to the working directory.
    await server.start(parseCorefileText(corefile, path.join(process.cwd(), 'veil-query')));
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`veil query: ${configProblem(err)}`);
      return 1;
    }
    throw err;
  }
  // Time and failures as the upstream stage saw them: what the network took, not this process's
  // start-up; and why an attempt failed when the answer is Veil's own SERVFAIL.
  const attempts: Array<{ rttMs: number; error?: unknown }> = [];
  const watch = ({ rttMs, error }: { rttMs: number; error?: unknown }) => attempts.push({ rttMs, error });
  upstreamAttempt.subscribe(watch);
  try {
    const local = [...server.bound.values()][0]!;
    const { host, port } = parseHostPort(local.replace(/^tcp:\/\//, ''), 0);
    const id = Math.floor(Math.random() * 0x10000);
    const query = request.path ? buildPathQuery(request.name, id) : buildQuery(request.name, request.type, { id, edns: { dnssecOk: request.dnssec } });
    let answer: Buffer;
    try {
      [answer] = (await queryTcp(host, port, [query], request.timeoutMs + 1000)) as [Buffer];
    } catch (err) {
      io.err(`veil query: no answer from ${via}: ${(err as Error).message}`);
      for (const line of logs) io.err(`  ${line}`);
      return 9;
    }
    if (request.path) return printPath(request.name, answer, via, io);
    if (request.short) {
      for (const line of shortAnswer(answer)) io.out(line);
      return 0;
    }
    io.out(`; veil query ${request.name} ${typeName(request.type)} via ${via}`);
    for (const line of describeResponse(answer)) io.out(line);
    io.out('');
    const last = attempts.at(-1);
    if (last) io.out(`;; Query time: ${last.rttMs.toFixed(1)} ms${attempts.length > 1 ? ` (attempt ${attempts.length})` : ''}`);
    io.out(`;; SERVER: ${via}`);
    io.out(`;; MSG SIZE rcvd: ${answer.length}`);
    for (const { error } of attempts) if (error) io.err(`;; attempt failed: ${error instanceof Error ? error.message : String(error)}`);
    return 0;
  } finally {
    upstreamAttempt.unsubscribe(watch);
    await server.stop();
  }
}

/** The path answer in sentences; status 1 when the server gave none (no path plugin, or refused). */
function printPath(name: string, answer: Buffer, via: string, io: CommandIo): number {
  const rcode = rcodeName(fullRcode(answer));
  const facts = parsePathAnswer(answer);
  if (rcode !== 'NOERROR' || facts.transport === undefined) {
    io.err(`veil query: ${via} gave no path answer (${rcode}): the server may not be Veil with the path plugin, or its acl does not admit you`);
    return 1;
  }
  io.out(`; veil query --path ${name} via ${via}`);
  for (const line of describePath(name, facts)) io.out(line);
  return 0;
}
