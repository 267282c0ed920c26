/**
 * The connections of one shared cache to its Valkey (or Redis): a single server, a sentinel set
 * or a cluster, over TCP or verified TLS, through ioredis. One connection carries lookups and
 * writes, a second one hears the fleet's channel.
 *
 * Valkey is never on a query's critical path for longer than the lookup timeout: commands fail
 * at once while it is disconnected (no offline queue), the client reconnects by itself with
 * back-off, and the state (connecting, up, slow, down) changes with one log line each time.
 * "Slow" is a server that answers nothing within the timeout several times in a row: lookups
 * skip it until a probe comes back in time.
 */
import { Buffer } from 'node:buffer';
import net from 'node:net';
import tls from 'node:tls';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { TlsContexts } from '../../../lib/tls/contexts.js';
import type { SharedOptions } from './config.js';

export type SharedState = 'connecting' | 'up' | 'slow' | 'down';

/** Reconnect back-off: 50 ms doubling to 5 s, with jitter so a fleet does not come back in step. */
export function reconnectDelay(attempt: number): number {
  const base = Math.min(50 * 2 ** Math.min(attempt, 10), 5000);
  return Math.round(base * (0.75 + Math.random() * 0.5));
}
/** Timeouts in a row that make the server "slow". */
const SLOW_AFTER = 3;
/** Probes of a slow server: 250 ms doubling to 10 s. */
const PROBE_FIRST_MS = 250;
const PROBE_MAX_MS = 10_000;
/** Lookups in flight at once; more wait for nothing (they count as timeouts). */
export const MAX_IN_FLIGHT = 1000;
const CONNECT_TIMEOUT_MS = 2000;
/**
 * Lookups read each value with its remaining life at once, so both belong to the same write;
 * the lookups of one turn of the event loop go together, in one command (a cluster's keys live
 * on several nodes: there, one command a key).
 */
const FETCH_SCRIPT = "local out = {} for i, key in ipairs(KEYS) do out[2 * i - 1] = redis.call('GET', key) out[2 * i] = redis.call('PTTL', key) end return out";
/** Writes, as many as a batch holds, in one command: ARGV holds each value, then its expiry in ms. */
const STORE_SCRIPT = "for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[2 * i - 1], 'PX', ARGV[2 * i]) end return #KEYS";
/** Keys per command. */
const BATCH = 128;

interface Client {
  veilFetchBuffer(count: number, ...keys: string[]): Promise<Array<Buffer | number | null>>;
  veilStore(count: number, ...keysThenArgs: Array<string | Buffer | number>): Promise<number>;
}

interface PendingFetch {
  key: string;
  waitMs: number;
  resolve(result: FetchResult): void;
}
type AnyClient = (Redis | Cluster) & Client;

export type FetchResult = { value: Buffer | null; pttl: number } | 'timeout' | 'error';

export interface ConnectionEvents {
  state(state: SharedState, detail: string): void;
  /** The command connection is ready (again): read what may have changed meanwhile. */
  ready(): Promise<void>;
  message(payload: Buffer): void;
}

export class SharedConnection {
  state: SharedState = 'connecting';
  private client: AnyClient | null = null;
  private subscriber: AnyClient | null = null;
  private inFlight = 0;
  private timeoutsInARow = 0;
  private probeTimer: NodeJS.Timeout | null = null;
  private probeDelay = PROBE_FIRST_MS;
  private lastError = '';
  private closed = false;
  /** Lookups waiting for the end of this turn of the event loop. */
  private pending: PendingFetch[] = [];
  private sendScheduled = false;

  constructor(
    private readonly options: SharedOptions,
    private readonly events: ConnectionEvents,
    /** The fleet's channel: heard when `subscribe`, and where `publish` sends. */
    private readonly channel: string,
    private readonly subscribe: boolean,
    /** The server's TLS contexts: their default anchors, with the `tls_ca` files added. */
    private readonly tls: TlsContexts,
  ) {}

  /** Starts connecting (ioredis is loaded here: servers without `shared` never load it). */
  async open(): Promise<void> {
    const { Redis, Cluster } = await import('ioredis');
    const ioredis = { Redis, Cluster };
    this.client = this.makeClient(ioredis);
    this.client.on('ready', () => void this.onReady());
    this.client.on('error', (err: Error) => (this.lastError = describe(err)));
    this.client.on('close', () => this.onClose());
    void this.client.connect().catch(() => {}); // failures arrive as events; the client retries
    if (this.subscribe) {
      const subscriber = this.makeClient(ioredis);
      this.subscriber = subscriber;
      subscriber.on('error', () => {}); // the command connection reports the state
      subscriber.on('messageBuffer', (_channel: Buffer, payload: Buffer) => this.events.message(payload));
      // Messages sent while it was away are lost: read again what they would have changed.
      subscriber.on('ready', () => void (this.state === 'up' ? this.events.ready() : undefined));
      void subscriber
        .connect()
        .then(() => subscriber.subscribe(this.channel))
        .catch(() => {});
    }
  }

