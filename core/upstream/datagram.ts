/**
 * Exchanges over UDP with one address, for every protocol that sends datagrams upstream (plain
 * DNS, DNSCrypt, DNSCrypt through a relay). Connected sockets (the kernel then drops
 * datagrams from any other source, and ICMP "port unreachable" surfaces as an error at once);
 * each exchange waits under a key the protocol derives from its answer (the DNS ID, a DNSCrypt
 * nonce), and an answer is taken only when the exchange's `accept` says it is the one, so forged
 * or stray datagrams are ignored while waiting.
 *
 * Source ports change all the time (RFC 5452 §9.2: an off-path forger must guess the port as
 * well as the ID): each socket carries a bounded number of exchanges, or serves a bounded time,
 * and is then replaced by a fresh one on a port the kernel picks at random. The replaced socket
 * only waits for the answers it is owed and closes with its last one. Opening a socket per query
 * would cost a few system calls each; one per QUERIES_PER_SOCKET keeps that off the hot path.
 *
 * A datagram lost on the way (a full receive buffer at a busy server, a lossy link) would cost
 * the whole deadline and end in SERVFAIL. With `resend`, a query unanswered after four smoothed
 * round trips (RESEND_MIN_MS at least, and up to half as long again at random) is sent once
 * more, the same bytes on the same socket, when the deadline is at least three times that
 * wait (so the copy has time to be answered); still unanswered after twice that wait again, a
 * third time, when a whole wait would still be left after it. A loss then costs a fraction of a
 * second (as a stub's or unbound's retransmission would); two in a row, as a server whose
 * buffer a burst keeps full drops them (1,000 queries in flight to one unbound: 14–86 of ~1M
 * ended in SERVFAIL with one resend), cost a little more; and an upstream that is only slow
 * gets two extra copies of a query at most. Relays do not resend: their clients do.
 *
 * Where the native addon is built, the sockets are its connected sockets (core/net/udp-batch.ts):
 * answers read in batches, and the queries of a batch of client datagrams sent together, one
 * system call (and one wake-up of a server on this machine) for many, bound to the local address
 * given (a relay's own) or to one the kernel picks; else node:dgram's.
 */
import { performance } from 'node:perf_hooks';
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../errors.js';
import { ConnectedUdpSocket, udpBatchAddon } from '../net/udp-batch.js';
import { DeadlineTimer, timerWait } from '../util/deadline-timer.js';
import { promised, type Outcome } from './outcome.js';

/**
 * Turns a datagram into the exchange's result, or null to keep waiting for another. A promise
 * (another exchange, started from here) becomes the result once it settles.
 */
export type Accept<T> = (packet: Buffer) => T | Promise<T> | null;

interface Pending {
  accept: Accept<unknown>;
  /** Where the result goes (the caller's promise, or its own handling). */
  outcome: Outcome<unknown>;
  /** performance.now() past which it fails with a timeout (the socket's DeadlineTimer sees to it). */
  deadline: number;
  timeoutMs: number;
  /** The datagram, kept for its resends; null when no more is planned. */
  packet: Buffer | null;
  /** The Resender's tick at which it goes again, if unanswered. */
  resendTick: number;
  /** Copies sent again so far. */
  resends: number;
  /** The Resender's tick at which the exchange's deadline passes. */
  lastTick: number;
  /** When it was sent, for the round-trip estimate; 0 when not sampled (or resent: ambiguous). */
  sentAt: number;
}

/** The shortest wait before a query is sent again: far above loopback's and a LAN's round trips. */
export const RESEND_MIN_MS = 200;
/** Before any round trip was measured: what unbound assumes of a server it does not know. */
const RESEND_INITIAL_MS = 400;
/** Resends are planned in ticks of this many milliseconds of performance.now() time. */
const RESEND_TICK_MS = 50;
/** Copies of a query sent again at most (each after twice the wait of the one before). */
const MAX_RESENDS = 2;
/** One exchange in this many is timed for the estimate (a clock read each way). */
const RTT_SAMPLE_EVERY = 16;

/** The tick that performance.now() time `now` falls in. */
function resendTickOf(now: number): number {
  return Math.floor(now / RESEND_TICK_MS);
}

