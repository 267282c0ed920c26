/**
 * Choosing servers from a resolver list the way dnscrypt-proxy does: `names` (its
 * server_names) takes exactly those entries and overrides the filters; otherwise every entry with
 * a stamp of the wanted protocol that meets the requirements (no logs and no filter unless
 * allowed, as dnscrypt-proxy's require_nolog and require_nofilter default to true; DNSSEC when
 * asked) and the address families asked for (IPv4 only by default, like
 * ipv4_servers/ipv6_servers); `disabled` (disabled_server_names) always removes.
 */
import type { Stamp } from '../stamps.js';
import type { ListEntry } from './list.js';

export interface ServerFilter {
  /** Only these names (in this order), when given. */
  names: string[] | null;
  disabled: string[];
  require: { nolog: boolean; nofilter: boolean; dnssec: boolean };
  ipv4: boolean;
  ipv6: boolean;
}

export const DEFAULT_FILTER: ServerFilter = { names: null, disabled: [], require: { nolog: true, nofilter: true, dnssec: false }, ipv4: true, ipv6: false };

export interface Selected<S extends Stamp> {
  name: string;
  stamp: S;
  stampText: string;
}

/** The first stamp of `protocol` in the entry, with its text; null when it has none. */
export function stampOf<P extends Stamp['protocol']>(entry: ListEntry, protocol: P): Selected<Extract<Stamp, { protocol: P }>> | null {
  const index = entry.stamps.findIndex((s) => s.protocol === protocol);
  if (index < 0) return null;
  return { name: entry.name, stamp: entry.stamps[index] as Extract<Stamp, { protocol: P }>, stampText: entry.stampTexts[index]! };
}

function family(stamp: Stamp): 4 | 6 | null {
  if (!('address' in stamp) || stamp.address === '') return null;
  return stamp.address.startsWith('[') ? 6 : 4;
}

export function selectServers<P extends Stamp['protocol']>(entries: readonly ListEntry[], protocol: P, filter: ServerFilter): Array<Selected<Extract<Stamp, { protocol: P }>>> {
  const disabled = new Set(filter.disabled);
  if (filter.names) {
    const byName = new Map(entries.map((e) => [e.name, e]));
    return filter.names.flatMap((name) => {
      const entry = byName.get(name);
      const selected = entry && !disabled.has(name) ? stampOf(entry, protocol) : null;
      return selected ? [selected] : [];
    });
  }
  const chosen: Array<Selected<Extract<Stamp, { protocol: P }>>> = [];
  for (const entry of entries) {
    if (disabled.has(entry.name)) continue;
    const selected = stampOf(entry, protocol);
    if (!selected) continue;
    const props = 'props' in selected.stamp ? selected.stamp.props : null;
    if (filter.require.nolog && !props?.noLogs) continue;
    if (filter.require.nofilter && !props?.noFilter) continue;
    if (filter.require.dnssec && !props?.dnssec) continue;
    const f = family(selected.stamp);
    if ((f === 4 && !filter.ipv4) || (f === 6 && !filter.ipv6)) continue;
    chosen.push(selected);
  }
  return chosen;
}
