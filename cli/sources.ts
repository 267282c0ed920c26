/**
 * `veil sources list [FILE] [--filter TEXT]`: what the resolver and relay lists of a
 * configuration hold (verified, from the cache, or unavailable, and why), and which of their
 * entries the configuration names. It loads the lists as the server would (files, caches, and
 * HTTPS fetches by IP), and starts nothing else.
 */
import { parseArgs } from 'node:util';
import { SystemClock } from '../core/clock.js';
import { ConfigError } from '../core/errors.js';
import { loadPlugins } from '../core/external.js';
import { MemoryLogger } from '../core/logger.js';
import { buildConfig } from '../core/server.js';
import { SourcesService, type SourceCatalog } from '../lib/sources/catalog.js';
import { ListedUpstream } from '../lib/sources/listed-upstream.js';
import type { Stamp } from '../lib/stamps.js';
import { createBuiltinRegistry } from '../plugins/index.js';
import { loadConfigFile } from './config.js';
import { UsageError, type CommandIo } from './io.js';

export const SOURCES_USAGE = `Usage:
  veil sources list [FILE] [--filter TEXT]

Prints every entry of the lists FILE's sources directives declare (default FILE: Corefile),
with its protocol, address and properties, and the servers and relays FILE names from them.
--filter keeps the entries whose name, protocol or description contains TEXT.`;

function describeStamp(stamp: Stamp): string {
  const address = 'address' in stamp && stamp.address ? stamp.address : 'host' in stamp ? stamp.host : '';
  const props = 'props' in stamp ? [stamp.props.dnssec && 'dnssec', stamp.props.noLogs && 'nolog', stamp.props.noFilter && 'nofilter'].filter(Boolean).join(',') : '';
  return `${stamp.protocol} ${address}${props ? ` [${props}]` : ''}`;
}

export async function runSources(args: string[], io: CommandIo): Promise<number> {
  const [action, ...rest] = args;
  if (action !== 'list') throw new UsageError(action ? `unknown sources command "${action}"` : 'sources needs a command: list');
  let parsed;
  try {
    parsed = parseArgs({ args: rest, allowPositionals: true, strict: true, options: { filter: { type: 'string' } } });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (parsed.positionals.length > 1) throw new UsageError('one configuration file at most');
  const file = parsed.positionals[0] ?? 'Corefile';
  const filter = parsed.values.filter?.toLowerCase() ?? null;
  const registry = createBuiltinRegistry();
  const logs: string[] = [];
  let built;
  try {
    const config = loadConfigFile(file);
    await loadPlugins(config, registry);
    built = buildConfig(config, { registry, logger: new MemoryLogger(logs), clock: new SystemClock() });
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`veil: ${err.message}`);
      return 1;
    }
    throw err;
  }
  let found = false;
  for (const block of built.blocks) {
    const catalog = block.container.get(SourcesService);
    if (!catalog) continue;
    found = true;
    const sources = block.plugins.find((p) => p.name === 'sources')!;
    await sources.start?.();
    try {
      io.out(`server block ${block.server}`);
      printLists(catalog, filter, io);
      printNamed(block.upstreams.all, catalog, io);
    } finally {
      await sources.stop?.();
    }
  }
  if (!found) {
    io.err(`veil: ${file} has no sources directive`);
    return 1;
  }
  return 0;
}

function printLists(catalog: SourceCatalog, filter: string | null, io: CommandIo): void {
  for (const list of catalog.all()) {
    io.out(`  list ${list.name} (${list.origin}): ${list.state}${list.error ? ` (${list.error})` : ''}, ${list.entries.length} entries`);
    for (const entry of list.entries) {
      const text = `${entry.name} ${entry.stamps.map((s) => s.protocol).join(' ')} ${entry.description}`.toLowerCase();
      if (filter && !text.includes(filter)) continue;
      io.out(`    ${entry.name.padEnd(32)} ${entry.stamps.map(describeStamp).join('; ') || '(no usable stamp)'}`);
    }
  }
}

function printNamed(upstreams: readonly { name: string; protocol: string }[], catalog: SourceCatalog, io: CommandIo): void {
  const named = upstreams.filter((u) => u instanceof ListedUpstream);
  if (named.length === 0) return;
  io.out('  named in the configuration:');
  for (const upstream of named) {
    const entry = catalog.find(upstream.name);
    const stamp = entry?.entry.stamps.find((s) => s.protocol === upstream.protocol);
    io.out(`    ${upstream.protocol} ${upstream.name}: ${stamp ? `${describeStamp(stamp)} (list ${entry!.list.name})` : catalog.explain(upstream.name)}`);
  }
}
