/** A DNS stamp written in a Corefile: parsed, or a configuration error at its token naming the field. */
import type { Token } from '../core/config/ast.js';
import { configError } from '../core/config/options.js';
import { parseStamp, StampError, type Stamp } from './stamps.js';

export function parseStampToken(plugin: string, token: Token): Stamp {
  try {
    return parseStamp(token.text);
  } catch (err) {
    if (err instanceof StampError) throw configError(plugin, token, `bad stamp: ${err.message}`);
    throw err;
  }
}
