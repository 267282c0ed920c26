/**
 * `prepare`: a plugin loads what it needs (libsodium, for DNSCrypt) only when a configuration
 * uses it, by name or by listener scheme, before anything is parsed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCorefileText } from '../core/config/corefile.js';
import { loadPlugins } from '../core/external.js';
import type { PluginDefinition } from '../core/plugin.js';
import { PluginRegistry } from '../core/registry.js';
import { createBuiltinRegistry } from '../plugins/index.js';

function registryWithProbe(): { registry: PluginRegistry; prepared: () => number } {
  let count = 0;
  const probe: PluginDefinition<null> = {
    name: 'probe',
    position: { after: 'hosts' },
    transports: [
      {
        scheme: 'probe',
        defaultPort: 1,
        optionNames: [],
        parseOptions: () => null,
        create: () => {
          throw new Error('not started in this test');
        },
      },
    ],
    prepare: async () => {
      count++;
    },
    parse: () => null,
    create: () => ({ name: 'probe' }),
  };
  const registry = new PluginRegistry();
  registry.register(probe);
  return { registry, prepared: () => count };
}

const load = (registry: PluginRegistry, text: string) => loadPlugins(parseCorefileText(text, 'Corefile'), registry);

describe('plugin prepare', () => {
  it('runs when a block names the plugin', async () => {
    const { registry, prepared } = registryWithProbe();
    await load(registry, '. {\n  listen udp://127.0.0.1:0\n  probe\n}\n');
    assert.equal(prepared(), 1);
  });

  it('runs when a listener uses one of its schemes, in a listen line or a block key', async () => {
    const { registry, prepared } = registryWithProbe();
    await load(registry, '. {\n  listen probe://127.0.0.1:5300\n}\n');
    assert.equal(prepared(), 1);
    await load(registry, 'probe://example.test:5300 {\n}\n');
    assert.equal(prepared(), 2);
  });

  it('does not run for a configuration without the plugin', async () => {
    const { registry, prepared } = registryWithProbe();
    await load(registry, '. {\n  listen udp://127.0.0.1:0\n  hosts {\n    192.0.2.1 probe.test\n  }\n}\n');
    assert.equal(prepared(), 0);
  });

  it('is how dnscrypt and anonymize get libsodium; nothing else asks for it', () => {
    const registry = createBuiltinRegistry();
    const withPrepare = registry.names.filter((name) => registry.get(name)!.prepare);
    assert.deepEqual(withPrepare.sort(), ['anonymize', 'dnscrypt']);
  });
});
