/**
 * Options of the whole server, from the Corefile's key-less block at the top:
 *
 *     {
 *         workers 2
 *     }
 */
import type { ConfigFile } from './ast.js';
import { expectArgs, expectNoBlock, parseInteger, readOptions } from './options.js';

export interface GlobalOptions {
  /** Processes serving the same listeners (SO_REUSEPORT); 1 means this process alone. */
  workers: number;
}

export const MAX_WORKERS = 64;

export function parseGlobalOptions(config: ConfigFile): GlobalOptions {
  const options: GlobalOptions = { workers: 1 };
  readOptions('global', config.global, {
    workers: (d) => {
      expectNoBlock('global', d);
      options.workers = parseInteger('global', expectArgs('global', d, 1)[0]!, 1, MAX_WORKERS);
    },
  });
  return options;
}
