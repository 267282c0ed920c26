/**
 * Requests waiting their turn for something shared (a stream of an HTTP/2 session, room on a
 * pooled connection), oldest first, at most `limit` of them, each until its deadline. One whose
 * deadline passes is only marked, and skipped when its turn comes: giving up costs O(1) however
 * many wait. What was given up is swept out once the queue holds twice its limit, so memory stays
 * bounded even when no turn comes at all.
 */
interface Ticket<T> {
  readonly item: T;
  gone: boolean;
  timer: NodeJS.Timeout;
}

export class WaitQueue<T> {
  private items: Ticket<T>[] = [];
  /** Index of the oldest entry not yet taken. */
  private head = 0;
  private live = 0;

  constructor(private readonly limit: number) {}

  /** Requests waiting (not given up). */
  get size(): number {
    return this.live;
  }

  /**
   * Queues `item` for at most `timeoutMs`; past it the item leaves the queue and `onTimeout`
   * is told. False (nothing queued) when `limit` already wait.
   */
  push(item: T, timeoutMs: number, onTimeout: (item: T) => void): boolean {
    if (this.live >= this.limit) return false;
    if (this.items.length - this.head >= 2 * this.limit) this.compact();
    const ticket: Ticket<T> = { item, gone: false, timer: undefined as unknown as NodeJS.Timeout };
    ticket.timer = setTimeout(() => {
      ticket.gone = true;
      this.live--;
      onTimeout(item);
    }, Math.max(1, timeoutMs));
    this.items.push(ticket);
    this.live++;
    return true;
  }

  /** The oldest request still waiting, taken off the queue; undefined when none waits. */
  shift(): T | undefined {
    while (this.head < this.items.length) {
      const ticket = this.items[this.head++]!;
      if (ticket.gone) continue;
      clearTimeout(ticket.timer);
      ticket.gone = true;
      this.live--;
      if (this.head === this.items.length) this.reset();
      return ticket.item;
    }
    this.reset();
    return undefined;
  }

  /** Every request still waiting, oldest first; the queue is left empty and no timeout comes. */
  takeAll(): T[] {
    const all: T[] = [];
    for (let i = this.head; i < this.items.length; i++) {
      const ticket = this.items[i]!;
      if (ticket.gone) continue;
      clearTimeout(ticket.timer);
      all.push(ticket.item);
    }
    this.reset();
    return all;
  }

  private reset(): void {
    this.items = [];
    this.head = 0;
    this.live = 0;
  }

  private compact(): void {
    this.items = this.items.slice(this.head).filter((t) => !t.gone);
    this.head = 0;
  }
}
