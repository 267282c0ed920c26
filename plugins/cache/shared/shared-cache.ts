/**
 * The shared level of one block's cache: behind the local cache, in front of the upstreams.
 *
 * - **Lookups** on a local miss: one round trip, bounded by `timeout`; a timeout, an error or
 *   anything that does not open is a miss, and the query goes upstream.
 * - **Writes** of upstream answers are queued (bounded: overflow drops and counts), sent
 *   together a few milliseconds later, and expire in Valkey when the answer does: their expiry
 *   is what is left of the TTL when they are sent.
 * - **The fleet** hears one channel: flushes (every entry, or one name) and list refreshes;
 *   messages are sealed with the fleet's secret and carry the sender's instance id.
 * - **The generation** is a counter in Valkey mixed into every key: a full flush increments it,
 *   and every entry written before becomes unreachable at once (Valkey expires them later).
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { sharedCacheEvent, sharedCacheState } from '../../../core/events.js';
import type { Fleet, FleetMessage } from '../../../core/fleet.js';
import { serviceToken } from '../../../core/services.js';
import type { TlsContexts } from '../../../lib/tls/contexts.js';
import type { Clock } from '../../../core/clock.js';
import type { Logger } from '../../../core/logger.js';
import { HEADER_SIZE } from '../../../core/dns/constants.js';
import type { SharedOptions } from './config.js';
import { SharedConnection, type SharedState } from './connection.js';
import { flushedQuestions, KEY_BITS } from './flush.js';
import { FleetKeys } from './sealing.js';

/** Writes sent in one go. */
const WRITE_BATCH = 256;
/** How long a write waits for others to go with it. */
const WRITE_DELAY_MS = 5;
/** Fleet messages older (or further in the future) than this are replays, or clocks too far apart. */
const MESSAGE_MAX_AGE_MS = 5 * 60_000;
/** Entries with less life than this left are not worth a write. */
const MIN_WRITE_TTL_MS = 1000;

/** What a shared hit gives the local cache. */
export interface SharedAnswer {
  /** The answer as its upstream gave it (original TTLs); the question is the query's. */
  answer: Buffer;
  /** Seconds the entry is fresh in all, and how long ago (ms) it was stored. */
  ttl: number;
  ageMs: number;
}

interface PendingWrite {
  answer: Buffer;
  questionEnd: number;
  bits: number;
  ttl: number;
  /** Monotonic ms when the answer arrived: the time queued counts against its TTL. */
  queuedAt: number;
}

export class SharedCache implements Fleet {
  readonly instanceId = randomBytes(8).toString('hex');
  /** Called with a fleet flush: drop the local entries (all of them, or one name's). */
  onFlush: (name: string | null) => void = () => {};
  private readonly keys: FleetKeys;
  private readonly connection: SharedConnection;
  private generation: number | null = null;
  private readonly queue: PendingWrite[] = [];
  private writeTimer: NodeJS.Timeout | null = null;
  private writing = false;
  private readonly listeners = new Set<(message: FleetMessage) => void>();

  constructor(
    readonly options: SharedOptions,
    /** The server block (its keys); part of every entry's key. */
    readonly server: string,
    private readonly logger: Logger,
    private readonly clock: Clock,
    /** The server's TLS contexts (TlsContextsService), for a `tls` connection. */
    tls: TlsContexts,
    { subscribe = true }: { subscribe?: boolean } = {},
  ) {
    this.keys = new FleetKeys(options.secret);
    this.connection = new SharedConnection(
      options,
      {
        state: (state, detail) => this.onState(state, detail),
        ready: () => this.readGeneration(),
        message: (payload) => this.onMessage(payload),
      },
      this.keys.channel,
      subscribe,
      tls,
    );
  }

