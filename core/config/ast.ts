/** What a configuration file turns into, whichever syntax it was written in. */
import type { Location } from '../errors.js';
import type { Token } from './lexer.js';

export type { Token };

/**
 * One line of configuration: a name, its arguments, and an optional nested block of lines
 * (`server NAME tls://… { server_name … }` is a directive whose block holds one directive).
 */
export interface Directive {
  name: Token;
  args: Token[];
  block: Directive[] | null;
  /** Where the block's `{` stands, for "missing }" and "empty block" messages. */
  blockStart: Location | null;
}

export interface ServerBlockConfig {
  /** The block's keys, e.g. `.` or `dns://example.org:1053`, as written. */
  keys: Token[];
  directives: Directive[];
  location: Location;
}

export interface ConfigFile {
  /** The file the configuration was read from, as given by the user. */
  file: string;
  /** Options of the whole server: the key-less block `{ … }` at the top of a Corefile. */
  global: Directive[];
  blocks: ServerBlockConfig[];
}
