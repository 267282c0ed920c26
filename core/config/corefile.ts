/**
 * The Corefile parser: tokens → server blocks of directives, with CoreDNS's snippets
 * (`(name) { … }` and `import name [args…]`, `{args[N]}` inside the snippet) and file imports
 * (`import FILE|GLOB`, relative to the importing file, usable at the top level and inside blocks).
 */
import { globSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, type Location } from '../errors.js';
import type { ConfigFile, Directive, ServerBlockConfig } from './ast.js';
import { tokenize, type Environment, type Token } from './lexer.js';

/** A line of tokens, with the block that follows it if the line ended in `{`. */
interface Node {
  tokens: Token[];
  block: Node[] | null;
  blockStart: Location | null;
}

const MAX_IMPORT_DEPTH = 16;
const SNIPPET_NAME = /^\(([^()\s]+)\)$/;
const SNIPPET_ARG = /\{args\[(\d+)\]\}/g;

export interface ParseOptions {
  env?: Environment;
  /** How a file name is shown in messages; default: relative to the working directory. */
  displayName?: (absolutePath: string) => string;
}

/** Reads and parses a Corefile from disk. */
export function parseCorefile(file: string, options: ParseOptions = {}): ConfigFile {
  const parser = new CorefileParser(options);
  const absolute = path.resolve(file);
  const blocks = parser.parseTopLevelFile(absolute, null);
  return { file, global: parser.global, blocks };
}

/** Parses Corefile text; `file` names it in messages and anchors relative imports. */
export function parseCorefileText(text: string, file: string, options: ParseOptions = {}): ConfigFile {
  const parser = new CorefileParser(options);
  const blocks = parser.parseTopLevelText(text, path.resolve(file));
  return { file, global: parser.global, blocks };
}

class CorefileParser {
  /** The global options block, when the main file starts with one. */
  global: Directive[] = [];
  private readonly snippets = new Map<string, Node[]>();
  private readonly importStack: string[] = [];
  private readonly env: Environment;
  private readonly display: (absolutePath: string) => string;

  constructor(options: ParseOptions) {
    this.env = options.env ?? process.env;
    this.display =
      options.displayName ??
      ((absolute) => {
        const relative = path.relative(process.cwd(), absolute);
        return relative.startsWith('..') || path.isAbsolute(relative) ? absolute : relative;
      });
  }

  parseTopLevelFile(absolute: string, from: Location | null): ServerBlockConfig[] {
    return this.parseTopLevelText(this.readFile(absolute, from), absolute, from);
  }

  parseTopLevelText(text: string, absolute: string, from: Location | null = null): ServerBlockConfig[] {
    this.enter(absolute, from);
    try {
      const nodes = this.nodesOf(text, absolute);
      const blocks: ServerBlockConfig[] = [];
      for (const node of nodes) blocks.push(...this.topLevel(node, absolute));
      return blocks;
    } finally {
      this.importStack.pop();
    }
  }

  private readFile(absolute: string, from: Location | null): string {
    try {
      return readFileSync(absolute, 'utf8');
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
      throw new ConfigError(from, `cannot read ${this.display(absolute)}: ${reason}`);
    }
  }

  private enter(key: string, at: Location | null): void {
    if (this.importStack.includes(key)) {
      throw new ConfigError(at, `import cycle: ${[...this.importStack, key].map((k) => this.display(k)).join(' → ')}`);
    }
    if (this.importStack.length >= MAX_IMPORT_DEPTH) {
      throw new ConfigError(at, `imports nested more than ${MAX_IMPORT_DEPTH} deep`);
    }
    this.importStack.push(key);
  }

  private nodesOf(text: string, absolute: string): Node[] {
    const tokens = tokenize(text, this.display(absolute), this.env);
    const cursor = { index: 0 };
    const first = tokens[0];
    if (first && !first.quoted && first.text === '{' && this.importStack.length === 1) {
      // Caddy's global options block: `{ … }` with no keys, first in the main file.
      cursor.index = 1;
      this.global = this.directives(groupLines(tokens, cursor, first), absolute);
    }
    return groupLines(tokens, cursor, null);
  }

  /** A top-level line: a server block, a snippet definition or an import. */
  private topLevel(node: Node, absolute: string): ServerBlockConfig[] {
    const first = node.tokens[0]!;
    if (!first.quoted && first.text === 'import' && !node.block) {
      return this.importAtTopLevel(node, absolute);
    }
    const snippet = !first.quoted ? SNIPPET_NAME.exec(first.text) : null;
    if (snippet) {
      if (!node.block) throw new ConfigError(first, `snippet ${first.text} needs a block: ${first.text} { … }`);
      if (node.tokens.length > 1) throw new ConfigError(node.tokens[1]!, `unexpected "${node.tokens[1]!.text}" after snippet name`);
      const name = snippet[1]!;
      if (this.snippets.has(name)) throw new ConfigError(first, `snippet "${name}" is defined twice`);
      this.snippets.set(name, node.block);
      return [];
    }
    if (!node.block) {
      throw new ConfigError(first, `expected a server block: "${node.tokens.map((t) => t.text).join(' ')} {" — a "{" must end the line of keys`);
    }
    const keys = node.tokens
      .map((t) => ({ ...t, text: t.text.replace(/,$/, '') }))
      .filter((t) => t.text !== '');
    if (keys.length === 0) throw new ConfigError(first, 'server block without keys');
    return [{ keys, directives: this.directives(node.block, absolute), location: { file: first.file, line: first.line, column: first.column } }];
  }

