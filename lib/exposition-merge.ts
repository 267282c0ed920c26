/**
 * Prometheus text expositions of several worker processes merged into one, as if one process
 * had counted everything: the same series from each worker are added up, except where a sum
 * means nothing: quantiles (the largest is kept: the worst worker's lag), `*_info` series, and
 * timestamps (the largest is kept). HELP and TYPE lines come once, families in first-seen order.
 */
const KEEP_LARGEST = /(_info|_timestamp_seconds|_start_time_seconds|_max_fds)$/;

interface Family {
  meta: string[];
  series: Map<string, number>;
}

export function mergeExpositions(texts: readonly string[]): string {
  const families = new Map<string, Family>();
  const familyOf = (name: string): Family => {
    let family = families.get(name);
    if (!family) {
      family = { meta: [], series: new Map() };
      families.set(name, family);
    }
    return family;
  };
  for (const text of texts) {
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const meta = /^# (?:HELP|TYPE) (\S+)/.exec(line);
      if (meta) {
        const family = familyOf(meta[1]!);
        if (family.meta.length < 2 && !family.meta.includes(line)) family.meta.push(line);
        continue;
      }
      if (line.startsWith('#')) continue;
      const space = line.lastIndexOf(' ');
      const key = line.slice(0, space);
      const value = Number(line.slice(space + 1));
      const name = key.replace(/\{.*$/, '');
      // Histogram and summary parts belong to their family's name.
      const family = familyOf(families.has(name) ? name : name.replace(/_(bucket|sum|count)$/, ''));
      const before = family.series.get(key);
      const largest = KEEP_LARGEST.test(name) || key.includes('quantile="');
      family.series.set(key, before === undefined ? value : largest ? Math.max(before, value) : before + value);
    }
  }
  const out: string[] = [];
  for (const family of families.values()) {
    out.push(...family.meta);
    for (const [key, value] of family.series) out.push(`${key} ${formatValue(value)}`);
  }
  out.push('');
  return out.join('\n');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}
