/** DNS stamps written in a Corefile: parsed, or a configuration error at their token naming the field. */
import type { Token } from '../core/config/ast.js';
import { configError } from '../core/config/options.js';
import { parseStamp, splitAddress, splitStampHost, StampError, type Stamp } from './stamps.js';

export function parseStampToken(plugin: string, token: Token): Stamp {
  return atToken(plugin, token, () => parseStamp(token.text));
}

/** A stamp's host field taken apart (lib/stamps.ts, `splitStampHost`), or `bad stamp: …` at its token. */
export function stampHost(plugin: string, token: Token, stamp: { host: string }): { host: string; port: number | null } {
  return atToken(plugin, token, () => splitStampHost(stamp.host));
}

/** A stamp's address field taken apart, or `bad stamp: …` at its token. */
export function stampAddress(plugin: string, token: Token, address: string, defaultPort: number): { host: string; port: number } {
  return atToken(plugin, token, () => splitAddress(address, defaultPort));
}

function atToken<T>(plugin: string, token: Token, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof StampError) throw configError(plugin, token, `bad stamp: ${err.message}`);
    throw err;
  }
}
