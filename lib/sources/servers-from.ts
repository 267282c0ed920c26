/**
 * `servers_from LIST { names…  disabled…  require nolog|nofilter|dnssec…  allow logging|filtering…
 * ipv4  ipv6 }`: every server of a resolver list that passes the filter becomes an upstream of
 * the block, and the set follows the list: entries that appear are added, entries that go (or
 * stop passing) are removed. Each is a ListedUpstream, so a changed stamp rebuilds it. Servers
 * that say they keep logs or filter answers are left out unless `allow` lets them in (the
 * defaults of dnscrypt-proxy, whose lists these are). Shared by dnscrypt, dot and doh.
 */
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, expectNoBlock, flag, readOptions } from '../../core/config/options.js';
import type { Logger } from '../../core/logger.js';
import type { Plugin } from '../../core/plugin.js';
import type { Upstream, UpstreamSet } from '../../core/upstream/upstream.js';
import type { Stamp } from '../stamps.js';
import type { SourceCatalog } from './catalog.js';
import { DEFAULT_FILTER, selectServers, type ServerFilter } from './selection.js';

export interface ServersFromOptions {
  list: string;
  filter: ServerFilter;
  token: Token;
}

/** What each word of `allow` stops requiring. */
const ALLOW: Record<string, 'nolog' | 'nofilter' | undefined> = { logging: 'nolog', filtering: 'nofilter' };

/** Parses one `servers_from` line and its block, for the plugin named `plugin`. */
export function parseServersFrom(plugin: string, line: Directive): ServersFromOptions {
  const [list] = expectArgs(plugin, line, 1) as [Token];
  const filter: ServerFilter = { ...DEFAULT_FILTER, require: { ...DEFAULT_FILTER.require }, disabled: [] };
  let families: { ipv4: boolean; ipv6: boolean } | null = null;
  const required = new Set<string>();
  const allowed = new Map<string, Token>();
  readOptions(
    plugin,
    line.block,
    {
      names: (d) => {
        expectNoBlock(plugin, d);
        filter.names = [...(filter.names ?? []), ...expectArgs(plugin, d, 1, Infinity).map((t) => t.text)];
      },
      disabled: (d) => {
        expectNoBlock(plugin, d);
        filter.disabled.push(...expectArgs(plugin, d, 1, Infinity).map((t) => t.text));
      },
      require: (d) => {
        expectNoBlock(plugin, d);
        for (const t of expectArgs(plugin, d, 1, 3)) {
          if (t.text !== 'nolog' && t.text !== 'nofilter' && t.text !== 'dnssec') throw configError(plugin, t, `require takes nolog, nofilter and dnssec, not "${t.text}"`);
          required.add(t.text);
          filter.require[t.text] = true;
        }
      },
      allow: (d) => {
        expectNoBlock(plugin, d);
        for (const t of expectArgs(plugin, d, 1, 2)) {
          const relaxes = Object.hasOwn(ALLOW, t.text) ? ALLOW[t.text] : undefined;
          if (!relaxes) throw configError(plugin, t, `allow takes logging and filtering (servers that keep logs, servers that filter answers), not "${t.text}"`);
          allowed.set(relaxes, t);
          filter.require[relaxes] = false;
        }
      },
      ipv4: (d) => ((families ??= { ipv4: false, ipv6: false }).ipv4 = flag(plugin, d)),
      ipv6: (d) => ((families ??= { ipv4: false, ipv6: false }).ipv6 = flag(plugin, d)),
    },
    ['names', 'disabled'],
  );
  for (const [name, token] of allowed) {
    if (required.has(name)) throw configError(plugin, token, `"allow ${token.text}" contradicts "require ${name}"`);
  }
  if (families) Object.assign(filter, families);
  return { list: list.text, filter, token: list };
}

export class ServersFrom<P extends Stamp['protocol']> {
  private readonly added = new Map<string, Upstream>();
  private unsubscribe: (() => void) | null = null;
  private said = '';

  constructor(
    private readonly options: ServersFromOptions,
    private readonly protocol: P,
    private readonly catalog: SourceCatalog,
    private readonly upstreams: UpstreamSet,
    private readonly zone: string,
    /** Makes the upstream for a selected name (a ListedUpstream). */
    private readonly upstreamFor: (name: string) => Upstream,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    this.unsubscribe = this.catalog.onChange(() => void this.update());
    await this.update();
  }

  /** Follows the list no more. The upstreams it added stay in the block, which closes them with the rest. */
  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  private async update(): Promise<void> {
    const list = this.catalog.list(this.options.list);
    if (!list || list.state === 'unavailable') {
      this.say(list ? `list ${list.name} is not usable (${list.error ?? 'not verified'}): no server from it` : `no list named "${this.options.list}" in this block's sources`);
      return;
    }
    const selected = selectServers(list.entries, this.protocol, this.options.filter).map((s) => s.name);
    for (const name of [...this.added.keys()]) if (!selected.includes(name)) this.drop(name);
    for (const name of selected) {
      if (this.added.has(name) || this.upstreams.has(name)) continue;
      const upstream = this.upstreamFor(name);
      this.upstreams.add(upstream, this.zone);
      this.added.set(name, upstream);
      await upstream.start?.();
    }
    this.say(`${selected.length} server(s) from list ${list.name}: ${selected.join(', ') || 'none passes the filter'}`);
  }

  /** Takes a server the list no longer gives out of the block; queries already sent to it finish. */
  private drop(name: string): void {
    const upstream = this.added.get(name);
    this.added.delete(name);
    this.upstreams.remove(name);
    void upstream?.close?.();
  }

  private say(message: string): void {
    if (message === this.said) return;
    this.said = message;
    this.logger.info(`servers_from ${this.options.list}: ${message}`);
  }
}

/** The plugin object of a protocol plugin with `servers_from` lines: it starts them after the lists load. */
export function withServersFrom(name: string, managers: ReadonlyArray<ServersFrom<Stamp['protocol']>>): Plugin {
  return {
    name,
    // `sources` starts first (the plugin requires its catalog, so it is set up after it): its
    // lists are loaded (or their cached copies read) by now.
    async start() {
      for (const manager of managers) await manager.start();
    },
    stop() {
      for (const manager of managers) manager.stop();
    },
  };
}
