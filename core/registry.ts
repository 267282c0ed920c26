/** The plugins a server knows, the order they stand in in the chain, and who provides what. */
import { externalPluginDirective } from './external.js';
import { CHAIN_ORDER } from './order.js';
import type { PluginDefinition } from './plugin.js';
import type { ServiceToken } from './services.js';
import { TransportRegistry } from './listeners/listener.js';
import { tcpTransport } from './listeners/tcp.js';
import { udpTransport } from './listeners/udp.js';

export class PluginRegistry {
  /** In the order they were registered: the set-up order of plugins that need nothing of each other. */
  private readonly definitions = new Map<string, PluginDefinition<any>>();
  private readonly chain: string[] = [...CHAIN_ORDER];
  readonly transports = new TransportRegistry();

  constructor() {
    // Plain DNS is core's own; every other scheme comes with a plugin.
    this.transports.register(udpTransport);
    this.transports.register(tcpTransport);
    // Core's own directive: it marks what was loaded before parsing, and extends nothing itself.
    this.definitions.set(externalPluginDirective.name, externalPluginDirective);
  }

  register(definition: PluginDefinition<any>): void {
    const { name, position } = definition;
    if (this.definitions.has(name)) throw new Error(`plugin "${name}" is registered twice`);
    if (!this.chain.includes(name) && position) {
      const anchor = 'before' in position ? position.before : position.after;
      const index = this.chain.indexOf(anchor);
      if (index < 0) throw new Error(`plugin "${name}" wants to stand next to "${anchor}", which is not a plugin of the chain (${this.chain.join(', ')})`);
      this.chain.splice('before' in position ? index : index + 1, 0, name);
    } else if (!this.chain.includes(name) && !declaresAnyExtension(definition)) {
      throw new Error(
        `plugin "${name}" is not in the built-in order; declare position: { before: NAME } or { after: NAME } for where it serves queries, or what it does instead (provides, transports, roles)`,
      );
    }
    this.definitions.set(name, definition);
    for (const transport of definition.transports ?? []) this.transports.register(transport);
  }

  get(name: string): PluginDefinition<any> | undefined {
    return this.definitions.get(name);
  }

  /** Registered plugin names, in the order they were registered. */
  get names(): string[] {
    return [...this.definitions.keys()];
  }

  /** Position in the chain (lower runs first); -1 for a plugin that has no place in it. */
  chainRank(name: string): number {
    return this.chain.indexOf(name);
  }

  /** The registered plugins that provide `token`, for messages: `this block has no sources directive`. */
  providersOf(token: ServiceToken<unknown>): string[] {
    return [...this.definitions.values()].filter((d) => d.provides?.includes(token)).map((d) => d.name);
  }
}

/** A plugin outside the chain must still say how it extends Veil, or it would do nothing. */
function declaresAnyExtension(definition: PluginDefinition<any>): boolean {
  return [definition.provides, definition.transports, definition.roles].some((list) => list !== undefined && list.length > 0);
}
