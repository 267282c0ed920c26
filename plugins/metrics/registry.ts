/**
 * A small Prometheus registry: counters, gauges and histograms with fixed label names, written
 * out in the text exposition format (version 0.0.4). A series (one combination of label values)
 * is created once, with its label text rendered then, and kept by the caller: counting a query
 * is adding to a number. Every family has a ceiling on its series, so no label can grow without
 * bound even if a producer misbehaves.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary';

/** Series per family, far above what any configuration produces. */
const DEFAULT_MAX_SERIES = 2000;

export interface SeriesInfo {
  /** Label values in the family's label order. */
  readonly values: readonly string[];
  /** `{a="1",b="2"}`, or '' without labels. */
  readonly labelText: string;
}

export class CounterSeries implements SeriesInfo {
  value = 0;
  constructor(
    readonly values: readonly string[],
    readonly labelText: string,
  ) {}
  inc(by = 1): void {
    this.value += by;
  }
}

export class GaugeSeries implements SeriesInfo {
  value = 0;
  constructor(
    readonly values: readonly string[],
    readonly labelText: string,
  ) {}
  set(value: number): void {
    this.value = value;
  }
}

export class HistogramSeries implements SeriesInfo {
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly values: readonly string[],
    readonly labelText: string,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** Quantiles computed elsewhere (the event-loop monitor), with a cumulative sum and count. */
export class SummarySeries implements SeriesInfo {
  quantiles: ReadonlyArray<readonly [number, number]> = [];
  sum = 0;
  count = 0;
  constructor(
    readonly values: readonly string[],
    readonly labelText: string,
  ) {}
}

export abstract class Family<S extends SeriesInfo> {
  readonly series = new Map<string, S>();
  /** Where values go once the ceiling is reached: counted, never shown. */
  private overflow: S | null = null;
  /** Set once the ceiling was hit, so that the owner can say so. */
  overflowed = false;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    readonly maxSeries = DEFAULT_MAX_SERIES,
  ) {}

  abstract readonly type: MetricType;
  protected abstract create(values: readonly string[], labelText: string): S;

  /** The series for these label values (in labelNames' order), created on first use. */
  labels(...values: string[]): S {
    if (values.length !== this.labelNames.length) throw new Error(`${this.name} takes labels ${this.labelNames.join(', ')}`);
    const key = values.join('\u0000');
    let series = this.series.get(key);
    if (series) return series;
    if (this.series.size >= this.maxSeries) {
      this.overflowed = true;
      this.overflow ??= this.create(values, '');
      return this.overflow;
    }
    series = this.create(values, labelText(this.labelNames, values));
    this.series.set(key, series);
    return series;
  }

  /** Forgets every series (values included). */
  clear(): void {
    this.series.clear();
  }
}

export class Counter extends Family<CounterSeries> {
  readonly type = 'counter';
  protected create(values: readonly string[], text: string): CounterSeries {
    return new CounterSeries(values, text);
  }
}

export class Gauge extends Family<GaugeSeries> {
  readonly type = 'gauge';
  protected create(values: readonly string[], text: string): GaugeSeries {
    return new GaugeSeries(values, text);
  }
}

export class Histogram extends Family<HistogramSeries> {
  readonly type = 'histogram';
  /** `le` label text per bucket, rendered once. */
  private readonly leTexts: string[];

  constructor(name: string, help: string, labelNames: readonly string[], readonly bounds: readonly number[], maxSeries?: number) {
    super(name, help, labelNames, maxSeries);
    for (let i = 1; i < bounds.length; i++) if (!(bounds[i]! > bounds[i - 1]!)) throw new Error(`${name}: bucket bounds must increase`);
    this.leTexts = [...bounds.map(formatNumber), '+Inf'];
  }

  protected create(values: readonly string[], text: string): HistogramSeries {
    return new HistogramSeries(values, text, this.bounds);
  }

  /** Bucket lines of one series, cumulative as the format wants. */
  writeSeries(series: HistogramSeries, out: string[]): void {
    const prefix = series.labelText ? `${series.labelText.slice(0, -1)},le="` : '{le="';
    let cumulative = 0;
    for (let i = 0; i < this.leTexts.length; i++) {
      cumulative += series.counts[i]!;
      out.push(`${this.name}_bucket${prefix}${this.leTexts[i]}"} ${formatNumber(cumulative)}`);
    }
    out.push(`${this.name}_sum${series.labelText} ${formatNumber(series.sum)}`);
    out.push(`${this.name}_count${series.labelText} ${formatNumber(series.count)}`);
  }
}

export class Summary extends Family<SummarySeries> {
  readonly type = 'summary';
  protected create(values: readonly string[], text: string): SummarySeries {
    return new SummarySeries(values, text);
  }

  writeSeries(series: SummarySeries, out: string[]): void {
    const prefix = series.labelText ? `${series.labelText.slice(0, -1)},quantile="` : '{quantile="';
    for (const [quantile, value] of series.quantiles) out.push(`${this.name}${prefix}${formatNumber(quantile)}"} ${formatNumber(value)}`);
    out.push(`${this.name}_sum${series.labelText} ${formatNumber(series.sum)}`);
    out.push(`${this.name}_count${series.labelText} ${formatNumber(series.count)}`);
  }
}

/** `base`, `base·factor`, … `count` bounds. */
export function exponentialBuckets(base: number, factor: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => base * factor ** i);
}

export class Registry {
  private readonly families: Family<SeriesInfo>[] = [];
  private readonly collectors: Array<() => void> = [];

  add<F extends Family<any>>(family: F): F {
    if (this.families.some((f) => f.name === family.name)) throw new Error(`metric ${family.name} is registered twice`);
    this.families.push(family);
    return family;
  }

  /** Runs before every rendering (and statsd flush): for values read at scrape time. */
  onCollect(collector: () => void): void {
    this.collectors.push(collector);
  }

  collect(): void {
    for (const collector of this.collectors) collector();
  }

  get all(): readonly Family<SeriesInfo>[] {
    return this.families;
  }

  /** The text exposition of every family that has at least one series. */
  render(): string {
    this.collect();
    const out: string[] = [];
    for (const family of this.families) {
      if (family.series.size === 0) continue;
      out.push(`# HELP ${family.name} ${escapeHelp(family.help)}`);
      out.push(`# TYPE ${family.name} ${family.type}`);
      if (family instanceof Histogram || family instanceof Summary) {
        for (const series of family.series.values()) family.writeSeries(series as HistogramSeries & SummarySeries, out);
      } else {
        for (const series of family.series.values() as Iterable<CounterSeries | GaugeSeries>) {
          out.push(`${family.name}${series.labelText} ${formatNumber(series.value)}`);
        }
      }
    }
    out.push('');
    return out.join('\n');
  }
}

export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function labelText(names: readonly string[], values: readonly string[]): string {
  if (names.length === 0) return '';
  return `{${names.map((name, i) => `${name}="${escapeLabelValue(values[i]!)}"`).join(',')}}`;
}

export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

export function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}
