/** Options of `listen … { }` shared by the listener schemes. */
import type { Directive } from '../config/ast.js';
import { expectArgs, parseDuration, parseInteger } from '../config/options.js';
import { DEFAULT_STREAM_LIMITS, type StreamLimits } from './stream-sessions.js';

const PLUGIN = 'listen';

/** Option names understood by every stream listener (tcp, tls). */
export const STREAM_OPTION_NAMES = ['idle_timeout', 'max_connections', 'pipeline'] as const;

export function parseStreamLimits(options: Directive[]): StreamLimits {
  const limits = { ...DEFAULT_STREAM_LIMITS };
  for (const d of options) {
    const [value] = expectArgs(PLUGIN, d, 1);
    switch (d.name.text) {
      case 'idle_timeout':
        limits.idleTimeoutMs = parseDuration(PLUGIN, value!, { min: 100, max: 3_600_000 });
        break;
      case 'max_connections':
        limits.maxConnections = parseInteger(PLUGIN, value!, 1, 1_000_000);
        break;
      case 'pipeline':
        limits.pipeline = parseInteger(PLUGIN, value!, 1, 65_535);
        break;
    }
  }
  return limits;
}

export interface DatagramLimits {
  /** Queries being answered at once; more are dropped (default 10000). */
  maxInflight: number;
}

export const DATAGRAM_OPTION_NAMES = ['max_inflight'] as const;

export function parseDatagramLimits(options: Directive[]): DatagramLimits {
  const limits: DatagramLimits = { maxInflight: 10_000 };
  for (const d of options) {
    const [value] = expectArgs(PLUGIN, d, 1);
    if (d.name.text === 'max_inflight') limits.maxInflight = parseInteger(PLUGIN, value!, 1, 10_000_000);
  }
  return limits;
}