  private importAtTopLevel(node: Node, absolute: string): ServerBlockConfig[] {
    const [keyword, pattern, ...args] = node.tokens;
    if (!pattern) throw new ConfigError(keyword!, 'import needs a snippet name or a file pattern');
    if (this.snippets.has(pattern.text)) {
      throw new ConfigError(pattern, `snippet "${pattern.text}" can only be imported inside a server block`);
    }
    if (args.length > 0) throw new ConfigError(args[0]!, 'arguments are only passed to snippets');
    const blocks: ServerBlockConfig[] = [];
    for (const file of this.matchFiles(pattern, absolute)) blocks.push(...this.parseTopLevelFile(file, pattern));
    return blocks;
  }

  /** Turns the lines of a block into directives, expanding imports in place. */
  private directives(nodes: Node[], absolute: string): Directive[] {
    const out: Directive[] = [];
    for (const node of nodes) {
      const name = node.tokens[0]!;
      if (!name.quoted && name.text === 'import') {
        out.push(...this.importInBlock(node, absolute));
        continue;
      }
      out.push({
        name,
        args: node.tokens.slice(1),
        block: node.block ? this.directives(node.block, absolute) : null,
        blockStart: node.blockStart,
      });
    }
    return out;
  }

  private importInBlock(node: Node, absolute: string): Directive[] {
    const [keyword, pattern, ...args] = node.tokens;
    if (!pattern) throw new ConfigError(keyword!, 'import needs a snippet name or a file pattern');
    if (node.block) throw new ConfigError(node.blockStart!, 'import takes no block');
    const snippet = this.snippets.get(pattern.text);
    if (snippet) {
      this.enter(`(${pattern.text})`, pattern);
      try {
        return this.directives(substituteArgs(snippet, args, pattern), absolute);
      } finally {
        this.importStack.pop();
      }
    }
    if (args.length > 0) throw new ConfigError(args[0]!, `arguments are only passed to snippets, and no snippet "${pattern.text}" is defined above`);
    const out: Directive[] = [];
    for (const file of this.matchFiles(pattern, absolute)) {
      this.enter(file, pattern);
      try {
        out.push(...this.directives(this.nodesOf(this.readFile(file, pattern), file), file));
      } finally {
        this.importStack.pop();
      }
    }
    return out;
  }

  /** Files named by an import: a glob matching nothing is fine, a missing plain file is not. */
  private matchFiles(pattern: Token, importingFile: string): string[] {
    const base = path.dirname(importingFile);
    const full = path.resolve(base, pattern.text);
    if (!/[*?[]/.test(pattern.text)) {
      try {
        readFileSync(full);
      } catch {
        throw new ConfigError(pattern, `import: no snippet named "${pattern.text}" and no file ${this.display(full)}`);
      }
      return [full];
    }
    return globSync(pattern.text, { cwd: base })
      .map((match) => path.resolve(base, match))
      .sort();
  }
}

/**
 * Groups tokens into lines and nested blocks. A line is the run of tokens on one source line;
 * an unquoted `{` ends the line and opens a block, an unquoted `}` closes the current block.
 */
function groupLines(tokens: Token[], cursor: { index: number }, opener: Token | null): Node[] {
  const nodes: Node[] = [];
  for (;;) {
    const first = tokens[cursor.index];
    if (!first) {
      if (opener) throw new ConfigError(opener, `missing "}" for the block opened here`);
      return nodes;
    }
    if (!first.quoted && first.text === '}') {
      if (!opener) throw new ConfigError(first, 'unexpected "}" with no block open');
      cursor.index++;
      return nodes;
    }
    if (!first.quoted && first.text === '{') {
      throw new ConfigError(first, '"{" must be on the same line as the directive or keys it belongs to');
    }
    const line: Token[] = [first];
    cursor.index++;
    let block: Node[] | null = null;
    let blockStart: Location | null = null;
    for (;;) {
      const next = tokens[cursor.index];
      if (!next || next.line !== line[line.length - 1]!.endLine || next.file !== first.file) break;
      if (!next.quoted && next.text === '}') break;
      cursor.index++;
      if (!next.quoted && next.text === '{') {
        blockStart = { file: next.file, line: next.line, column: next.column };
        block = groupLines(tokens, cursor, next);
        break;
      }
      line.push(next);
    }
    nodes.push({ tokens: line, block, blockStart });
  }
}

/** Replaces `{args[N]}` in a snippet's tokens with the import's arguments. */
function substituteArgs(nodes: Node[], args: Token[], at: Token): Node[] {
  const replace = (token: Token): Token => {
    if (!token.text.includes('{args[')) return token;
    const text = token.text.replace(SNIPPET_ARG, (_m, index: string) => {
      const arg = args[Number(index)];
      if (!arg) throw new ConfigError(at, `snippet uses {args[${index}]} but the import passes ${args.length} argument(s)`);
      return arg.text;
    });
    return { ...token, text };
  };
  return nodes.map((node) => ({
    tokens: node.tokens.map(replace),
    block: node.block ? substituteArgs(node.block, args, at) : null,
    blockStart: node.blockStart,
  }));
}
