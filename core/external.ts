/**
 * Plugins from outside the tree: `plugin ./path/to/plugin.js` or `plugin PACKAGE` in a server
 * block loads an ES module whose default export (or `plugins` export) is a plugin definition,
 * or an array of them, and registers it before the configuration is parsed. A path is relative
 * to the Corefile; a package name is resolved from the Corefile's folder, as `npm install` there
 * would put it.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ConfigFile, Directive } from './config/ast.js';
import { ConfigError } from './errors.js';
import type { PluginDefinition } from './plugin.js';
import type { PluginRegistry } from './registry.js';

export const EXTERNAL_PLUGIN_DIRECTIVE = 'plugin';

function* pluginDirectives(config: ConfigFile): Generator<Directive> {
  for (const block of config.blocks) {
    for (const directive of block.directives) {
      if (directive.name.text === EXTERNAL_PLUGIN_DIRECTIVE) yield directive;
    }
  }
}

/**
 * Everything a configuration needs before it is parsed: the external plugins it names imported
 * and registered, then `prepare` of each plugin it uses. Throws ConfigError.
 */
export async function loadPlugins(config: ConfigFile, registry: PluginRegistry): Promise<void> {
  await loadExternalPlugins(config, registry);
  const names = new Set<string>();
  const words = new Set<string>();
  const collect = (directives: Directive[]): void => {
    for (const directive of directives) {
      names.add(directive.name.text);
      for (const arg of directive.args) words.add(arg.text);
      if (directive.block) collect(directive.block);
    }
  };
  collect(config.global);
  for (const block of config.blocks) {
    for (const key of block.keys) words.add(key.text);
    collect(block.directives);
  }
  const schemes = new Set([...words].map((word) => /^([a-z][a-z0-9+.-]*):\/\//.exec(word)?.[1]));
  for (const name of registry.names) {
    const definition = registry.get(name)!;
    if (!definition.prepare) continue;
    if (names.has(name) || definition.transports?.some((transport) => schemes.has(transport.scheme))) await definition.prepare();
  }
}

/** Imports and registers every plugin a configuration names. Throws ConfigError. */
async function loadExternalPlugins(config: ConfigFile, registry: PluginRegistry): Promise<void> {
  for (const directive of pluginDirectives(config)) {
    const spec = directive.args[0];
    if (!spec || directive.args.length > 1) {
      throw new ConfigError(directive.args[1] ?? directive.name, 'plugin takes one argument: a path to an ES module (./my-plugin.js) or a package name', EXTERNAL_PLUGIN_DIRECTIVE);
    }
    const base = path.dirname(path.resolve(spec.file));
    let url: string;
    try {
      url = /^(\.{1,2}\/|\/)/.test(spec.text)
        ? pathToFileURL(path.resolve(base, spec.text)).href
        : pathToFileURL(createRequire(path.join(base, 'Corefile')).resolve(spec.text)).href;
    } catch (err) {
      throw new ConfigError(spec, `cannot find plugin package "${spec.text}" from ${base}: ${(err as Error).message}`, EXTERNAL_PLUGIN_DIRECTIVE);
    }
    let module: Record<string, unknown>;
    try {
      module = (await import(url)) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(spec, `cannot load ${spec.text}: ${(err as Error).message}`, EXTERNAL_PLUGIN_DIRECTIVE, { cause: err });
    }
    const exported = module.default ?? module.plugins ?? module.plugin;
    const definitions = Array.isArray(exported) ? exported : [exported];
    if (exported === undefined || definitions.length === 0) {
      throw new ConfigError(spec, `${spec.text} exports no plugin (export default a plugin definition, or an array of them)`, EXTERNAL_PLUGIN_DIRECTIVE);
    }
    for (const definition of definitions) {
      const problem = definitionProblem(definition);
      if (problem) throw new ConfigError(spec, `${spec.text}: ${problem}`, EXTERNAL_PLUGIN_DIRECTIVE);
      const known = registry.get((definition as PluginDefinition).name);
      if (known === definition) continue; // imported again by another block, or on reload
      try {
        registry.register(definition as PluginDefinition);
      } catch (err) {
        throw new ConfigError(spec, (err as Error).message, EXTERNAL_PLUGIN_DIRECTIVE);
      }
    }
  }
}

function definitionProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null) return 'the export is not a plugin definition object';
  const d = value as Partial<PluginDefinition>;
  if (typeof d.name !== 'string' || !/^[a-z][a-z0-9_-]*$/.test(d.name)) return 'a plugin needs a lower-case `name`';
  if (typeof d.parse !== 'function') return `plugin "${d.name}" has no parse(directives, scope) function`;
  if (typeof d.create !== 'function') return `plugin "${d.name}" has no create(options, scope) function`;
  for (const list of ['provides', 'requires', 'uses', 'roles', 'transports'] as const) {
    if (d[list] !== undefined && !Array.isArray(d[list])) return `plugin "${d.name}": ${list} is a list`;
  }
  if (d.once !== undefined && d.once !== true && typeof d.once !== 'string') return `plugin "${d.name}": once is true or a string that says what to do instead`;
  return null;
}

/** The `plugin` directive itself: loading happened before parsing, so it only checks its line. */
export const externalPluginDirective: PluginDefinition<null> = {
  name: EXTERNAL_PLUGIN_DIRECTIVE,
  parse: () => null,
  create: () => {},
};
