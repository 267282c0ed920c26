/**
 * The fleet: Veil instances that share one cache (cache's `shared` level) and hear each other
 * through it. The cache offers this service in its block's container when it shares; other
 * plugins of the block (filter) use it when it is there. Each instance has its own id and never
 * hears its own messages.
 */
import { serviceToken } from './services.js';

export type FleetMessage =
  /** Drop cached answers: every one (`name` null), or those of one name. */
  | { kind: 'flush'; name: string | null }
  /** An instance reloaded a changed list: the others check theirs now. */
  | { kind: 'lists' };

export interface Fleet {
  /** Tells the other instances; quietly does nothing while the shared cache is unreachable. */
  announce(message: FleetMessage): void;
  /** Calls `listener` with each message another instance sends; returns how to stop. */
  listen(listener: (message: FleetMessage) => void): () => void;
}

export const FleetService = serviceToken<Fleet>('veil.Fleet');
