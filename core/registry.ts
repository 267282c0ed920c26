/** The plugins a server knows, and the order they stand in. */
import { externalPluginDirective } from './external.js';
import { PLUGIN_ORDER } from './order.js';
import type { PluginDefinition } from './plugin.js';
import { TransportRegistry } from './listeners/listener.js';
import { tcpTransport } from './listeners/tcp.js';
import { udpTransport } from './listeners/udp.js';

export class PluginRegistry {
  private readonly definitions = new Map<string, PluginDefinition<any>>();
  private readonly order: string[] = [...PLUGIN_ORDER];
  readonly transports = new TransportRegistry();

  constructor() {
    // Plain DNS is core's own; every other scheme comes with a plugin.
    this.transports.register(udpTransport);
    this.transports.register(tcpTransport);
    this.register(externalPluginDirective);
  }

  register(definition: PluginDefinition<any>): void {
    const { name } = definition;
    if (this.definitions.has(name)) throw new Error(`plugin "${name}" is registered twice`);
    if (!this.order.includes(name)) {
      const position = definition.position;
      if (!position) throw new Error(`plugin "${name}" is not in the built-in order; declare position: { before: NAME } or { after: NAME }`);
      const anchor = 'before' in position ? position.before : position.after;
      const index = this.order.indexOf(anchor);
      if (index < 0) throw new Error(`plugin "${name}" wants to stand next to "${anchor}", which is not a known plugin`);
      this.order.splice('before' in position ? index : index + 1, 0, name);
    }
    this.definitions.set(name, definition);
    for (const transport of definition.transports ?? []) this.transports.register(transport);
  }

  get(name: string): PluginDefinition<any> | undefined {
    return this.definitions.get(name);
  }

  /** Registered plugin names, in chain order. */
  get names(): string[] {
    return this.order.filter((name) => this.definitions.has(name));
  }

  /** Position in the order; lower runs first. */
  rank(name: string): number {
    return this.order.indexOf(name);
  }
}
