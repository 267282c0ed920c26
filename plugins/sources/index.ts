/**
 * `sources`: signed resolver and relay lists (public-resolvers.md / relays.md), so servers and
 * relays can be named instead of written as stamps.
 *
 *     sources {
 *         list NAME URL|FILE {
 *             minisign_key KEY
 *             cache FILE
 *             refresh DURATION
 *             prefix PREFIX
 *             bootstrap IP…
 *             ca FILE
 *         }
 *     }
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, expectNoBlock, parseDuration, readOptions } from '../../core/config/options.js';
import type { Plugin, PluginDefinition } from '../../core/plugin.js';
import { MinisignError, parsePublicKey, type MinisignPublicKey } from '../../lib/minisign.js';
import { SourceCatalog, SourcesService } from '../../lib/sources/catalog.js';
import { ListSource } from './list-source.js';

const NAME = 'sources';
const DEFAULT_REFRESH_MS = 72 * 3_600_000;

export interface ListOptions {
  name: string;
  /** https:// URL, or null for a local file. */
  url: URL | null;
  /** Absolute path of a local list file. */
  file: string | null;
  key: MinisignPublicKey | null;
  /** Where the last verified copy is kept (the signature beside it, with .minisig). */
  cache: string | null;
  refreshMs: number;
  prefix: string;
  bootstrap: string[];
  ca: Buffer | null;
  token: Token;
}

export const sourcesPlugin: PluginDefinition<ListOptions[]> = {
  name: NAME,
  // The catalog of listed servers and relays, for the plugins that name servers from the lists.
  provides: [SourcesService],

  parse(directives) {
    const lists: ListOptions[] = [];
    for (const d of directives) {
      expectArgs(NAME, d, 0);
      readOptions(NAME, d.block, { list: (line) => lists.push(parseList(line)) }, ['list']);
    }
    if (lists.length === 0) throw configError(NAME, directives[0]!.name, 'no lists: add "list NAME URL|FILE { … }" lines');
    const names = new Set<string>();
    for (const list of lists) {
      if (names.has(list.name)) throw configError(NAME, list.token, `two lists are named "${list.name}"`);
      names.add(list.name);
    }
    return lists;
  },

  create(lists, scope) {
    const catalog = new SourceCatalog();
    scope.provide(SourcesService, catalog);
    return new SourcesPlugin(lists.map((options) => new ListSource(options, catalog, scope.logger, scope.upstreams, scope.clock)));
  },
};

export class SourcesPlugin implements Plugin {
  readonly name = NAME;
  constructor(readonly sources: ListSource[]) {}

  async start(): Promise<void> {
    await Promise.all(this.sources.map((s) => s.start()));
  }

  stop(): void {
    for (const source of this.sources) source.stop();
  }
}

function resolveFile(token: Token, file: string): string {
  return path.resolve(path.dirname(path.resolve(token.file)), file);
}

function parseList(line: Directive): ListOptions {
  const [nameToken, where] = expectArgs(NAME, line, 2);
  const options: ListOptions = {
    name: nameToken!.text,
    url: null,
    file: null,
    key: null,
    cache: null,
    refreshMs: DEFAULT_REFRESH_MS,
    prefix: '',
    bootstrap: [],
    ca: null,
    token: nameToken!,
  };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(where!.text)) {
    let url: URL;
    try {
      url = new URL(where!.text);
    } catch {
      throw configError(NAME, where!, `"${where!.text}" is not a valid URL`);
    }
    if (url.protocol !== 'https:') throw configError(NAME, where!, 'lists are fetched over https:// only');
    options.url = url;
  } else {
    options.file = resolveFile(where!, where!.text);
  }
  readOptions(NAME, line.block, {
    minisign_key: (d) => {
      const [key] = expectArgs(NAME, d, 1);
      try {
        options.key = parsePublicKey(key!.text);
      } catch (err) {
        if (err instanceof MinisignError) throw configError(NAME, key!, err.message);
        throw err;
      }
    },
    cache: (d) => {
      expectNoBlock(NAME, d);
      options.cache = resolveFile(d.args[0] ?? d.name, expectArgs(NAME, d, 1)[0]!.text);
    },
    refresh: (d) => {
      options.refreshMs = parseDuration(NAME, expectArgs(NAME, d, 1)[0]!, { min: 60_000 });
    },
    prefix: (d) => {
      options.prefix = expectArgs(NAME, d, 1)[0]!.text;
    },
    bootstrap: (d) => {
      for (const ip of expectArgs(NAME, d, 1, Infinity)) {
        if (net.isIP(ip.text) === 0) throw configError(NAME, ip, `bootstrap takes IP addresses; "${ip.text}" is not one`);
        options.bootstrap.push(ip.text);
      }
    },
    ca: (d) => {
      const [file] = expectArgs(NAME, d, 1);
      try {
        options.ca = readFileSync(resolveFile(file!, file!.text));
      } catch (err) {
        throw configError(NAME, file!, `cannot read ${file!.text}: ${(err as Error).message}`);
      }
    },
  });
  if (options.url && !options.key) {
    throw configError(NAME, where!, `a list fetched from a URL needs minisign_key: it is used only when its signature verifies`);
  }
  if (options.url && !options.cache) {
    throw configError(NAME, where!, `a list fetched from a URL needs a cache file, so that start-up works offline and a bad download keeps the last good copy`);
  }
  return options;
}