  get state(): SharedState {
    return this.connection.state;
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  async start(): Promise<void> {
    this.publishState('connecting');
    await this.connection.open();
  }

  /** Sends what is queued (briefly), then closes. */
  async stop(): Promise<void> {
    if (this.writeTimer) clearTimeout(this.writeTimer);
    this.writeTimer = null;
    if (this.queue.length > 0 && this.connection.usable) await Promise.race([this.flushWrites(), new Promise((r) => setTimeout(r, 500).unref())]);
    await this.connection.close();
  }

  /**
   * The shared entry for the query's question (`query` up to `questionEnd`) and key bits, or
   * null; never longer than `waitMs`.
   */
  async lookup(query: Buffer, questionEnd: number, bits: number, waitMs: number): Promise<SharedAnswer | null> {
    if (!this.connection.usable || this.generation === null) return null;
    const key = this.keys.entry(query, questionEnd, bits, this.server, this.generation);
    const result = await this.connection.fetch(key, waitMs);
    if (result === 'timeout' || result === 'error') {
      this.publish(result);
      return null;
    }
    if (result.value === null) {
      this.publish('miss');
      return null;
    }
    const opened = this.keys.openAnswer(key, result.value);
    // A value that does not open, outlives its TTL or has no expiry, or answers another
    // question, is not ours to serve: a miss.
    if (!opened || result.pttl < 0 || result.pttl > opened.ttl * 1000 || !sameQuestion(opened.answer, query, questionEnd)) {
      this.publish('invalid');
      return null;
    }
    this.publish('hit');
    return { answer: opened.answer, ttl: opened.ttl, ageMs: opened.ttl * 1000 - result.pttl };
  }

  /** Queues an upstream's answer for the fleet; `answer` is copied. */
  write(answer: Buffer, questionEnd: number, bits: number, ttl: number, now: number): void {
    // A slow server still takes writes (they wait for nobody); an unreachable one does not.
    if (!this.connection.connected || this.generation === null || this.queue.length >= this.options.writeQueue) {
      this.publish('drop');
      return;
    }
    this.queue.push({ answer: Buffer.from(answer), questionEnd, bits, ttl, queuedAt: now });
    if (this.queue.length >= WRITE_BATCH) this.scheduleWrites(0);
    else this.scheduleWrites(WRITE_DELAY_MS);
  }

  // Fleet, for the block's other plugins.

  announce(message: FleetMessage): void {
    if (!this.connection.usable) return;
    this.connection.publish(this.sealMessage(message)).catch((err: Error) => this.logger.debug(`fleet message not sent: ${err.message}`));
  }

  listen(listener: (message: FleetMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * `veil cache flush`: every entry of the fleet (a new generation), or one name's entries
   * (their keys deleted for the common types); then tells every instance to drop its own.
   * Throws when Valkey cannot be reached within `waitMs`.
   */
  async flushFleet(name: string | null, waitMs: number): Promise<void> {
    if (!(await this.connection.waitUp(waitMs))) throw new Error(`unreachable (${this.connection.error || 'no answer'})`);
    let generation = this.generation!;
    if (name === null) {
      generation = await this.connection.incr(this.keys.generationKey);
    } else {
      const keys = flushedQuestions(name).flatMap((q) => KEY_BITS.map((bits) => this.keys.entry(q, q.length, bits, this.server, generation)));
      await this.connection.unlink(keys);
    }
    await this.connection.publish(this.sealMessage({ kind: 'flush', name }, generation));
  }

  private scheduleWrites(delay: number): void {
    if (this.writing) return; // the batch in flight schedules the next one
    if (this.writeTimer && delay > 0) return;
    if (this.writeTimer) clearTimeout(this.writeTimer);
    this.writeTimer = setTimeout(() => {
      this.writeTimer = null;
      void this.flushWrites();
    }, delay);
  }

  /** Seals and sends up to WRITE_BATCH queued answers; one batch in flight at a time. */
  private async flushWrites(): Promise<void> {
    if (this.writing || this.queue.length === 0) return;
    this.writing = true;
    try {
      const batch = this.queue.splice(0, WRITE_BATCH);
      const generation = this.generation;
      const now = this.clock.monotonic();
      const entries: Array<{ key: string; value: Buffer; ttlMs: number }> = [];
      for (const w of batch) {
        const ttlMs = Math.floor(w.ttl * 1000 - (now - w.queuedAt));
        if (ttlMs < MIN_WRITE_TTL_MS || generation === null) continue;
        const key = this.keys.entry(w.answer, w.questionEnd, w.bits, this.server, generation);
        entries.push({ key, value: this.keys.sealAnswer(key, w.answer, w.ttl), ttlMs });
      }
      const failed = entries.length > 0 ? await this.connection.write(entries) : 0;
      for (let i = 0; i < entries.length - failed; i++) this.publish('write');
      for (let i = 0; i < failed; i++) this.publish('error');
    } finally {
      this.writing = false;
      if (this.queue.length > 0) this.scheduleWrites(this.queue.length >= WRITE_BATCH ? 0 : WRITE_DELAY_MS);
    }
  }

  /** On every (re)connection: the generation may have moved while we were away. */
  private async readGeneration(): Promise<void> {
    const text = await this.connection.get(this.keys.generationKey);
    const generation = text === null ? 0 : Number(text);
    if (!Number.isSafeInteger(generation)) throw new Error(`the generation key holds "${text}", not a number`);
    const before = this.generation;
    this.generation = generation;
    if (before !== null && before !== generation) {
      this.logger.info(`shared cache ${this.options.shown}: flushed by the fleet while away: dropping the local entries`);
      this.onFlush(null);
    }
  }

  private onState(state: SharedState, detail: string): void {
    const where = `shared cache ${this.options.shown}`;
    if (state === 'up') this.logger.info(`${where}: connected, sharing`);
    else if (state === 'slow') this.logger.warn(`${where}: slow (${detail}); local cache only until it answers in time`);
    else if (state === 'down') this.logger.warn(`${where}: unreachable (${detail}); local cache only, reconnecting with back-off`);
    this.publishState(state);
  }

  private sealMessage(message: FleetMessage, generation?: number): Buffer {
    return this.keys.sealMessage(JSON.stringify({ ...message, from: this.instanceId, at: Date.now(), ...(generation !== undefined ? { generation } : {}) }));
  }

  private onMessage(payload: Buffer): void {
    const text = this.keys.openMessage(payload);
    if (text === null) return this.logger.debug('fleet message that does not open under the fleet secret: ignored');
    let message: { kind?: unknown; name?: unknown; from?: unknown; at?: unknown; generation?: unknown };
    try {
      message = JSON.parse(text) as typeof message;
    } catch {
      return;
    }
    if (message.from === this.instanceId) return;
    if (typeof message.at !== 'number' || Math.abs(Date.now() - message.at) > MESSAGE_MAX_AGE_MS) return;
    if (message.kind === 'flush') {
      const name = typeof message.name === 'string' ? message.name : null;
      if (typeof message.generation === 'number' && Number.isSafeInteger(message.generation)) this.generation = message.generation;
      this.logger.info(name === null ? 'fleet flush: dropping every local entry' : `fleet flush of one name: dropping its local entries`);
      this.onFlush(name);
      for (const listener of this.listeners) listener({ kind: 'flush', name });
    } else if (message.kind === 'lists') {
      for (const listener of this.listeners) listener({ kind: 'lists' });
    }
  }

  private publish(event: 'hit' | 'miss' | 'error' | 'timeout' | 'invalid' | 'write' | 'drop'): void {
    if (sharedCacheEvent.hasSubscribers) sharedCacheEvent.publish({ server: this.server, event, queue: this.queue.length });
  }

  private publishState(state: SharedState): void {
    if (sharedCacheState.hasSubscribers) sharedCacheState.publish({ server: this.server, state });
  }
}

/** Whether `answer`'s question is the query's (`query` up to `questionEnd`), the name in any case. */
function sameQuestion(answer: Buffer, query: Buffer, questionEnd: number): boolean {
  if (answer.length < questionEnd || answer.readUInt16BE(4) !== 1) return false;
  const nameEnd = questionEnd - 4;
  for (let i = HEADER_SIZE; i < questionEnd; i++) {
    let a = answer[i]!;
    let q = query[i]!;
    if (i < nameEnd) {
      if (a >= 0x41 && a <= 0x5a) a |= 0x20;
      if (q >= 0x41 && q <= 0x5a) q |= 0x20;
    }
    if (a !== q) return false;
  }
  return true;
}

export const SharedCacheService = serviceToken<SharedCache>('veil.SharedCache');
