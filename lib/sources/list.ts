/**
 * Resolver and relay lists in the public-resolvers.md / relays.md format: the text before the
 * first `## ` is a preamble; each `## name` starts an entry whose `sdns://` lines are its
 * stamps and whose other lines (but `//` comments) describe it.
 */
import { parseStamp, StampError, type Stamp } from '../stamps.js';

export interface ListEntry {
  /** The entry's name, with the list's prefix. */
  name: string;
  description: string;
  /** Every stamp that parsed, in list order. */
  stamps: Stamp[];
  /** The stamps as written, parallel to `stamps`. */
  stampTexts: string[];
  /** Stamps that did not parse, with why (kept for `veil sources list`). */
  rejected: Array<{ stamp: string; reason: string }>;
}

export function parseList(text: string, prefix = ''): ListEntry[] {
  const entries: ListEntry[] = [];
  const seen = new Set<string>();
  const parts = text.split(/^## /m).slice(1);
  for (const part of parts) {
    const lines = part.split(/\r?\n/);
    const name = prefix + lines[0]!.trim();
    if (!name || seen.has(name)) continue; // the first of two same-named entries wins
    seen.add(name);
    const entry: ListEntry = { name, description: '', stamps: [], stampTexts: [], rejected: [] };
    const description: string[] = [];
    for (const raw of lines.slice(1)) {
      const line = raw.trim();
      if (line === '' || line.startsWith('//')) continue;
      if (line.startsWith('sdns:')) {
        try {
          entry.stamps.push(parseStamp(line));
          entry.stampTexts.push(line);
        } catch (err) {
          if (!(err instanceof StampError)) throw err;
          entry.rejected.push({ stamp: line, reason: err.message });
        }
      } else {
        description.push(line);
      }
    }
    entry.description = description.join('\n');
    entries.push(entry);
  }
  return entries;
}
