/**
 * The `veil` command.
 *
 *     veil [-conf FILE]     serve (default: ./Corefile)
 *     veil check [FILE]     validate and print each block's listeners and plugin chain
 *     veil query …          a dig-like client for every transport (cli/query.ts)
 *     veil cache flush …    drop cached answers across a fleet (cli/cache.ts)
 *     veil init …           writes a Corefile for this machine (cli/init.ts)
 *     veil doctor …         checks that this machine's DNS goes through Veil (cli/doctor.ts)
 *     veil stamp …          decode and encode DNS stamps (cli/stamp.ts)
 *     veil dnscrypt keygen  a DNSCrypt provider key (cli/dnscrypt.ts)
 *     veil odoh keygen      an ODoH target key (cli/odoh.ts)
 *     veil --version
 *
 * SIGTERM/SIGINT: stop accepting, let queries in flight finish (bounded), exit 0.
 * SIGHUP: reload the same file; a configuration that fails keeps the old one serving.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SystemClock } from '../core/clock.js';
import { parseGlobalOptions, MAX_WORKERS } from '../core/config/global.js';
import { ConfigError, VeilError } from '../core/errors.js';
import { loadPlugins } from '../core/external.js';
import { StreamLogger } from '../core/logger.js';
import { trimAfterCollections } from '../core/memory.js';
import { lowerV8WorkerPriority } from '../core/v8-workers.js';
import { buildConfig, VeilServer, type BuiltConfig, type ServerEnvironment } from '../core/server.js';
import { createBuiltinRegistry } from '../plugins/index.js';
import { loadConfigFile } from './config.js';
import { provideWorkerServices, superviseWorkers, workerIndex } from './workers.js';
import { loadSodium } from '../lib/dnscrypt/sodium.js';
import { CACHE_USAGE, runCache } from './cache.js';
import { DNSCRYPT_USAGE, runDnscrypt } from './dnscrypt.js';
import { processIo, UsageError, type CommandIo } from './io.js';
import { ODOH_USAGE, runOdoh } from './odoh.js';
import { DOCTOR_USAGE, runDoctor } from './doctor.js';
import { INIT_USAGE, runInit } from './init.js';
import { QUERY_USAGE, runQuery } from './query.js';
import { runSources, SOURCES_USAGE } from './sources.js';
import { runStamp, STAMP_USAGE } from './stamp.js';

/**
 * Subcommands that run and exit, each in its own module, with its own usage text; `sodium` for
 * those that may need libsodium (DNSCrypt keys, certificates, queries), loaded before they run.
 */
const SUBCOMMANDS: Record<string, { run: (args: string[], io: CommandIo) => number | Promise<number>; usage: string; sodium?: true; argsOptional?: true }> = {
  query: { run: runQuery, usage: QUERY_USAGE, sodium: true },
  init: { run: (args, io) => runInit(args, io), usage: INIT_USAGE, argsOptional: true },
  doctor: { run: (args, io) => runDoctor(args, io), usage: DOCTOR_USAGE, argsOptional: true },
  sources: { run: runSources, usage: SOURCES_USAGE },
  cache: { run: runCache, usage: CACHE_USAGE },
  stamp: { run: runStamp, usage: STAMP_USAGE, sodium: true },
  dnscrypt: { run: runDnscrypt, usage: DNSCRYPT_USAGE, sodium: true },
  odoh: { run: runOdoh, usage: ODOH_USAGE },
};

/** Runs a subcommand (`veil query …`, `veil init …`, `veil doctor …`, `veil sources …`, `veil odoh …`, …); exit status 2 for a usage mistake. */
export async function runSubcommand(name: string, args: string[], io: CommandIo = processIo): Promise<number> {
  const command = SUBCOMMANDS[name]!;
  if ((args.length === 0 && !command.argsOptional) || args.includes('--help') || args.includes('-h')) {
    io.out(command.usage);
    return args.length === 0 ? 2 : 0;
  }
  try {
    if (command.sodium) await loadSodium();
    return await command.run(args, io);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(`veil: ${err.message}\n\n${command.usage}`);
    return 2;
  }
}

