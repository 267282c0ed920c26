/**
 * `veil doctor [-conf FILE] [--server IP[:PORT]] [--json]`: does this machine's DNS really go
 * through Veil? One PASS / WARN / FAIL line per check, each with what to do, and HINT lines for
 * what it cannot see. Exit status 0 when nothing FAILs. The checks that read the machine and
 * the configuration are in doctor-checks.ts; the canary, which asks the running Veil, is here.
 *
 *   - the system resolver: /etc/resolv.conf, systemd-resolved (`resolvectl status`) and
 *     NetworkManager (`nmcli`), per interface, IPv4 and IPv6: is every server it uses Veil?
 *   - the canary: a random name under the path plugin's canary zone is looked up through the
 *     system resolver (node:dns lookup, i.e. getaddrinfo), then Veil is asked (the path query)
 *     whether it saw that exact name. Only a resolver that really goes through Veil passes.
 *   - Veil's configuration: plaintext upstreams, how TLS upstreams are verified, padding, EDNS
 *     Client Subnet, and (from the running Veil) whether anonymization has a usable relay.
 *   - hints: browsers with their own DoH, IPv6 router advertisements, VPNs.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseBlocks } from '../core/block.js';
import { SystemClock } from '../core/clock.js';
import { VeilError } from '../core/errors.js';
import { loadPlugins } from '../core/external.js';
import { MemoryLogger } from '../core/logger.js';
import { AddressError, parseHostPort } from '../core/net/address.js';
import { buildConfig, type BuiltConfig } from '../core/server.js';
import { queryTcp, queryUdp } from '../core/testing/client.js';
import { createBuiltinRegistry } from '../plugins/index.js';
import { PathPlugin } from '../plugins/path/index.js';
import { loadConfigFile } from './config.js';
import { configurationChecks, formatAddress, hints, systemResolverChecks, veilAddresses, type Check, type VeilAddress } from './doctor-checks.js';
import { UsageError, type CommandIo } from './io.js';
import { buildPathQuery, parsePathAnswer } from './path.js';

export const DOCTOR_USAGE = `Usage:
  veil doctor [-conf FILE] [--server IP[:PORT]] [--json]

Checks that this machine's DNS goes through the Veil serving FILE (default /etc/veil/Corefile
when it exists, else ./Corefile): what the system resolver uses (resolv.conf, systemd-resolved,
NetworkManager; per interface, IPv4 and IPv6), a canary name looked up through it that Veil must
have seen (needs the path plugin), Veil's own configuration, and hints it cannot verify.

  --server IP[:PORT]   where to ask Veil (default: its first udp:// or tcp:// listener)
  --json               one JSON object, for scripts

Exit status 0 when no check FAILs, 1 otherwise.`;

const LOOKUP_TIMEOUT_MS = 12_000;
const QUERY_TIMEOUT_MS = 3000;

interface DoctorArgs {
  file: string;
  server: { host: string; port: number } | null;
  json: boolean;
}

function parseDoctorArgs(args: string[]): DoctorArgs {
  let parsed;
  try {
    parsed = parseArgs({ args, strict: true, allowPositionals: false, options: { conf: { type: 'string' }, server: { type: 'string' }, json: { type: 'boolean' } } });
  } catch (err) {
    throw new UsageError((err as Error).message.replace('--conf', '-conf'));
  }
  let server: DoctorArgs['server'] = null;
  if (parsed.values.server !== undefined) {
    try {
      server = parseHostPort(parsed.values.server, 53);
    } catch (err) {
      if (err instanceof AddressError) throw new UsageError(`--server ${parsed.values.server}: ${err.message} (an IP address: names are not resolved)`);
      throw err;
    }
  }
  const file = parsed.values.conf ?? (existsSync('/etc/veil/Corefile') ? '/etc/veil/Corefile' : 'Corefile');
  return { file, server, json: parsed.values.json ?? false };
}

export async function runDoctor(rawArgs: string[], io: CommandIo): Promise<number> {
  // `-conf FILE` as the server takes it: node:util's parser wants two dashes.
  const args = rawArgs.map((a) => (a === '-conf' ? '--conf' : a.startsWith('-conf=') ? `-${a}` : a));
  const options = parseDoctorArgs(args);
  const checks: Check[] = [];

  // Veil's configuration: what it listens on, its blocks and upstreams.
  let built: BuiltConfig | null = null;
  let parsed: ReturnType<typeof parseBlocks> | null = null;
  try {
    const config = loadConfigFile(options.file);
    const registry = createBuiltinRegistry();
    await loadPlugins(config, registry);
    parsed = parseBlocks(config, registry);
    built = buildConfig(config, { registry, logger: new MemoryLogger(), clock: new SystemClock() });
    checks.push({ id: 'config', status: 'PASS', summary: `${options.file} loads (as veil check does)` });
  } catch (err) {
    if (!(err instanceof VeilError)) throw err;
    checks.push({ id: 'config', status: 'FAIL', summary: `${options.file} does not load: ${err.message}`, fix: 'veil check FILE says where; give the running configuration with -conf FILE' });
  }
  const listening = built ? veilAddresses(built) : [];
  const target = options.server ?? askAt(listening);

  checks.push(...systemResolverChecks(listening));

  // The running Veil: the canary, and what it says of its upstreams.
  const canaryZone = built ? findCanaryZone(built) : null;
  const running = await canaryCheck(target, canaryZone);
  checks.push(...running.checks);
  if (built && parsed) checks.push(...configurationChecks(built, parsed, running.upstreams));
  checks.push(...hints());

  const ok = !checks.some((c) => c.status === 'FAIL');
  if (options.json) {
    io.out(JSON.stringify({ ok, veil: target ? `${formatAddress(target.host, target.port)}` : null, config: options.file, checks }, null, 2));
  } else {
    for (const check of checks) {
      io.out(`${check.status.padEnd(4)}  ${check.id.padEnd(17)} ${check.summary}`);
      for (const line of check.details ?? []) io.out(`${' '.repeat(24)}${line}`);
      if (check.fix && check.status !== 'PASS') io.out(`${' '.repeat(24)}→ ${check.fix}`);
    }
    io.out(ok ? '\nNothing FAILs: this machine\'s DNS goes through Veil.' : '\nSome checks FAIL: see the → lines (docs/install.md).');
  }
  return ok ? 0 : 1;
}

/** Where to send our own queries to Veil: its first plain listener, a wildcard asked on loopback. */
function askAt(listening: VeilAddress[]): { host: string; port: number } | null {
  const first = listening.find((a) => a.scheme === 'udp') ?? listening[0];
  if (!first) return null;
  const host = first.host === '0.0.0.0' ? '127.0.0.1' : first.host === '::' ? '::1' : first.host;
  return { host, port: first.port };
}

