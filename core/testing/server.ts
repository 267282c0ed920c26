/**
 * A real Veil server in the test's own process, from Corefile text: listeners bound on
 * loopback, queries over real sockets, logs kept in memory.
 */
import { ManualClock, SystemClock, type Clock } from '../clock.js';
import { parseCorefileText } from '../config/corefile.js';
import { MemoryLogger } from '../logger.js';
import type { PluginRegistry } from '../registry.js';
import { VeilServer } from '../server.js';
import { parseEndpoint } from '../net/address.js';
import type { ServiceContainer } from '../services.js';

export interface TestServer {
  server: VeilServer;
  logs: string[];
  /** The bound `{ host, port }` of the listener configured as `url` (e.g. `udp://127.0.0.1:0`). */
  address(url: string): { host: string; port: number };
  reload(corefile: string): Promise<boolean>;
  stop(): Promise<void>;
}

export interface TestServerOptions {
  registry: PluginRegistry;
  clock?: Clock;
  /** Where relative paths in the Corefile are resolved from (default: the working directory). */
  file?: string;
  queryTimeoutMs?: number;
  /** Called with the server's root container before it starts: provide replacements of server-wide services there. */
  services?: (root: ServiceContainer) => void;
}

export async function startTestServer(corefile: string, options: TestServerOptions): Promise<TestServer> {
  const logs: string[] = [];
  const file = options.file ?? 'Corefile';
  const server = new VeilServer({
    registry: options.registry,
    logger: new MemoryLogger(logs),
    clock: options.clock ?? new SystemClock(),
    graceMs: 200,
    ...(options.queryTimeoutMs ? { queryTimeoutMs: options.queryTimeoutMs } : {}),
  });
  options.services?.(server.services);
  await server.start(parseCorefileText(corefile, file));
  return {
    server,
    logs,
    address(url) {
      const bound = server.bound.get(parseEndpoint(url, 53).text);
      if (!bound) throw new Error(`no listener ${url}; have ${[...server.bound.keys()].join(', ')}`);
      const endpoint = parseEndpoint(bound, null);
      return { host: endpoint.host, port: endpoint.port };
    },
    reload: (text) => server.reload(parseCorefileText(text, file)),
    stop: () => server.stop(),
  };
}

export { ManualClock };