/**
 * Resends, per address. The wait is four times the smoothed round trip (RFC 6298's weight of
 * 1/8), RESEND_MIN_MS at least, and up to half as long again at random, so that queries lost
 * together (a burst that overflowed the server's buffer) are not all sent again together, to
 * overflow it again.
 *
 * Times are counted in ticks of RESEND_TICK_MS, read off the clock the exchange was sent by (no
 * clock read of its own). One timer (core/util/deadline-timer.ts) is set for the earliest tick a
 * planned resend can fall due; its sweep sends what is due and sets it again for the next one
 * due, while some resend is planned. The timer is not cleared when the last planned query is
 * answered: clearTimeout leaves libuv's timer armed (Node stops it only when it fires with
 * nothing due), so clearing saves no wake-up, and at one query at a time it would cost a
 * setTimeout and a clearTimeout a query. A query waits at least RESEND_MIN_MS for its first resend, so one at a time (a home, at
 * 20 a second) the sweep wakes Veil once per RESEND_MIN_MS or more, not once a query, as a sweep
 * every tick did (docs/benchmarks.md). A sweep looks at each query pending on the address once,
 * and the pending are bounded (MAX_PENDING_PER_SOCKET a socket).
 */
export class Resender {
  private srtt = 0;
  private count = 0;
  afterMs = RESEND_INITIAL_MS;
  /** Set for the earliest time a planned resend can fall due (`sweep`). */
  private readonly timer = new DeadlineTimer((now) => this.sweep(now));
  /** Exchanges pending with their resend still to come. */
  private planned = 0;

  constructor(
    /** The address's sockets, in use and draining: the ones a sweep looks over. */
    private readonly sockets: () => Iterable<DatagramSocket<unknown>>,
    readonly onResend: () => void = () => {},
  ) {}

  /** True for the exchanges to time. */
  sampleNext(): boolean {
    return this.count++ % RTT_SAMPLE_EVERY === 0;
  }

  sample(rttMs: number): void {
    this.srtt = this.srtt === 0 ? rttMs : this.srtt + (rttMs - this.srtt) / 8;
    this.afterMs = Math.max(RESEND_MIN_MS, 4 * this.srtt);
  }

  /** The tick at which a query sent at `now` (performance.now()) and still unanswered goes again. */
  plan(now: number): number {
    this.planned++;
    const tick = resendTickOf(now);
    const ticks = this.waitTicks;
    // Set for the earliest such a query can fall due (its random part left out), so that the
    // queries planned after it, due no sooner, leave the timer as it is.
    this.timer.add((tick + ticks) * RESEND_TICK_MS, now);
    return tick + ticks + this.jitter(ticks);
  }

  /**
   * The tick `timeoutMs` after the start of `now`'s tick, so up to a tick sooner than the
   * deadline itself: never after it, so a resend planned before it has its whole wait.
   */
  deadline(now: number, timeoutMs: number): number {
    return resendTickOf(now) + Math.floor(timeoutMs / RESEND_TICK_MS);
  }

  /** The tick `factor` waits after tick `tick`, and up to half as long again at random. */
  after(tick: number, factor: number): number {
    const ticks = Math.ceil((factor * this.afterMs) / RESEND_TICK_MS);
    return tick + ticks + this.jitter(ticks);
  }

  private jitter(ticks: number): number {
    return Math.floor(Math.random() * (Math.floor(ticks / 2) + 1));
  }

  /** One wait in ticks: the time a copy is given to be answered. */
  get waitTicks(): number {
    return Math.ceil(this.afterMs / RESEND_TICK_MS);
  }

  /** A planned exchange was answered, failed, or resent: no resend to come for it. */
  unplan(): void {
    this.planned--;
  }

  /** Sends what is due by `now`; the time the next planned resend can fall due, or Infinity. */
  private sweep(now: number): number {
    if (this.planned === 0) return Infinity; // nothing to look at, and no next sweep until a query plans one
    // A Node timer may fire up to a millisecond early: what falls due within it is due.
    const tick = resendTickOf(now + 1);
    let next = Infinity;
    for (const socket of this.sockets()) next = Math.min(next, socket.resendDue(tick));
    // (A query planned from inside the sweep has set the timer for itself.)
    return this.planned > 0 ? (next === Infinity ? tick + 1 : next) * RESEND_TICK_MS : Infinity;
  }
}

