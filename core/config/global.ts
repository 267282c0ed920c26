/**
 * Options of the whole server, from the Corefile's key-less block at the top:
 *
 *     {
 *         workers 2
 *         max_concurrent 10000
 *     }
 */
import type { ConfigFile } from './ast.js';
import { DEFAULT_MAX_CONCURRENT } from '../admission.js';
import { expectArgs, expectNoBlock, parseInteger, readOptions } from './options.js';

export interface GlobalOptions {
  /** Processes serving the same listeners (SO_REUSEPORT); 1 means this process alone. */
  workers: number;
  /** Queries being answered at once, over every listener; more are answered REFUSED. */
  maxConcurrent: number;
}

export const MAX_WORKERS = 64;

export function parseGlobalOptions(config: ConfigFile): GlobalOptions {
  const options: GlobalOptions = { workers: 1, maxConcurrent: DEFAULT_MAX_CONCURRENT };
  readOptions('global', config.global, {
    workers: (d) => {
      expectNoBlock('global', d);
      options.workers = parseInteger('global', expectArgs('global', d, 1)[0]!, 1, MAX_WORKERS);
    },
    max_concurrent: (d) => {
      expectNoBlock('global', d);
      options.maxConcurrent = parseInteger('global', expectArgs('global', d, 1)[0]!, 1, 10_000_000);
    },
  });
  return options;
}