// ---- the running Veil: the canary ---------------------------------------------------------------

function findCanaryZone(built: BuiltConfig): string | null {
  for (const block of built.blocks) for (const plugin of block.plugins) if (plugin instanceof PathPlugin) return plugin.canaryZone;
  return null;
}

async function askVeil(target: { host: string; port: number }, name: string): Promise<Record<string, string> | null> {
  const query = buildPathQuery(name, randomInt(0x10000));
  let answer: Buffer;
  try {
    answer = await queryUdp(target.host, target.port, query, QUERY_TIMEOUT_MS);
  } catch {
    try {
      [answer] = (await queryTcp(target.host, target.port, [query], QUERY_TIMEOUT_MS)) as [Buffer];
    } catch {
      return null;
    }
  }
  try {
    return parsePathAnswer(answer);
  } catch {
    return {};
  }
}

async function canaryCheck(target: { host: string; port: number } | null, zone: string | null): Promise<{ checks: Check[]; upstreams: string | null }> {
  if (!target) return { checks: [{ id: 'veil', status: 'FAIL', summary: 'no udp:// or tcp:// listener to ask Veil on', fix: 'give --server IP[:PORT], or listen on udp://127.0.0.1:53' }], upstreams: null };
  const at = formatAddress(target.host, target.port);
  if (!zone) {
    return { checks: [{ id: 'canary', status: 'WARN', summary: 'cannot check: the configuration has no path plugin (its canary zone is what this check looks up)', fix: 'add a "path" line to the server block' }], upstreams: null };
  }
  const name = `${randomBytes(8).toString('hex')}.${zone.replace(/\.$/, '')}`;
  // The canary is random and carries nothing about this machine or its user.
  let looked: string;
  try {
    const found = await Promise.race([
      lookup(name, { all: true }),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer in ${LOOKUP_TIMEOUT_MS / 1000}s`)), LOOKUP_TIMEOUT_MS).unref()),
    ]);
    looked = `answered ${found.map((a) => a.address).join(', ')}`;
  } catch (err) {
    looked = `failed (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
  const facts = await askVeil(target, name);
  if (facts === null) {
    return { checks: [{ id: 'veil', status: 'FAIL', summary: `Veil does not answer at ${at}`, fix: 'is it running? systemctl status veil (or: veil -conf FILE); --server IP[:PORT] if it listens elsewhere' }], upstreams: null };
  }
  const checks: Check[] = [{ id: 'veil', status: 'PASS', summary: `Veil answers at ${at}` }];
  if (facts.canary === undefined) {
    checks.push({ id: 'canary', status: 'FAIL', summary: `${at} gave no canary answer: it is not Veil with the path plugin, or its acl does not admit this machine`, fix: '--server IP[:PORT] of the Veil this machine should use' });
  } else if (facts.canary === 'seen') {
    checks.push({ id: 'canary', status: 'PASS', summary: `the system resolver's lookup of ${name} reached Veil (over ${facts.seen_transport} on ${facts.seen_listener}, from ${facts.seen_client})`, details: [`getaddrinfo ${looked}`] });
  } else {
    checks.push({
      id: 'canary',
      status: 'FAIL',
      summary: `Veil never saw ${name}, looked up through the system resolver (getaddrinfo ${looked}): this machine's DNS does not go through Veil`,
      fix: 'see the resolv.conf and systemd-resolved lines above (docs/install.md)',
    });
  }
  return { checks, upstreams: facts.upstreams ?? null };
}