/** Exchanges in flight per socket; past that many on every socket the address is overloaded. */
const MAX_PENDING_PER_SOCKET = 4096;
/** Exchanges a socket is given before a fresh one (a new random port) takes its place. */
export const QUERIES_PER_SOCKET = 64;
/** The longest a socket is given exchanges, however few. */
const SOCKET_LIFETIME_MS = 30_000;
/**
 * Replaced sockets still waiting for answers, at most, per address: each closes with its last
 * answer or timeout, so this bounds file descriptors when the upstream is silent. At the bound,
 * sockets serve past their share until one closes.
 */
const MAX_DRAINING = 64;

/** What a DatagramSocket sends on: the addon's connected socket, or node:dgram's. */
interface Transport {
  /** Sends; a failure reported for this very datagram goes to `onError`. */
  send(packet: Buffer, onError: (err: Error) => void): void;
  close(): void;
}

export class DatagramSocket<K> {
  readonly pending = new Map<K, Pending>();
  private readonly transport: Transport;
  private ready: Promise<void> | null = null;
  closed = false;
  /** Exchanges given to this socket so far (DatagramSockets.pick counts them). */
  given = 0;
  readonly openedAt = performance.now();
  /** Replaced: takes no new exchange, closes when nothing is pending. */
  private retired = false;
  /** One timer for the exchanges' deadlines, not one each (core/util/deadline-timer.ts). */
  private readonly deadlines = new DeadlineTimer((now) => this.expire(now));

  constructor(
    host: string,
    port: number,
    private readonly label: string,
    private readonly keyOf: (packet: Buffer) => K | null,
    /** Called once when the socket closes, for whatever reason. */
    private readonly onClosed: (socket: DatagramSocket<K>) => void,
    /** The local address to send from (a relay bound to one); else the kernel picks. */
    localAddress?: string,
    /** Resends queries that go unanswered (see the top of this file); null for none. */
    private readonly resender: Resender | null = null,
  ) {
    const onError = (err: Error) => this.close(new UpstreamUnavailableError(`${label}: ${err.message}`, { cause: err }));
    const addon = udpBatchAddon();
    // A scoped IPv6 address (fe80::1%eth0) is node:dgram's: the addon takes IP literals only.
    if (addon && !host.includes('%') && !localAddress?.includes('%')) {
      let socket: ConnectedUdpSocket;
      try {
        socket = new ConnectedUdpSocket(addon, host, port, (msg) => this.onMessage(msg), onError, localAddress);
      } catch (err) {
        throw new UpstreamUnavailableError(`${label}: ${(err as Error).message}`, { cause: err });
      }
      this.transport = { send: (packet) => socket.send(packet), close: () => socket.close() };
      return;
    }
    const socket = dgram.createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    socket.on('message', (msg) => this.onMessage(msg));
    socket.on('error', onError);
    const ready = new Promise<void>((resolve, reject) => {
      socket.once('connect', () => {
        this.ready = null;
        resolve();
      });
      socket.once('error', reject);
    });
    ready.catch(() => {});
    this.ready = ready;
    // dgram holds the connect until the bind is done.
    if (localAddress) socket.bind(0, localAddress);
    socket.connect(port, host);
    this.transport = {
      send: (packet, failed) => socket.send(packet, (err) => err && failed(err)),
      close: () => socket.close(),
    };
  }

  /**
   * Sends `packet`; resolves with what `accept` makes of the first datagram it takes under `key`.
   * `now` is performance.now() if the caller has just read it (a clock read less a query).
   */
  send<T>(packet: Buffer, key: K, accept: Accept<T>, timeoutMs: number, now = performance.now()): Promise<T> {
    return promised<T>((outcome) => this.sendTo(packet, key, accept, timeoutMs, outcome, now));
  }

  /**
   * `send`, with the result or the failure given to `outcome` rather than to a promise made here
   * (core/upstream/outcome.ts). A failure to send at all reaches it at once.
   */
  sendTo<T>(packet: Buffer, key: K, accept: Accept<T>, timeoutMs: number, outcome: Outcome<T>, now = performance.now()): void {
    if (this.closed) return outcome.reject(new UpstreamUnavailableError(`${this.label}: socket closed`));
    if (this.pending.has(key)) return outcome.reject(new UpstreamUnavailableError(`${this.label}: an exchange with the same key is in flight`));
    const entry: Pending = { accept, outcome: outcome as Outcome<unknown>, deadline: now + timerWait(timeoutMs), timeoutMs, packet: null, resendTick: 0, resends: 0, lastTick: 0, sentAt: 0 };
    this.deadlines.add(entry.deadline, now);
    const resender = this.resender;
    // A resend only when the copy has as long to be answered as the first had.
    if (resender && resender.afterMs * 3 <= timeoutMs) {
      entry.packet = packet;
      entry.resendTick = resender.plan(now);
      entry.lastTick = resender.deadline(now, timeoutMs);
      if (resender.sampleNext()) entry.sentAt = now;
    }
    // Pending from now, even before the socket is connected: its key is taken, and a retired
    // socket knows it still owes this answer.
    this.pending.set(key, entry);
    // Once connected, no await: one less turn of the event loop per query. (A failed connect
    // closes the socket, which rejects what is pending.)
    if (!this.ready) this.transmit(packet, key);
    else this.ready.then(() => this.transmit(packet, key), () => {});
  }