  /** Waits until the connection is up, at most `ms`; true when it is. */
  async waitUp(ms: number): Promise<boolean> {
    const started = Date.now();
    while (this.state !== 'up' && Date.now() - started < ms && !this.closed) await new Promise((r) => setTimeout(r, 20));
    return this.state === 'up';
  }

  get error(): string {
    return this.lastError;
  }

  /** Whether lookups go to the server now. */
  get usable(): boolean {
    return this.state === 'up';
  }

  /** Whether writes go to the server now: up, or slow but connected. */
  get connected(): boolean {
    return this.state === 'up' || this.state === 'slow';
  }

  /**
   * A value and its remaining life in ms (PTTL: -2 missing, -1 without expiry), within
   * `waitMs`. The wait ends only after the event loop has read what arrived: a busy loop that
   * runs the timer late does not turn an answer already there into a timeout.
   */
  fetch(key: string, waitMs: number): Promise<FetchResult> {
    if (!this.client || this.state !== 'up') return Promise.resolve('error');
    if (this.inFlight >= MAX_IN_FLIGHT) return Promise.resolve('timeout');
    this.inFlight++;
    return new Promise((resolve) => {
      this.pending.push({ key, waitMs, resolve });
      if (this.sendScheduled) return;
      this.sendScheduled = true;
      setImmediate(this.sendFetches);
    });
  }

  private readonly sendFetches = (): void => {
    this.sendScheduled = false;
    const pending = this.pending;
    this.pending = [];
    const size = this.options.cluster ? 1 : BATCH;
    for (let i = 0; i < pending.length; i += size) this.fetchBatch(pending.slice(i, i + size));
  };

  private fetchBatch(batch: PendingFetch[]): void {
    const client = this.client!;
    let settled = false;
    const timer = setTimeout(
      () =>
        setImmediate(() => {
          if (settled) return;
          settled = true;
          this.onTimeout();
          for (const b of batch) b.resolve('timeout');
        }),
      Math.min(...batch.map((b) => b.waitMs)),
    );
    client.veilFetchBuffer(batch.length, ...batch.map((b) => b.key)).then(
      (reply) => {
        this.inFlight -= batch.length;
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.timeoutsInARow = 0;
        batch.forEach((b, i) => {
          const value = Array.isArray(reply) ? reply[2 * i] : null;
          const pttl = Array.isArray(reply) ? reply[2 * i + 1] : -3;
          b.resolve({ value: Buffer.isBuffer(value) ? value : null, pttl: typeof pttl === 'number' ? pttl : -3 });
        });
      },
      (err: Error) => {
        this.inFlight -= batch.length;
        this.lastError = describe(err);
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        for (const b of batch) b.resolve('error');
      },
    );
  }

  /** Sends the writes, a batch a command (a key a command in a cluster); resolves with how many failed. */
  async write(entries: ReadonlyArray<{ key: string; value: Buffer; ttlMs: number }>): Promise<number> {
    const client = this.client;
    if (!client || !this.connected) return entries.length;
    const size = this.options.cluster ? 1 : BATCH;
    const batches: Array<Promise<number>> = [];
    for (let i = 0; i < entries.length; i += size) {
      const batch = entries.slice(i, i + size);
      const args = [...batch.map((e) => e.key), ...batch.flatMap((e) => [e.value, e.ttlMs])];
      batches.push(
        client.veilStore(batch.length, ...args).then(
          () => 0,
          (err: Error) => {
            this.lastError = describe(err);
            return batch.length;
          },
        ),
      );
    }
    return (await Promise.all(batches)).reduce((a, b) => a + b, 0);
  }

  async get(key: string): Promise<string | null> {
    return this.client!.get(key);
  }

  async incr(key: string): Promise<number> {
    return this.client!.incr(key);
  }

  async unlink(keys: readonly string[]): Promise<void> {
    // One key a command in a cluster, whose nodes hold different keys.
    if (this.options.cluster) await Promise.all(keys.map((key) => this.client!.unlink(key)));
    else await this.client!.unlink(...keys);
  }

  async publish(payload: Buffer): Promise<void> {
    if (!this.client) return;
    await this.client.publish(this.channel, payload);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    for (const client of [this.client, this.subscriber]) {
      if (!client) continue;
      await Promise.race([client.quit().catch(() => {}), new Promise((r) => setTimeout(r, 500).unref())]);
      client.disconnect();
    }
  }

