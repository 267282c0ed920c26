/**
 * The same metrics pushed to a statsd server over UDP. Counters and gauges are read from the
 * registry once per flush (a counter's increase since the last flush, a gauge's value), so the
 * hot path pays nothing for them; durations and sizes are sent as samples, at most
 * SAMPLES_PER_SERIES per series and flush, chosen uniformly (reservoir sampling) with the
 * statsd sample rate saying how many they stand for. Lines are packed into datagrams that fit
 * an Ethernet MTU, and one flush sends at most MAX_DATAGRAMS of them: the rest is dropped and
 * counted, never queued.
 *
 * Names: `PREFIX.METRIC.LABEL_VALUE…` with the metric's name less `veil_` and `_total`, and
 * label values in label order with anything but letters, digits, `-` and `_` turned into `_`
 * (the root zone is `root`).
 */
import { performance } from 'node:perf_hooks';
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from '../../core/logger.js';
import { CounterSeries, GaugeSeries, Histogram, Summary, SummarySeries, type HistogramSeries, type Registry, type SeriesInfo } from './registry.js';
import { ipLiteralLookup } from '../../core/net/ip-lookup.js';

export interface StatsdTarget {
  host: string;
  port: number;
  prefix: string;
}

const FLUSH_INTERVAL_MS = 1000;
/** Payload that fits a 1500-byte MTU with IPv6 and UDP headers. */
const MAX_DATAGRAM = 1432;
const MAX_DATAGRAMS = 256;
const SAMPLES_PER_SERIES = 64;
/** A failing statsd server is reported at most this often. */
const REPORT_EVERY_MS = 60_000;

interface Reservoir {
  name: string;
  type: 'ms' | 'h';
  scale: number;
  samples: number[];
  seen: number;
}

export class StatsdSink {
  /** Server blocks (by `server` label) whose series this sink sends, with how many hold each. */
  private readonly servers = new Map<string, number>();
  private readonly socket: dgram.Socket;
  private readonly names = new WeakMap<SeriesInfo, string>();
  private readonly sent = new WeakMap<CounterSeries | HistogramSeries, number>();
  private readonly reservoirs = new Map<HistogramSeries, Reservoir>();
  private readonly timer: NodeJS.Timeout;
  /** Lines dropped because a flush was over its budget, since the last report. */
  private dropped = 0;
  private lastReport = -Infinity;