  /**
   * For the Resender's sweep: sends again what is due at `tick` and still unanswered; the
   * earliest tick a resend is planned for after that, or Infinity.
   */
  resendDue(tick: number): number {
    let earliest = Infinity;
    if (this.closed) return earliest;
    for (const [key, entry] of this.pending) {
      if (!entry.packet) continue;
      if (entry.resendTick > tick) {
        if (entry.resendTick < earliest) earliest = entry.resendTick;
        continue;
      }
      const packet = entry.packet;
      // Another copy after twice the wait, when that copy would still have a whole wait before
      // the deadline: a server that dropped the first copies under a burst often still is.
      const resender = this.resender!;
      const next = ++entry.resends < MAX_RESENDS ? resender.after(tick, 2 ** entry.resends) : Infinity;
      if (next + resender.waitTicks <= entry.lastTick) {
        entry.resendTick = next;
        if (next < earliest) earliest = next;
      } else this.dropResend(entry);
      entry.sentAt = 0; // two copies out: an answer's round trip would be ambiguous
      this.resender!.onResend();
      this.transmit(packet, key);
    }
    return earliest;
  }

  private transmit(packet: Buffer, key: K): void {
    if (!this.pending.has(key)) return; // timed out while the socket connected
    this.transport.send(packet, (err) => {
      const entry = this.pending.get(key);
      if (!entry) return;
      this.settle(key, entry);
      entry.outcome.reject(new UpstreamUnavailableError(`${this.label}: ${err.message}`, { cause: err }));
    });
  }

  /** True when this socket has had its share and should be replaced. */
  spent(now: number): boolean {
    return this.given >= QUERIES_PER_SOCKET || now - this.openedAt >= SOCKET_LIFETIME_MS;
  }

  /** Takes no new exchange from now on; closes once the pending ones are answered or time out. */
  retire(): void {
    this.retired = true;
    if (this.pending.size === 0) this.close();
  }

  private onMessage(msg: Buffer): void {
    const key = this.keyOf(msg);
    const entry = key === null ? undefined : this.pending.get(key);
    if (!entry) return;
    const result = entry.accept(msg);
    if (result === null) return; // not the answer: keep waiting for the real one
    if (entry.sentAt > 0) this.resender!.sample(performance.now() - entry.sentAt);
    this.settle(key!, entry);
    // A promise is another exchange started from `accept` (udp-client.ts asks again): its result.
    const outcome = entry.outcome;
    if (result instanceof Promise) result.then((value) => outcome.resolve(value), (error: unknown) => outcome.reject(error));
    else outcome.resolve(result);
  }

  /** The exchanges due by `now` fail with a timeout; the earliest deadline left, or Infinity. */
  private expire(now: number): number {
    let next = Infinity;
    for (const [key, entry] of this.pending) {
      if (entry.deadline > now + 1) {
        if (entry.deadline < next) next = entry.deadline;
        continue;
      }
      this.settle(key, entry);
      entry.outcome.reject(new UpstreamTimeoutError(`${this.label}: no answer within ${Math.round(entry.timeoutMs)}ms`));
    }
    return this.closed ? Infinity : next;
  }

  /** Forgets an exchange that is over; a retired socket closes with its last one. */
  private settle(key: K, entry: Pending): void {
    this.dropResend(entry);
    this.pending.delete(key);
    if (this.retired && this.pending.size === 0) this.close();
  }

  /** The exchange has no resend to come any more (answered, failed, or resent). */
  private dropResend(entry: Pending): void {
    if (!entry.packet) return;
    entry.packet = null;
    this.resender!.unplan();
  }