  private async onReady(): Promise<void> {
    try {
      await this.events.ready();
    } catch (err) {
      this.lastError = describe(err as Error);
      // Connected but not usable (a wrong password answers only now, a cluster still forming):
      // the probe tries again with back-off.
      this.setState('down', this.lastError);
      this.scheduleProbe();
      return;
    }
    this.timeoutsInARow = 0;
    this.probeDelay = PROBE_FIRST_MS;
    this.setState('up', '');
  }

  private onClose(): void {
    if (this.closed || this.state === 'down') return;
    this.setState('down', this.lastError || 'connection closed');
  }

  private onTimeout(): void {
    if (++this.timeoutsInARow < SLOW_AFTER || this.state !== 'up') return;
    this.setState('slow', `no answer within the timeout ${SLOW_AFTER} times in a row`);
    this.scheduleProbe();
  }

  /** Asks a slow (or not yet usable) server again, later and later, until it answers in time. */
  private scheduleProbe(): void {
    if (this.probeTimer || this.closed) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      void this.probe();
    }, this.probeDelay);
    this.probeTimer.unref();
    this.probeDelay = Math.min(this.probeDelay * 2, PROBE_MAX_MS);
  }

  private async probe(): Promise<void> {
    const client = this.client;
    if (!client || this.closed || this.state === 'up') return;
    if (client.status !== 'ready') return; // down: the client's own reconnects bring 'ready'
    const answered = await Promise.race([
      client.ping().then(
        () => true,
        () => false,
      ),
      new Promise<false>((r) => setTimeout(() => r(false), Math.max(this.options.timeoutMs, 1)).unref()),
    ]);
    if (answered) return this.onReady();
    this.scheduleProbe();
  }

  private setState(state: SharedState, detail: string): void {
    if (state === this.state) return;
    this.state = state;
    this.events.state(state, detail);
  }

  private makeClient(ioredis: { Redis: typeof Redis; Cluster: typeof Cluster }): AnyClient {
    const o = this.options;
    const first = o.addresses[0]!;
    const tlsOptions: tls.ConnectionOptions | undefined = o.tls
      ? {
          ...(o.ca.length > 0 ? { ca: [...this.tls.defaultAnchors(), ...o.ca] } : {}),
          ...(o.serverName && net.isIP(o.serverName) === 0 ? { servername: o.serverName } : {}),
          minVersion: 'TLSv1.2',
          rejectUnauthorized: true,
          // The certificate names the server we meant: `server_name`, or the address itself.
          checkServerIdentity: (_host, cert) => tls.checkServerIdentity(o.serverName ?? first.host, cert),
        }
      : undefined;
    const common: RedisOptions = {
      ...(o.username ? { username: o.username } : {}),
      ...(o.password ? { password: o.password } : {}),
      ...(tlsOptions ? { tls: tlsOptions } : {}),
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      connectTimeout: CONNECT_TIMEOUT_MS,
      connectionName: 'veil',
      disableClientInfo: true,
      keepAlive: 10_000,
      // RESP2: what every Valkey and Redis speaks, pub/sub included.
      protocol: 2,
    };
    let client: Redis | Cluster;
    if (o.cluster) {
      client = new ioredis.Cluster(
        o.addresses.map((a) => ({ host: a.host, port: a.port })),
        {
          redisOptions: common,
          lazyConnect: true,
          enableOfflineQueue: false,
          // Not auto-pipelining: ioredis 6 groups scripts of keys on different slots into one
          // pipeline and fails them all.
          clusterRetryStrategy: reconnectDelay,
          slotsRefreshTimeout: CONNECT_TIMEOUT_MS,
          // Nodes announce addresses; a name among them is refused, never looked up.
          dnsLookup: (hostname, callback) => (net.isIP(hostname) ? callback(null, hostname) : callback(new Error(`refusing to resolve "${hostname}"`), '')),
        },
      );
    } else if (o.sentinel) {
      client = new ioredis.Redis({
        ...common,
        sentinels: o.addresses.map((a) => ({ host: a.host, port: a.port })),
        name: o.sentinel,
        db: o.db,
        ...(tlsOptions ? { enableTLSForSentinelMode: true, sentinelTLS: tlsOptions } : {}),
        retryStrategy: reconnectDelay,
        sentinelRetryStrategy: reconnectDelay,
        maintNotifications: 'disabled',
      });
    } else {
      client = new ioredis.Redis({ ...common, host: first.host, port: first.port, db: o.db, retryStrategy: reconnectDelay, maintNotifications: 'disabled' });
    }
    // The number of keys comes first in each call.
    client.defineCommand('veilFetch', { lua: FETCH_SCRIPT });
    client.defineCommand('veilStore', { lua: STORE_SCRIPT });
    return client as AnyClient;
  }
}

function describe(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
}
