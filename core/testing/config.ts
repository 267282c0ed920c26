/**
 * Configuration tests as `veil check` runs them: Corefile text loaded (plugins named by
 * `plugin` lines imported, `prepare` run), parsed and built, nothing bound or connected.
 */
import assert from 'node:assert/strict';
import { SystemClock } from '../clock.js';
import { parseCorefileText } from '../config/corefile.js';
import { ConfigError } from '../errors.js';
import { loadPlugins } from '../external.js';
import { MemoryLogger } from '../logger.js';
import type { PluginRegistry } from '../registry.js';
import { buildConfig, type BuiltConfig } from '../server.js';

export interface CheckOptions {
  registry: PluginRegistry;
  /** The Corefile's name, as error messages start with it (default `Corefile`). */
  file?: string;
}

/** Builds `text` as `veil check` does; throws what it throws (a ConfigError for the user's mistakes). */
export async function checkCorefile(text: string, options: CheckOptions): Promise<BuiltConfig> {
  const config = parseCorefileText(text, options.file ?? 'Corefile');
  await loadPlugins(config, options.registry);
  return buildConfig(config, { registry: options.registry, logger: new MemoryLogger(), clock: new SystemClock() });
}

/**
 * Asserts that `text` is refused with a ConfigError at `line:column` (1-based) whose message
 * matches `pattern`, and that the message starts with that place, as the user reads it.
 */
export async function expectConfigError(text: string, line: number, column: number, pattern: RegExp, options: CheckOptions): Promise<ConfigError> {
  const file = options.file ?? 'Corefile';
  let error: unknown = null;
  try {
    await checkCorefile(text, options);
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof ConfigError, error === null ? `the configuration was accepted:\n${text}` : `expected a ConfigError, got ${String(error)}`);
  assert.equal(`${error.location?.line}:${error.location?.column}`, `${line}:${column}`, error.message);
  assert.ok(error.message.startsWith(`${file}:${line}:${column}: `), error.message);
  assert.match(error.message, pattern);
  return error;
}