  /** Closes the socket; what is still pending fails with `error` (made only when needed). */
  close(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pending.size > 0) {
      const reason = error ?? new UpstreamUnavailableError(`${this.label}: closed`);
      for (const entry of this.pending.values()) {
        this.dropResend(entry);
        entry.outcome.reject(reason);
      }
      this.pending.clear();
    }
    this.deadlines.clear();
    this.transport.close();
    this.onClosed(this);
  }
}

export interface DatagramSocketsOptions {
  /**
   * Sockets in use at once, taking exchanges in turn (default 4). Sockets taken in turn split
   * every batch of queries that many ways, a send, a read and a JavaScript call for each: plain
   * forwarding keeps one (udp-client.ts), a few percent more throughput than four. DNSCrypt
   * keeps four: against dnsdist's DNSCrypt front-end one measured 15% slower, for a reason not
   * found (docs/benchmarks.md). A relay keeps two, so that a packet whose key is in flight on
   * one can go on the other.
   */
  count?: number;
  /** The local address every socket sends from; else the kernel picks. */
  localAddress?: string;
  /** Send a query once more when it goes unanswered (see the top of this file). */
  resend?: boolean;
  /** Told of each query sent again. */
  onResend?: () => void;
}

/** Up to `count` sockets to one address, used in turn, each replaced when it has had its share. */
export class DatagramSockets<K> {
  private sockets: DatagramSocket<K>[] = [];
  /** Replaced sockets still waiting for answers. */
  private readonly draining = new Set<DatagramSocket<K>>();
  private next = 0;
  private stopped = false;

  private readonly count: number;
  private readonly localAddress: string | undefined;
  private readonly resender: Resender | null;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly label: string,
    private readonly keyOf: (packet: Buffer) => K | null,
    options: DatagramSocketsOptions = {},
  ) {
    this.count = options.count ?? 4;
    this.localAddress = options.localAddress;
    this.resender = options.resend ? new Resender(() => this.allSockets(), options.onResend) : null;
  }

  /** Exchanges waiting for an answer. */
  get inflight(): number {
    let sum = 0;
    for (const socket of this.sockets) sum += socket.pending.size;
    for (const socket of this.draining) sum += socket.pending.size;
    return sum;
  }

  private *allSockets(): Iterable<DatagramSocket<unknown>> {
    yield* this.sockets as DatagramSocket<unknown>[];
    yield* this.draining as Set<DatagramSocket<unknown>>;
  }

  /** Sockets open to this address: in use, and replaced ones still waiting for answers. */
  get open(): number {
    return this.sockets.length + this.draining.size;
  }

  /**
   * The socket the next exchange goes on (its `pending` tells which keys are taken); `now` is
   * performance.now() if the caller has just read it.
   */
  pick(now = performance.now()): DatagramSocket<K> {
    if (this.stopped) throw new UpstreamUnavailableError(`${this.label}: stopped`);
    if (this.sockets.length < this.count) {
      const socket = this.openSocket();
      this.sockets.push(socket);
      return this.take(socket);
    }
    for (let i = 0; i < this.sockets.length; i++) {
      const index = this.next++ % this.sockets.length;
      let socket = this.sockets[index]!;
      if (socket.spent(now) && this.draining.size < MAX_DRAINING) {
        this.draining.add(socket);
        socket.retire();
        socket = this.sockets[index] = this.openSocket();
      }
      if (socket.pending.size < MAX_PENDING_PER_SOCKET) return this.take(socket);
    }
    // Bounded memory: past this many exchanges in flight, the address is overloaded.
    throw new UpstreamUnavailableError(`${this.label}: ${this.count * MAX_PENDING_PER_SOCKET} queries already in flight`);
  }

  private take(socket: DatagramSocket<K>): DatagramSocket<K> {
    socket.given++;
    return socket;
  }

  /** A new socket; the kernel binds it to a random free port when it connects. */
  private openSocket(): DatagramSocket<K> {
    return new DatagramSocket<K>(
      this.host,
      this.port,
      this.label,
      this.keyOf,
      (closed) => {
        if (this.draining.delete(closed)) return;
        const index = this.sockets.indexOf(closed);
        if (index >= 0) this.sockets.splice(index, 1);
      },
      this.localAddress,
      this.resender,
    );
  }

  close(): void {
    this.stopped = true;
    const error = new UpstreamUnavailableError(`${this.label}: stopped`);
    for (const socket of [...this.sockets, ...this.draining]) socket.close(error);
    this.sockets = [];
    this.draining.clear();
  }
}
