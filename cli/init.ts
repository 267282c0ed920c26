/**
 * `veil init [--out FILE] [options]`: writes a Corefile for this machine, the way
 * Corefile.example is written (every upstream encrypted, named by stamp or taken from
 * dnscrypt-proxy's signed lists, a fallback set behind the others, path for `veil doctor`),
 * from a few answers: where to listen, which protocols, anonymization on or off, blocklists.
 * The answers come from flags, or from questions (`--interactive`, or a terminal and no flags).
 *
 * What it writes is checked (as `veil check` does) before it is written.
 */
import { existsSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { SystemClock } from '../core/clock.js';
import { parseCorefileText } from '../core/config/corefile.js';
import { ConfigError } from '../core/errors.js';
import { MemoryLogger } from '../core/logger.js';
import { AddressError, parseHostPort } from '../core/net/address.js';
import { buildConfig } from '../core/server.js';
import { createBuiltinRegistry } from '../plugins/index.js';
import { UsageError, type CommandIo } from './io.js';

export const INIT_USAGE = `Usage:
  veil init [--out FILE] [--force] [options]

Writes a Corefile (to stdout, or to FILE) for a machine whose DNS goes through Veil.

Options (each asked as a question with --interactive, or on a terminal without options):
  --listen ADDR             where to serve, IP:PORT; repeatable (default 127.0.0.1:53)
  --protocols LIST          upstream protocols, comma-separated: dnscrypt, doh, dot
                            (default dnscrypt,dot)
  --anonymize, --no-anonymize
                            DNSCrypt through relays of other operators (default: on with dnscrypt)
  --blocklist FILE          a blocklist for the filter plugin; repeatable (default none)
  --state-dir DIR           where the lists' verified copies are kept (default: systemd's
                            $STATE_DIRECTORY, else lists/ beside the Corefile)
  -i, --interactive         ask, reading the answers from stdin
  --force                   overwrite FILE

Then: veil check FILE, veil -conf FILE, veil doctor -conf FILE (docs/install.md).`;

export const PROTOCOLS = ['dnscrypt', 'doh', 'dot'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export interface InitSettings {
  listen: string[];
  protocols: Protocol[];
  anonymize: boolean;
  /** Absolute paths of blocklist files. */
  blocklists: string[];
  /** Where list caches go; null: $STATE_DIRECTORY, else lists/ beside the Corefile. */
  stateDir: string | null;
}

// dnscrypt-proxy's lists and the key that signs them (https://github.com/DNSCrypt/dnscrypt-resolvers).
const LISTS_URL = 'https://download.dnscrypt.info/resolvers-list/v3';
const LISTS_KEY = 'RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3';

/**
 * The fallback set of each protocol, by stamp (each holds the address and how the server proves
 * who it is): there from the first start, before any list has been fetched, and used to fetch
 * them. The DoH and DNSCrypt ones are entries of the public list (Quad9's no-filter service,
 * Cloudflare); the DoT ones are the same operators' DNS-over-TLS addresses. Named apart from the
 * lists' entries (which `servers_from` would otherwise skip as already there).
 */
const FALLBACK: Record<Protocol, Array<[string, string]>> = {
  dot: [
    ['quad9-dot', 'sdns://AwMAAAAAAAAABzkuOS45LjkADWRucy5xdWFkOS5uZXQ'],
    ['cloudflare-dot', 'sdns://AwcAAAAAAAAABzEuMS4xLjEAEmNsb3VkZmxhcmUtZG5zLmNvbQ'],
  ],
  doh: [
    ['quad9-doh', 'sdns://AgcAAAAAAAAACDkuOS45LjEwILAZIHRLu3bJqwU-AeB7fgUORz0g95976kNfr-Q8nSQvE2RuczEwLnF1YWQ5Lm5ldDo0NDMKL2Rucy1xdWVyeQ'],
    ['cloudflare-doh', 'sdns://AgcAAAAAAAAABzEuMC4wLjEAEmRucy5jbG91ZGZsYXJlLmNvbQovZG5zLXF1ZXJ5'],
  ],
  dnscrypt: [['quad9-dnscrypt', 'sdns://AQcAAAAAAAAADTkuOS45LjEwOjg0NDMgZ8hHuMh1jNEgJFVDvnVnRt803x2EwAuMRwNo34Idhj4ZMi5kbnNjcnlwdC1jZXJ0LnF1YWQ5Lm5ldA']],
};

/** Relays by stamp, for when DNSCrypt is the only protocol and anonymized: the first fetch of the lists needs one. */
const BOOTSTRAP_RELAYS: Array<[string, string]> = [
  ['anon-cs-austria', 'sdns://gRE5NC4xOTguNDEuMjM1OjQ0Mw'],
  ['anon-cs-nl', 'sdns://gRExODUuMTA3LjgwLjg0OjQ0Mw'],
];

export const DEFAULT_SETTINGS: InitSettings = { listen: ['127.0.0.1:53'], protocols: ['dnscrypt', 'dot'], anonymize: true, blocklists: [], stateDir: null };

/** The Corefile for these settings. */
export function renderCorefile(settings: InitSettings): string {
  const { protocols, anonymize } = settings;
  const has = (p: Protocol) => protocols.includes(p);
  // The static servers of the least private protocol chosen are the fallback set.
  const fallbackProtocol: Protocol = has('dot') ? 'dot' : has('doh') ? 'doh' : 'dnscrypt';
  const fallback = FALLBACK[fallbackProtocol];
  const lists = has('dnscrypt') || has('doh');
  const cache = (file: string) => (settings.stateDir ? path.join(settings.stateDir, file) : `{$STATE_DIRECTORY:lists}/${file}`);
  const listens = settings.listen.map(listenUrls).join(' ');
  const out: string[] = [
    '# Written by `veil init`: every upstream is encrypted, none is looked up through the',
    '# system resolver, queries leave padded and without EDNS Client Subnet. Corefile.example',
    '# explains each line; `veil doctor` checks that this machine really uses it.',
    `#   protocols: ${protocols.join(', ')}; anonymization: ${has('dnscrypt') && anonymize ? 'on' : 'off'}; blocklists: ${settings.blocklists.length || 'none'}`,
    '',
    '. {',
    `    listen ${listens}`,
    '    errors {',
    '        consolidate 10m .*',
    '    }',
    '    path',
    '    cache 10000',
  ];
  if (settings.blocklists.length > 0) {
    out.push('    filter {', ...settings.blocklists.map((file) => `        block ${file}`), '    }');
  }
  if (lists) {
    out.push('    sources {');
    for (const [name, file] of [['public-resolvers', 'public-resolvers.md'], ...(has('dnscrypt') && anonymize ? [['relays', 'relays.md']] : [])] as const) {
      out.push(`        list ${name} ${LISTS_URL}/${file} {`, `            minisign_key ${LISTS_KEY}`, `            cache ${cache(file)}`, '        }');
    }
    out.push('    }');
  }
  for (const protocol of ['dnscrypt', 'doh'] as const) {
    if (!has(protocol)) continue;
    out.push(`    ${protocol} {`, '        servers_from public-resolvers {', '            require nolog nofilter dnssec', '        }');
    if (fallbackProtocol === protocol) for (const [name, stamp] of fallback) out.push(`        server ${name} ${stamp}`);
    out.push('    }');
  }
  if (has('dnscrypt') && anonymize) {
    out.push('    anonymize {');
    if (fallbackProtocol === 'dnscrypt') for (const [name, stamp] of BOOTSTRAP_RELAYS) out.push(`        relay ${name} ${stamp}`);
    out.push('        route * via *', '        skip_incompatible', '    }');
  }
  if (has('dot')) {
    out.push('    dot {', ...fallback.map(([name, stamp]) => `        server ${name} ${stamp}`), '    }');
  }
  // Alone, the static servers are the upstreams; beside servers from the lists, the fallback.
  out.push(lists ? `    loadbalance p2 {\n        fallback ${fallback.map(([name]) => name).join(' ')}\n    }` : '    loadbalance p2');
  out.push('}', '');
  return out.join('\n');
}

function listenUrls(address: string): string {
  return `udp://${address} tcp://${address}`;
}

/** `IP:PORT` (or `[IPv6]:PORT`, or an IP alone for port 53), normalised. */
export function parseListen(text: string): string {
  try {
    const { host, port } = parseHostPort(text, 53);
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  } catch (err) {
    if (err instanceof AddressError) throw new UsageError(`--listen ${text}: ${err.message} (an IP address and port, e.g. 127.0.0.1:53)`);
    throw err;
  }
}

export function parseProtocols(text: string): Protocol[] {
  const words = text.split(/[\s,]+/).filter(Boolean);
  if (words.length === 0) throw new UsageError('--protocols: choose at least one of dnscrypt, doh, dot');
  for (const word of words) if (!(PROTOCOLS as readonly string[]).includes(word)) throw new UsageError(`--protocols: "${word}" is not one of dnscrypt, doh, dot`);
  return PROTOCOLS.filter((p) => words.includes(p));
}

function blocklist(file: string): string {
  const absolute = path.resolve(file);
  if (!existsSync(absolute) || !statSync(absolute).isFile()) throw new UsageError(`--blocklist ${file}: no such file`);
  return absolute;
}

interface ParsedInit {
  settings: InitSettings;
  out: string | null;
  force: boolean;
  /** Answers still to ask for (those no flag gave), when interactive. */
  interactive: boolean;
  given: Set<string>;
}

export function parseInitArgs(args: string[], stdinIsTty: boolean): ParsedInit {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        out: { type: 'string' },
        force: { type: 'boolean' },
        listen: { type: 'string', multiple: true },
        protocols: { type: 'string' },
        anonymize: { type: 'boolean' },
        'no-anonymize': { type: 'boolean' },
        blocklist: { type: 'string', multiple: true },
        'state-dir': { type: 'string' },
        interactive: { type: 'boolean', short: 'i' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.anonymize && v['no-anonymize']) throw new UsageError('--anonymize or --no-anonymize, not both');
  const settings: InitSettings = { ...DEFAULT_SETTINGS, listen: [...DEFAULT_SETTINGS.listen], protocols: [...DEFAULT_SETTINGS.protocols] };
  const given = new Set<string>();
  if (v.listen) {
    settings.listen = v.listen.map(parseListen);
    given.add('listen');
  }
  if (v.protocols !== undefined) {
    settings.protocols = parseProtocols(v.protocols);
    given.add('protocols');
  }
  if (v.anonymize || v['no-anonymize']) {
    settings.anonymize = v.anonymize === true;
    given.add('anonymize');
  }
  if (v.blocklist) {
    settings.blocklists = v.blocklist.map(blocklist);
    given.add('blocklists');
  }
  if (v['state-dir'] !== undefined) settings.stateDir = path.resolve(v['state-dir']);
  const interactive = v.interactive === true || (stdinIsTty && given.size === 0);
  if (!interactive) checkSettings(settings, given);
  return { settings, out: v.out ?? null, force: v.force === true, interactive, given };
}

function checkSettings(settings: InitSettings, given: Set<string>): void {
  if (settings.anonymize && !settings.protocols.includes('dnscrypt')) {
    // On by default only with DNSCrypt; asked for without it, it cannot be honoured.
    if (given.has('anonymize')) throw new UsageError('--anonymize routes DNSCrypt servers through relays: add dnscrypt to --protocols');
    settings.anonymize = false;
  }
}

/** Asks for every setting no flag gave, one line of stdin per answer (empty: the default). */
async function ask(parsed: ParsedInit, input: NodeJS.ReadableStream, io: CommandIo): Promise<void> {
  const rl = createInterface({ input, terminal: false });
  const lines = rl[Symbol.asyncIterator]();
  const question = async (text: string): Promise<string> => {
    io.err(text);
    const next = await lines.next();
    return next.done ? '' : next.value.trim();
  };
  const s = parsed.settings;
  try {
    if (!parsed.given.has('listen')) {
      const answer = await question(`Listen on which addresses (IP:PORT, space-separated)? [${s.listen.join(' ')}]`);
      if (answer) s.listen = answer.split(/\s+/).map(parseListen);
    }
    if (!parsed.given.has('protocols')) {
      const answer = await question(`Which upstream protocols (dnscrypt, doh, dot)? [${s.protocols.join(' ')}]`);
      if (answer) s.protocols = parseProtocols(answer);
    }
    if (!parsed.given.has('anonymize')) {
      if (s.protocols.includes('dnscrypt')) {
        const answer = (await question('Anonymize DNSCrypt through relays of other operators? [Y/n]')).toLowerCase();
        if (answer && !['y', 'yes', 'n', 'no'].includes(answer)) throw new UsageError(`answer y or n, not "${answer}"`);
        s.anonymize = !answer.startsWith('n');
      } else {
        s.anonymize = false;
      }
    }
    if (!parsed.given.has('blocklists')) {
      const answer = await question('Blocklist files (space-separated; empty for none)? []');
      if (answer) s.blocklists = answer.split(/\s+/).map(blocklist);
    }
  } finally {
    rl.close();
  }
  checkSettings(s, parsed.given);
}

/** Builds the text as `veil check` would; a ConfigError here is a bug of this command. */
export function checkCorefile(text: string, file: string): void {
  buildConfig(parseCorefileText(text, file), { registry: createBuiltinRegistry(), logger: new MemoryLogger(), clock: new SystemClock() });
}

export async function runInit(args: string[], io: CommandIo, input: NodeJS.ReadableStream & { isTTY?: boolean } = process.stdin): Promise<number> {
  const parsed = parseInitArgs(args, input.isTTY === true);
  if (parsed.interactive) await ask(parsed, input, io);
  const out = parsed.out ? path.resolve(parsed.out) : null;
  if (out && existsSync(out) && !parsed.force) {
    io.err(`veil init: ${parsed.out} exists; --force to overwrite it`);
    return 1;
  }
  const text = renderCorefile(parsed.settings);
  try {
    checkCorefile(text, out ?? path.resolve('Corefile'));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(`veil init: the Corefile written would not load: ${err.message}`);
    return 1;
  }
  if (!out) {
    io.out(text.trimEnd());
    return 0;
  }
  writeFileSync(out, text);
  io.err(`veil init: wrote ${parsed.out}. Next: veil check ${parsed.out}; veil -conf ${parsed.out}; veil doctor -conf ${parsed.out}`);
  return 0;
}
