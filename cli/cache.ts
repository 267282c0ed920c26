/**
 * `veil cache flush [NAME] [-conf FILE]`: drops cached answers across the fleet that shares
 * FILE's cache (cache's `shared` level): every answer, or those of NAME. It connects to the
 * fleet's Valkey as an instance of its own, changes the shared level there (a new generation,
 * or NAME's keys deleted) and tells every running instance to drop its local entries too.
 */
import { parseArgs } from 'node:util';
import { SystemClock } from '../core/clock.js';
import { typeName } from '../core/dns/constants.js';
import { ConfigError } from '../core/errors.js';
import { loadPlugins } from '../core/external.js';
import { MemoryLogger } from '../core/logger.js';
import { buildConfig } from '../core/server.js';
import { TlsContexts } from '../lib/tls/contexts.js';
import { createBuiltinRegistry } from '../plugins/index.js';
import { FLUSHED_TYPES, flushedQuestions } from '../plugins/cache/shared/flush.js';
import { SharedCache, SharedCacheService } from '../plugins/cache/shared/shared-cache.js';
import { loadConfigFile } from './config.js';
import { UsageError, type CommandIo } from './io.js';

export const CACHE_USAGE = `Usage:
  veil cache flush [NAME] [-conf FILE]

Drops cached answers across the fleet of instances that share FILE's cache (default FILE:
Corefile; its cache needs a "shared" level): every answer, or NAME's, for the types
${FLUSHED_TYPES.map(typeName).join(', ')}.
Every running instance drops its own copies too.`;

/** How long to wait for Valkey. */
const CONNECT_WAIT_MS = 5000;

export async function runCache(args: string[], io: CommandIo): Promise<number> {
  const [action, ...rest] = args;
  if (action !== 'flush') throw new UsageError(action ? `unknown cache command "${action}"` : 'cache needs a command: flush');
  let parsed;
  try {
    parsed = parseArgs({ args: rest.map((a) => (a === '-conf' ? '--conf' : a)), allowPositionals: true, strict: true, options: { conf: { type: 'string' } } });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (parsed.positionals.length > 1) throw new UsageError('one name at most');
  const name = parsed.positionals[0] ?? null;
  if (name !== null) {
    try {
      flushedQuestions(name);
    } catch (err) {
      throw new UsageError(`"${name}" is not a domain name: ${(err as Error).message}`);
    }
  }
  const file = parsed.values.conf ?? 'Corefile';
  const registry = createBuiltinRegistry();
  const logs: string[] = [];
  const clock = new SystemClock();
  let built;
  try {
    const config = loadConfigFile(file);
    await loadPlugins(config, registry);
    built = buildConfig(config, { registry, logger: new MemoryLogger(logs), clock });
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`veil: ${err.message}`);
      return 1;
    }
    throw err;
  }
  const fleets = built.blocks.flatMap((b) => b.container.get(SharedCacheService) ?? []);
  if (fleets.length === 0) {
    io.err(`veil: ${file} has no cache with a shared level: flush works across a fleet (an instance alone keeps its cache until it restarts)`);
    return 1;
  }
  // This command is the process's only user of TLS: its contexts are its own.
  const tls = new TlsContexts();
  let failed = 0;
  for (const fleet of fleets) {
    const command = new SharedCache(fleet.options, fleet.server, new MemoryLogger(logs), clock, tls, { subscribe: false });
    await command.start();
    try {
      await command.flushFleet(name, CONNECT_WAIT_MS);
      io.out(`${fleet.options.shown} (server block ${fleet.server}): flushed ${name === null ? 'every answer' : name}`);
    } catch (err) {
      io.err(`veil: ${fleet.options.shown} (server block ${fleet.server}): ${(err as Error).message}`);
      failed++;
    } finally {
      await command.stop();
    }
  }
  return failed === 0 ? 0 : 1;
}