  constructor(
    readonly target: StatsdTarget,
    private readonly registry: Registry,
    private readonly logger: Logger,
  ) {
    this.socket = dgram.createSocket({ type: net.isIPv6(target.host) ? 'udp6' : 'udp4', lookup: ipLiteralLookup });
    this.socket.on('error', (err) => this.report(`statsd ${target.host}:${target.port}: ${err.message}`));
    this.socket.unref();
    this.timer = setInterval(() => this.flush(), FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  addServer(server: string): void {
    this.servers.set(server, (this.servers.get(server) ?? 0) + 1);
  }

  serves(server: string): boolean {
    return this.servers.has(server);
  }

  /** Returns true when no block uses this sink any more. */
  removeServer(server: string): boolean {
    const left = (this.servers.get(server) ?? 1) - 1;
    if (left > 0) this.servers.set(server, left);
    else this.servers.delete(server);
    return this.servers.size === 0;
  }

  /** One observation of a histogram series of a server this sink serves. */
  sample(family: Histogram, series: HistogramSeries, value: number): void {
    let reservoir = this.reservoirs.get(series);
    if (!reservoir) {
      const seconds = family.name.endsWith('_seconds');
      reservoir = { name: this.nameOf(family.name, series), type: seconds ? 'ms' : 'h', scale: seconds ? 1000 : 1, samples: [], seen: 0 };
      this.reservoirs.set(series, reservoir);
    }
    reservoir.seen++;
    if (reservoir.samples.length < SAMPLES_PER_SERIES) reservoir.samples.push(value);
    else {
      const slot = Math.floor(Math.random() * reservoir.seen);
      if (slot < SAMPLES_PER_SERIES) reservoir.samples[slot] = value;
    }
  }

  /** Sends what accumulated since the last flush. */
  flush(): void {
    this.registry.collect();
    const lines: string[] = [];
    for (const family of this.registry.all) {
      const serverIndex = family.labelNames.indexOf('server');
      for (const series of family.series.values()) {
        if (serverIndex >= 0 && !this.servers.has(series.values[serverIndex]!)) continue;
        if (series instanceof CounterSeries) {
          const last = this.sent.get(series) ?? 0;
          // A counter below what we sent was reset (the registry started over): send it whole.
          const delta = series.value >= last ? series.value - last : series.value;
          this.sent.set(series, series.value);
          if (delta > 0) lines.push(`${this.nameOf(family.name, series)}:${delta}|c`);
        } else if (series instanceof GaugeSeries) {
          lines.push(...gaugeLines(this.nameOf(family.name, series), series.value));
        } else if (family instanceof Summary) {
          for (const [quantile, value] of (series as SummarySeries).quantiles) {
            lines.push(...gaugeLines(`${this.nameOf(family.name, series)}.q${Math.round(quantile * 100)}`, value));
          }
        } else if (!(family instanceof Histogram)) {
          throw new Error(`statsd: no rule for ${family.name}`);
        }
      }
    }
    for (const reservoir of this.reservoirs.values()) {
      if (reservoir.seen === 0) continue;
      const rate = reservoir.seen > reservoir.samples.length ? `|@${(reservoir.samples.length / reservoir.seen).toPrecision(4)}` : '';
      for (const value of reservoir.samples) lines.push(`${reservoir.name}:${roundValue(value * reservoir.scale)}|${reservoir.type}${rate}`);
      reservoir.samples.length = 0;
      reservoir.seen = 0;
    }
    this.send(lines);
  }

  private send(lines: string[]): void {
    let datagram = '';
    let datagrams = 0;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (datagram.length > 0 && datagram.length + 1 + line.length > MAX_DATAGRAM) {
        if (datagrams === MAX_DATAGRAMS) {
          this.dropped += lines.length - i;
          datagram = '';
          break;
        }
        this.write(datagram);
        datagrams++;
        datagram = '';
      }
      datagram = datagram ? `${datagram}\n${line}` : line;
    }
    if (datagram && datagrams < MAX_DATAGRAMS) this.write(datagram);
    if (this.dropped > 0) this.report(`statsd ${this.target.host}:${this.target.port}: dropped ${this.dropped} lines over the budget of ${MAX_DATAGRAMS} datagrams a second`);
  }

  private write(datagram: string): void {
    this.socket.send(datagram, this.target.port, this.target.host, (err) => {
      if (err) this.report(`statsd ${this.target.host}:${this.target.port}: ${err.message}`);
    });
  }

  private report(message: string): void {
    const now = performance.now();
    if (now - this.lastReport < REPORT_EVERY_MS) return;
    this.lastReport = now;
    this.dropped = 0;
    this.logger.warn(message);
  }

  private nameOf(metric: string, series: SeriesInfo): string {
    let name = this.names.get(series);
    if (name === undefined) {
      const base = metric.replace(/^veil_/, '').replace(/_total$/, '');
      name = [this.target.prefix, base, ...series.values.map(statsdWord)].filter((w) => w !== '').join('.');
      this.names.set(series, name);
    }
    return name;
  }

  /** Sends what is left, then closes. */
  stop(): void {
    clearInterval(this.timer);
    this.flush();
    // Sends already handed to the socket complete before it closes.
    setImmediate(() => this.socket.close());
  }
}

/** A statsd gauge below zero must be set in two steps: a bare `-5|g` means "decrease by 5". */
function gaugeLines(name: string, value: number): string[] {
  const text = roundValue(value);
  return value < 0 ? [`${name}:0|g`, `${name}:${text}|g`] : [`${name}:${text}|g`];
}

/** Six decimals at most, never exponent notation (statsd servers do not all read it). */
function roundValue(value: number): string {
  return String(Math.round(value * 1e6) / 1e6);
}

function statsdWord(value: string): string {
  if (value === '.') return 'root';
  return value.replace(/[^A-Za-z0-9_-]+/g, '_').replace(/^_+|_+$/g, '') || 'none';
}