const USAGE = `Usage:
  veil [-conf FILE] [--workers N]
                          serve the configuration in FILE (default: Corefile), in N processes
                          sharing the listeners (default: the Corefile's global "workers", or 1)
  veil check [FILE]       check FILE and print each server block's listeners and plugins
  veil query [@SERVER] NAME [TYPE] …  ask a server over UDP, TCP, TLS, HTTPS, DNSCrypt or ODoH
                                   (veil query --help); --path NAME: which way NAME goes
  veil init [--out FILE] …         write a Corefile for this machine (veil init --help)
  veil doctor [-conf FILE] [--json]
                                   does this machine's DNS really go through Veil? (veil doctor --help)
  veil sources list [FILE]         what the resolver and relay lists hold (veil sources --help)
  veil cache flush [NAME]          drop cached answers across a fleet sharing a cache (veil cache --help)
  veil stamp decode|encode …       DNS stamps (veil stamp --help)
  veil dnscrypt keygen …           a DNSCrypt provider key (veil dnscrypt --help)
  veil odoh keygen …               an ODoH target key (veil odoh --help)
  veil --version          print the version

FILE is a Corefile, or JSONC when its name ends in .json or .jsonc.`;

export function version(): string {
  const pkg = fileURLToPath(new URL('../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

interface Command {
  kind: 'serve' | 'check' | 'version' | 'help';
  file: string;
  /** --workers N; null when not given (the Corefile's global `workers` then decides). */
  workers: number | null;
}

export function parseArgs(argv: string[]): Command {
  const args = [...argv];
  let kind: Command['kind'] = 'serve';
  let file: string | null = null;
  let workers: number | null = null;
  if (args[0] === 'check') {
    kind = 'check';
    args.shift();
  }
  while (args.length > 0) {
    const arg = args.shift()!;
    if (arg === '--version' || arg === '-version' || arg === 'version') return { kind: 'version', file: '', workers: null };
    if (arg === '-h' || arg === '--help' || arg === '-help' || arg === 'help') return { kind: 'help', file: '', workers: null };
    const inline = /^--?conf=(.*)$/.exec(arg);
    const workersInline = /^--?workers=(.*)$/.exec(arg);
    if (workersInline || arg === '--workers' || arg === '-workers') {
      const value = workersInline ? workersInline[1]! : args.shift();
      if (!value || !/^\d+$/.test(value) || Number(value) < 1 || Number(value) > MAX_WORKERS) throw new UsageError(`--workers takes a number from 1 to ${MAX_WORKERS}`);
      workers = Number(value);
    } else if (inline) {
      file = inline[1]!;
    } else if (arg === '-conf' || arg === '--conf') {
      const value = args.shift();
      if (!value) throw new UsageError(`${arg} needs a file name`);
      file = value;
    } else if (!arg.startsWith('-') && kind === 'check' && file === null) {
      file = arg;
    } else {
      throw new UsageError(`unknown argument "${arg}"`);
    }
  }
  return { kind, file: file ?? 'Corefile', workers };
}


export function describeConfig(built: BuiltConfig): string {
  const lines: string[] = [];
  built.blocks.forEach((block, i) => {
    lines.push(`server block ${i + 1}: ${block.server}`);
    const listeners = [...built.listeners.values()].filter((l) => l.routes.some((r) => r.block === block)).map((l) => l.endpoint.text);
    lines.push(`  listeners: ${listeners.join(', ') || '(none)'}`);
    lines.push(`  plugins:   ${block.plugins.map((p) => p.name).join(', ') || '(none)'}`);
    const chain = block.links.filter((p) => p.serve).map((p) => p.name);
    lines.push(`  chain:     ${[...chain, 'upstreams'].join(' → ')}`);
    const upstreams = block.upstreams.all.map((u) => `${u.name} (${u.protocol} ${u.address})`);
    lines.push(`  upstreams: ${upstreams.join(', ') || '(none)'}${upstreams.length ? ` — policy ${block.policy.name}` : ''}`);
  });
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] && Object.hasOwn(SUBCOMMANDS, argv[0])) return runSubcommand(argv[0], argv.slice(1));
  let command: Command;
  try {
    command = parseArgs(argv);
  } catch (err) {
    process.stderr.write(`veil: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (command.kind === 'version') {
    process.stdout.write(`veil ${version()} (node ${process.version})\n`);
    return 0;
  }
  if (command.kind === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }

  const worker = workerIndex();
  const logger = new StreamLogger(process.stderr, 'info', '', worker ? `worker ${worker}: ` : '');
  const env = { registry: createBuiltinRegistry(), logger, clock: new SystemClock(), reusePort: worker !== null };

  if (command.kind === 'check') {
    try {
      const config = loadConfigFile(command.file);
      await loadPlugins(config, env.registry);
      const built = buildConfig(config, env);
      process.stdout.write(`${command.file}: OK\n${describeConfig(built)}\n`);
      return 0;
    } catch (err) {
      return reportFatal(err);
    }
  }

  if (worker === null) {
    let workers: number;
    try {
      workers = await workerCount(command, env);
    } catch (err) {
      return reportFatal(err);
    }
    if (workers > 1) return superviseWorkers(workers, fileURLToPath(import.meta.url), process.argv.slice(2), logger);
  }

  const server = new VeilServer(env);
  try {
    if (worker !== null) provideWorkerServices(server.services);
    await server.start(loadConfigFile(command.file));
  } catch (err) {
    return reportFatal(err);
  }
  trimAfterCollections();
  lowerV8WorkerPriority();

  let reloading: Promise<unknown> = Promise.resolve();
  process.on('SIGHUP', () => {
    reloading = reloading.then(async () => {
      logger.info(`SIGHUP: reloading ${command.file}`);
      try {
        await server.reload(loadConfigFile(command.file));
      } catch (err) {
        logger.error(`reload failed, keeping the running configuration: ${(err as Error).message}`);
      }
    });
  });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (signal: string): void => {
      if (stopping) {
        logger.warn(`${signal} again: exiting at once`);
        resolve(1);
        return;
      }
      stopping = true;
      logger.info(`${signal}: finishing queries in flight and stopping`);
      void reloading
        .then(() => server.stop())
        .then(
          () => resolve(0),
          (err: unknown) => {
            logger.error(`stop failed: ${(err as Error).message}`);
            resolve(1);
          },
        );
    };
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));
    // Said only once every signal has its handler: whoever waits for this line may signal at once.
    logger.info(`veil ${version()} serving ${command.file}`);
  });
}

/**
 * How many processes serve: --workers, else the Corefile's global `workers`. Workers share
 * addresses, so a listener on port 0 (a different port for each) is refused.
 */
async function workerCount(command: Command, env: ServerEnvironment): Promise<number> {
  const config = loadConfigFile(command.file);
  const workers = command.workers ?? parseGlobalOptions(config).workers;
  if (workers > 1) {
    await loadPlugins(config, env.registry);
    const built = buildConfig(config, env);
    const zero = [...built.listeners.values()].find((l) => l.endpoint.port === 0);
    if (zero) throw new ConfigError(null, `${zero.endpoint.text}: with ${workers} workers every listener needs a fixed port (port 0 would give each worker its own)`);
  }
  return workers;
}

function reportFatal(err: unknown): number {
  if (err instanceof VeilError) {
    process.stderr.write(`${err.message}\n`);
    return 1;
  }
  process.stderr.write(`veil: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
}

// Run only as the program, not when a test imports parseArgs.
if (process.argv[1] && realpathSync(fileURLToPath(import.meta.url)) === realpathSync(process.argv[1])) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`veil: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
