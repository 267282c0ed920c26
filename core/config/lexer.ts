/**
 * The Corefile lexer, CoreDNS/Caddy style: whitespace separates tokens, a newline ends a
 * directive, `#` at the start of a token comments out the rest of the line, double quotes group
 * (with `\"` and `\\` escapes) and may span lines, and `{$NAME}` / `{$NAME:default}` are
 * replaced by environment variables.
 */
import { ConfigError, type Location } from '../errors.js';

export interface Token extends Location {
  text: string;
  /** A quoted token is never a brace, a comment or a snippet name. */
  quoted: boolean;
  /** The line the token ends on (differs from `line` for quoted tokens spanning lines). */
  endLine: number;
}

export type Environment = Readonly<Record<string, string | undefined>>;

const ENV_REFERENCE = /\{\$([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}/g;

export function tokenize(text: string, file: string, env: Environment = process.env): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let column = 1;
  let i = 0;
  const n = text.length;

  const advance = (ch: string): void => {
    i++;
    if (ch === '\n') {
      line++;
      column = 1;
    } else {
      column++;
    }
  };

  while (i < n) {
    const ch = text[i]!;
    if (ch === ' ' || ch === '\t' || ch === '\r' || ch === '\n' || ch === '\ufeff') {
      advance(ch);
      continue;
    }
    if (ch === '#') {
      while (i < n && text[i] !== '\n') advance(text[i]!);
      continue;
    }
    const start: Location = { file, line, column };
    let value = '';
    let quoted = false;
    if (ch === '"') {
      quoted = true;
      advance(ch);
      let closed = false;
      while (i < n) {
        const c = text[i]!;
        if (c === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) {
          value += text[i + 1];
          advance(c);
          advance(text[i]!);
          continue;
        }
        if (c === '"') {
          advance(c);
          closed = true;
          break;
        }
        value += c;
        advance(c);
      }
      if (!closed) throw new ConfigError(start, 'unterminated quoted string');
    } else {
      while (i < n) {
        const c = text[i]!;
        if (c === ' ' || c === '\t' || c === '\r' || c === '\n') break;
        // `{$VAR}` contains a brace but is part of the word; a lone `{` or `}` is its own token
        value += c;
        advance(c);
      }
    }
    tokens.push({ ...start, text: substituteEnv(value, start, env), quoted, endLine: line });
  }
  return tokens;
}

export function substituteEnv(text: string, at: Location, env: Environment): string {
  if (!text.includes('{$')) return text;
  return text.replace(ENV_REFERENCE, (_whole, name: string, fallback: string | undefined) => {
    const value = env[name];
    if (value !== undefined && value !== '') return value;
    if (fallback !== undefined) return fallback;
    throw new ConfigError(at, `environment variable ${name} is not set (write {$${name}:default} to give a default)`);
  });
}
