/**
 * Helpers every plugin's parse step uses, so that all directives check arguments and report
 * mistakes the same way: `Corefile:12:5: dot: unknown option "pool_size" (did you mean "pool"?)`.
 */
import net from 'node:net';
import { ConfigError, type Location } from '../errors.js';
import type { Directive, Token } from './ast.js';

export function configError(plugin: string, at: Location | null, message: string): ConfigError {
  return new ConfigError(at, message, plugin);
}

/**
 * Upstream names identify upstreams in logs, metrics and routes: one per name in a block. The
 * error stands at the second one's name (`nameToken`), or where the server was written.
 */
export function expectUniqueNames(plugin: string, servers: ReadonlyArray<{ name: string; token: Location; nameToken?: Location }>): void {
  const names = new Set<string>();
  for (const server of servers) {
    if (names.has(server.name)) throw configError(plugin, server.nameToken ?? server.token, `two upstreams are named "${server.name}"; names must be unique in a server block`);
    names.add(server.name);
  }
}

/** Checks the number of arguments; the error points at the first surplus argument or the name. */
export function expectArgs(plugin: string, d: Directive, min: number, max: number = min): Token[] {
  const count = d.args.length;
  if (count >= min && count <= max) return d.args;
  const wanted =
    min === max ? `${min} argument${min === 1 ? '' : 's'}` : max === Infinity ? `at least ${min} argument${min === 1 ? '' : 's'}` : `${min} to ${max} arguments`;
  const at = count > max ? d.args[max]! : d.name;
  throw configError(plugin, at, `${d.name.text} takes ${wanted}, got ${count}`);
}

export function expectNoBlock(plugin: string, d: Directive): void {
  if (d.block) throw configError(plugin, d.blockStart, `${d.name.text} takes no block`);
}

const DURATION_PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)/y;
const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Go-style durations (`500ms`, `2s`, `1m30s`, `72h`), returned in milliseconds. */
export function parseDuration(plugin: string, token: Token, options: { min?: number; max?: number } = {}): number {
  const text = token.text;
  let ms = 0;
  let pos = 0;
  DURATION_PART.lastIndex = 0;
  while (pos < text.length) {
    DURATION_PART.lastIndex = pos;
    const m = DURATION_PART.exec(text);
    if (!m) break;
    ms += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = DURATION_PART.lastIndex;
  }
  if (text.length === 0 || pos !== text.length) {
    throw configError(plugin, token, `"${text}" is not a duration (examples: 500ms, 2s, 1m30s, 4h)`);
  }
  if (options.min !== undefined && ms < options.min) throw configError(plugin, token, `${text} is below the minimum of ${formatDuration(options.min)}`);
  if (options.max !== undefined && ms > options.max) throw configError(plugin, token, `${text} is above the maximum of ${formatDuration(options.max)}`);
  return ms;
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0 && ms > 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

export function parseInteger(plugin: string, token: Token, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
  if (!/^-?\d+$/.test(token.text)) throw configError(plugin, token, `"${token.text}" is not a whole number`);
  const value = Number(token.text);
  if (value < min || value > max) {
    throw configError(plugin, token, `${value} is out of range (${min}${max === Number.MAX_SAFE_INTEGER ? ' or more' : `-${max}`})`);
  }
  return value;
}

export interface OptionSpec {
  [option: string]: (d: Directive) => void;
}

/**
 * Dispatches each line of an options block to its handler. Unknown names get a did-you-mean,
 * an option given twice is an error unless it is listed in `repeatable`, and a block after an
 * option whose handler never looked at it is an error rather than silently dropped.
 */
export function readOptions(plugin: string, block: Directive[] | null, spec: OptionSpec, repeatable: readonly string[] = []): void {
  const seen = new Set<string>();
  for (const d of block ?? []) {
    const name = d.name.text;
    const handler = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (!handler) throw configError(plugin, d.name, `unknown option "${name}"${didYouMean(name, Object.keys(spec))}`);
    if (seen.has(name) && !repeatable.includes(name)) throw configError(plugin, d.name, `option "${name}" is given twice`);
    seen.add(name);
    let blockRead = false;
    const watched: Directive = {
      ...d,
      get block() {
        blockRead = true;
        return d.block;
      },
    };
    handler(watched);
    if (d.block && !blockRead) expectNoBlock(plugin, d);
  }
}

/** ` (did you mean "pool"?)` when a known word is close, else the empty string. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(word, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const close = best !== null && (bestDistance <= Math.max(2, Math.floor(word.length / 3)) || best.startsWith(word) || word.startsWith(best));
  return close ? ` (did you mean "${best}"?)` : '';
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** `bootstrap IP…`: the addresses of an upstream's host name (IPv6 with or without brackets; no names, no ports). */
export function parseBootstrap(plugin: string, d: Directive): string[] {
  return expectArgs(plugin, d, 1, Infinity).map((ip) => {
    const bare = ip.text.replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(bare) === 0) throw configError(plugin, ip, `bootstrap takes IP addresses (no names, no ports): "${ip.text}" is not one`);
    return bare;
  });
}

/** A flag option: its name alone on a line. */
export function flag(plugin: string, d: Directive): true {
  expectArgs(plugin, d, 0);
  expectNoBlock(plugin, d);
  return true;
}
