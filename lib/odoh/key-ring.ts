/**
 * The keys a target accepts, and the configs it publishes. The newest key is the only one
 * published; the one before it is still accepted for `overlapMs` after it was replaced, so a
 * client that fetched the configs just before a rotation is not refused.
 *
 * Keys made at start are replaced every `rotateMs`. A key from a file is replaced when a
 * reload brings a different file (the previous one then gets its overlap): a file shared by
 * several processes must not rotate on its own in each of them.
 */
import { performance } from 'node:perf_hooks';
import { Buffer } from 'node:buffer';
import { encodeConfigs } from './configs.js';
import type { TargetKey } from './crypto.js';
import { deriveTargetKey, newSeed } from './keys.js';

export interface KeyRingOptions {
  /** The seed of a key file, or null for keys made (and rotated) here. */
  seed: Buffer | null;
  rotateMs: number;
  overlapMs: number;
}

interface Held {
  key: TargetKey;
  seed: Buffer;
  /** Milliseconds (monotonic) after which the key is refused; Infinity for the newest. */
  until: number;
}

export class TargetKeyRing {
  private held: Held[] = [];
  private published: Buffer = Buffer.alloc(0);
  private nextRotation = Infinity;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private options: KeyRingOptions,
    private readonly now: () => number = () => performance.now(),
    private readonly onRotate: (key: TargetKey) => void = () => {},
  ) {}

  /** Makes (or derives) the first key; the configs are served from then on. */
  async start(): Promise<void> {
    await this.install(this.options.seed ?? newSeed());
    this.schedule();
  }

  /** New options on reload: a different key file replaces the key; a changed rotation reschedules. */
  async update(options: KeyRingOptions): Promise<void> {
    const before = this.options;
    this.options = options;
    const newest = this.held.at(-1);
    if (options.seed && (!newest || !newest.seed.equals(options.seed))) await this.install(options.seed);
    else if (!options.seed && before.seed) await this.install(newSeed());
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** The key a query names, while it is accepted; null otherwise. */
  find(keyId: Buffer): TargetKey | null {
    const now = this.now();
    for (let i = this.held.length - 1; i >= 0; i--) {
      const held = this.held[i]!;
      if (held.key.config.keyId.equals(keyId)) return held.until > now ? held.key : null;
    }
    return null;
  }

  get current(): TargetKey | null {
    return this.held.at(-1)?.key ?? null;
  }

  /** ObliviousDoHConfigs with the newest key. */
  get configs(): Buffer {
    return this.published;
  }

  /** How long clients may keep the configs: until the next rotation (at least a minute). */
  maxAgeSeconds(): number {
    if (this.nextRotation === Infinity) return Math.round(this.options.rotateMs / 1000);
    return Math.max(60, Math.floor((this.nextRotation - this.now()) / 1000));
  }

  /** Replaces the newest key by one from a fresh random seed (also what the schedule does). */
  async rotate(): Promise<void> {
    await this.install(newSeed());
  }

  private async install(seed: Buffer): Promise<void> {
    const key = await deriveTargetKey(seed);
    const now = this.now();
    const previous = this.held.at(-1);
    if (previous) previous.until = now + this.options.overlapMs;
    // At most the newest and the one it replaced (overlap is never longer than rotation).
    this.held = previous ? [previous, { key, seed, until: Infinity }] : [{ key, seed, until: Infinity }];
    this.published = encodeConfigs([key.config.contents]);
    this.onRotate(key);
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || this.options.seed) {
      this.nextRotation = Infinity;
      return;
    }
    this.nextRotation = this.now() + this.options.rotateMs;
    this.timer = setTimeout(() => {
      this.rotate().then(
        () => this.schedule(),
        () => this.schedule(),
      );
    }, this.options.rotateMs);
    this.timer.unref();
  }
}
