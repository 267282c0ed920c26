/**
 * How the protocol plugins that take servers from the resolver lists (dot, doh, odoh, dnscrypt)
 * turn their server lines into upstreams of the block, written once:
 *
 * - a line with its address or stamp becomes its upstream at once;
 * - `server NAME` alone becomes a ListedUpstream, built when the lists bring NAME's stamp;
 * - `servers_from LIST` adds every server of the list that passes its filter, and follows it.
 *
 * Such a plugin requires the `sources` catalog for the options that name servers from the lists
 * (`listedTokens` says which); the catalog is there whenever one of them is used.
 */
import type { Token } from '../../core/config/ast.js';
import type { BlockScope, Plugin } from '../../core/plugin.js';
import type { Upstream } from '../../core/upstream/upstream.js';
import type { Stamp } from '../stamps.js';
import { SourcesService, type SourceCatalog } from './catalog.js';
import { ListedUpstream } from './listed-upstream.js';
import { ServersFrom, withServersFrom, type ServersFromOptions } from './servers-from.js';

/** A server line: its name, the zone it serves, and whether the lists give its stamp. */
export interface ServerLine {
  name: string;
  zone: string;
  /** `server NAME` without an address or stamp. */
  listed: boolean;
  /** For messages: what named the server. */
  token: Token;
}

/** A `servers_from` line, with the zone of its directive. */
export type ServersFromLine = ServersFromOptions & { zone: string };

export interface ServerLines<S extends ServerLine, F extends ServersFromLine, P extends Stamp['protocol']> {
  /** The plugin's name: its plugin object starts and stops the `servers_from` lines. */
  plugin: string;
  /** The upstreams' protocol (`dot`, `doh`, `odoh`, `dnscrypt`). */
  protocol: string;
  /** The kind of stamp the lists give for them (`odohTarget` for odoh). */
  stampProtocol: P;
  servers: readonly S[];
  serversFrom: readonly F[];
  /** The upstream of a line written with its address or stamp. */
  upstream(server: Exclude<S, { listed: true }>): Upstream;
  /** The upstream of a listed server, from the stamp the list gives (throws when it cannot use it). */
  fromStamp(server: S, stamp: Extract<Stamp, { protocol: P }>): Upstream;
  /** The server line a name that `from` selects stands for (the defaults of every option). */
  serverNamed(name: string, from: F): S;
}

/**
 * Adds the upstreams of `lines` to the block; returns the plugin object that starts their
 * `servers_from` lines once the lists have loaded.
 */
export function addServerLines<S extends ServerLine, F extends ServersFromLine, P extends Stamp['protocol']>(scope: BlockScope, lines: ServerLines<S, F, P>): Plugin {
  const found = scope.service(SourcesService);
  const catalog = (): SourceCatalog => {
    // The plugin requires the catalog for these lines (listedTokens): the block has one.
    if (!found) throw new Error(`${lines.plugin}: servers from the resolver lists, and this block has no sources`);
    return found;
  };
  const listed = (server: S) => new ListedUpstream(server.name, lines.protocol, lines.stampProtocol, catalog(), (stamp) => lines.fromStamp(server, stamp), scope.logger);
  for (const server of lines.servers) {
    scope.upstreams.add(server.listed ? listed(server) : lines.upstream(server as Exclude<S, { listed: true }>), server.zone);
  }
  const managers = lines.serversFrom.map(
    (from) => new ServersFrom(from, lines.stampProtocol, catalog(), scope.upstreams, from.zone, (name) => listed(lines.serverNamed(name, from)), scope.logger),
  );
  return withServersFrom(lines.plugin, managers);
}

/** The tokens of the lines that need the resolver lists: for the plugin's `requires`. */
export function listedTokens(servers: ReadonlyArray<Pick<ServerLine, 'listed' | 'token'>>, serversFrom: readonly ServersFromOptions[]): Token[] {
  return [...servers.filter((s) => s.listed).map((s) => s.token), ...serversFrom.map((f) => f.token)];
}
