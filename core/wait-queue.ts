/**
 * Requests waiting their turn for something shared (a stream of an HTTP/2 session, room on a
 * pooled connection), oldest first, at most `limit` of them. One that gives up (its deadline
 * passed) is only marked, and skipped when its turn comes: giving up costs O(1) however many
 * wait. What was given up is swept out once the queue holds twice its limit, so memory stays
 * bounded even when no turn comes at all.
 */
export interface WaitTicket<T> {
  readonly item: T;
  gone: boolean;
}

export class WaitQueue<T> {
  private items: WaitTicket<T>[] = [];
  /** Index of the oldest entry not yet taken. */
  private head = 0;
  private live = 0;

  constructor(private readonly limit: number) {}

  /** Requests waiting (not given up). */
  get size(): number {
    return this.live;
  }

  /** Queues `item`; null when `limit` already wait. */
  push(item: T): WaitTicket<T> | null {
    if (this.live >= this.limit) return null;
    if (this.items.length - this.head >= 2 * this.limit) this.compact();
    const ticket = { item, gone: false };
    this.items.push(ticket);
    this.live++;
    return ticket;
  }

  /** The request gave up: it is skipped when its turn comes. */
  cancel(ticket: WaitTicket<T>): void {
    if (ticket.gone) return;
    ticket.gone = true;
    this.live--;
  }

  /** The oldest request still waiting, taken off the queue; undefined when none waits. */
  shift(): T | undefined {
    while (this.head < this.items.length) {
      const ticket = this.items[this.head++]!;
      if (ticket.gone) continue;
      ticket.gone = true;
      this.live--;
      if (this.head === this.items.length) this.reset();
      return ticket.item;
    }
    this.reset();
    return undefined;
  }

  /** Every request still waiting, oldest first; the queue is left empty. */
  takeAll(): T[] {
    const all = this.items.slice(this.head).filter((t) => !t.gone).map((t) => t.item);
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
