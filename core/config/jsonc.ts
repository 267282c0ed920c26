/**
 * The JSONC form of the configuration. Same meaning as a Corefile, one-to-one:
 *
 * ```jsonc
 * {
 *   "global": [["workers", 2]],                         // the Corefile's `{ workers 2 }`
 *   "servers": [
 *     {
 *       "zones": ["."],                                   // the server block keys
 *       "directives": [
 *         ["listen", "udp://127.0.0.1:5353"],             // name, then arguments
 *         ["forward", [["server", "origin", "udp://127.0.0.1:5300"]]]   // a trailing array of
 *       ]                                                 // arrays is the directive's block
 *     }
 *   ]
 * }
 * ```
 *
 * Numbers and booleans are taken as their text. `{$ENV}` works inside strings. Every error
 * points at the JSON value it is about, as `file:line:col`.
 */
import { readFileSync } from 'node:fs';
import jsoncParser, { type Node as JsonNode, type ParseError } from 'jsonc-parser';
import { ConfigError, type Location } from '../errors.js';
import type { ConfigFile, Directive, ServerBlockConfig } from './ast.js';
import { substituteEnv, type Environment, type Token } from './lexer.js';

const { parseTree, printParseErrorCode } = jsoncParser;

export function parseJsoncConfig(file: string, env: Environment = process.env): ConfigFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(null, `cannot read ${file}: ${(err as Error).message}`);
  }
  return parseJsoncText(text, file, env);
}

export function parseJsoncText(text: string, file: string, env: Environment = process.env): ConfigFile {
  const lines = lineStarts(text);
  const at = (node: { offset: number }): Location => locate(file, lines, node.offset);
  const errors: ParseError[] = [];
  const root = parseTree(text, errors, { allowTrailingComma: true, disallowComments: false });
  if (errors.length > 0) {
    const first = errors[0]!;
    throw new ConfigError(locate(file, lines, first.offset), `invalid JSONC: ${describe(printParseErrorCode(first.error))}`);
  }
  if (!root || root.type !== 'object') throw new ConfigError(root ? at(root) : { file, line: 1, column: 1 }, 'the configuration must be a JSON object with a "servers" array');

  const token = (node: JsonNode): Token => {
    if (node.type !== 'string' && node.type !== 'number' && node.type !== 'boolean') {
      throw new ConfigError(at(node), `expected a string, found ${node.type}`);
    }
    const location = at(node);
    const raw = String(node.value);
    return { ...location, text: substituteEnv(raw, location, env), quoted: node.type === 'string', endLine: location.line };
  };

  const directive = (node: JsonNode): Directive => {
    if (node.type !== 'array' || !node.children?.length) {
      throw new ConfigError(at(node), 'a directive is an array: ["name", "arg", …] with an optional block [[…], …] last');
    }
    const items = node.children;
    const last = items[items.length - 1]!;
    const hasBlock = items.length > 1 && last.type === 'array';
    const name = token(items[0]!);
    const args = items.slice(1, hasBlock ? -1 : undefined).map(token);
    return {
      name,
      args,
      block: hasBlock ? (last.children ?? []).map(directive) : null,
      blockStart: hasBlock ? at(last) : null,
    };
  };

  const properties = objectProperties(root, at);
  for (const key of properties.keys()) {
    if (key !== 'servers' && key !== 'global') throw new ConfigError(at(properties.get(key)!.key), `unknown key "${key}" (expected "servers" or "global")`);
  }
  const globalNode = properties.get('global')?.value;
  if (globalNode && globalNode.type !== 'array') throw new ConfigError(at(globalNode), '"global" must be an array of directives');
  const global = (globalNode?.children ?? []).map(directive);
  const servers = properties.get('servers')?.value;
  if (!servers || servers.type !== 'array') throw new ConfigError(at(servers ?? root), '"servers" must be an array of server blocks');

  const blocks: ServerBlockConfig[] = (servers.children ?? []).map((server) => {
    if (server.type !== 'object') throw new ConfigError(at(server), 'a server block is an object with "zones" and "directives"');
    const fields = objectProperties(server, at);
    for (const key of fields.keys()) {
      if (key !== 'zones' && key !== 'directives') {
        throw new ConfigError(at(fields.get(key)!.key), `unknown key "${key}" in a server block (expected "zones" and "directives")`);
      }
    }
    const zones = fields.get('zones')?.value;
    if (!zones || zones.type !== 'array' || !zones.children?.length) {
      throw new ConfigError(at(zones ?? server), '"zones" must be a non-empty array, e.g. ["."]');
    }
    const directives = fields.get('directives')?.value;
    if (directives && directives.type !== 'array') throw new ConfigError(at(directives), '"directives" must be an array');
    return {
      keys: zones.children.map(token),
      directives: (directives?.children ?? []).map(directive),
      location: at(server),
    };
  });
  return { file, global, blocks };
}

function objectProperties(node: JsonNode, at: (n: JsonNode) => Location): Map<string, { key: JsonNode; value: JsonNode }> {
  const out = new Map<string, { key: JsonNode; value: JsonNode }>();
  for (const property of node.children ?? []) {
    const [key, value] = property.children ?? [];
    if (!key || !value) continue;
    if (out.has(String(key.value))) throw new ConfigError(at(key), `key "${key.value}" is given twice`);
    out.set(String(key.value), { key, value });
  }
  return out;
}

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1);
  return starts;
}

function locate(file: string, starts: number[], offset: number): Location {
  let low = 0;
  let high = starts.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if (starts[mid]! <= offset) low = mid;
    else high = mid - 1;
  }
  return { file, line: low + 1, column: offset - starts[low]! + 1 };
}

function describe(code: string): string {
  return code.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
}
