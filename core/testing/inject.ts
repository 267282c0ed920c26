/**
 * The in-process test kit: a configuration built from Corefile text as the server builds it,
 * its plugins started, and queries handed to the door (core/dispatch.ts) the way a listener
 * hands them, without a socket. For handler tests: what a plugin answers, notes and logs, for a
 * client of any address and transport. Upstreams are real: point them at a fake DNS server
 * (fake-dns.ts) on loopback.
 */
import { ManualClock, SystemClock, type Clock } from '../clock.js';
import { parseCorefileText } from '../config/corefile.js';
import type { ClientAddress, TransportName } from '../context.js';
import { createDispatcher, QUERY_TIMEOUT_MS, type ZoneRoute } from '../dispatch.js';
import { loadPlugins } from '../external.js';
import type { QueryHandler } from '../listeners/listener.js';
import { MemoryLogger } from '../logger.js';
import type { PluginRegistry } from '../registry.js';
import { buildConfig, startBlocks, stopBlocks, type BuiltConfig } from '../server.js';
import { ServiceContainer } from '../services.js';

export interface InjectOptions {
  registry: PluginRegistry;
  clock?: Clock;
  /** The Corefile's name: where relative paths in it are resolved from (default `Corefile`). */
  file?: string;
  queryTimeoutMs?: number;
  /** Called with the root container before the configuration is built: provide replacements of server-wide services there. */
  services?: (root: ServiceContainer) => void;
}

/** Where an injected query comes from; by default a client on loopback, over UDP. */
export interface InjectFrom {
  client?: Partial<ClientAddress>;
  transport?: TransportName;
  /** Whether the answer must fit a datagram (the door then truncates it); by default, for `udp`. */
  datagram?: boolean;
}

export interface Injected {
  readonly config: BuiltConfig;
  /** Every line logged, `plugin/NAME: …` included. */
  readonly logs: string[];
  /** Hands one wire query to the door; resolves with the answer as the client would get it (null: nothing sent). */
  query(query: Buffer, from?: InjectFrom): Promise<Buffer | null>;
  /** Stops the plugins, upstreams and policies it started. */
  stop(): Promise<void>;
}

/** Builds `corefile`, starts its blocks, and routes every block's zones through one door. */
export async function inject(corefile: string, options: InjectOptions): Promise<Injected> {
  const logs: string[] = [];
  const clock = options.clock ?? new SystemClock();
  const config = parseCorefileText(corefile, options.file ?? 'Corefile');
  await loadPlugins(config, options.registry);
  const root = ServiceContainer.root();
  options.services?.(root);
  const built = buildConfig(config, { registry: options.registry, logger: new MemoryLogger(logs), clock }, new Map(), root);
  await startBlocks(built);
  const routes: ZoneRoute[] = built.blocks.flatMap((block) => block.info.zones.map((zone) => ({ zone: zone.zone, block })));
  const door: QueryHandler = createDispatcher(routes, clock, options.queryTimeoutMs ?? QUERY_TIMEOUT_MS);
  return {
    config: built,
    logs,
    query(query, from = {}) {
      const transport = from.transport ?? 'udp';
      const client: ClientAddress = { address: '127.0.0.1', port: 40212, family: 'IPv4', ...from.client };
      return door(query, { client, transport, datagram: from.datagram ?? transport === 'udp' });
    },
    stop: () => stopBlocks(built),
  };
}

export { ManualClock };
