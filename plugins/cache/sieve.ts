/**
 * A bounded map that evicts with SIEVE (Zhang et al., NSDI 2024), as dnscrypt-proxy's cache
 * does: a hit only sets a flag, so reads never reorder anything; when full, a hand walks from the
 * oldest entry towards the newest, clearing flags, and evicts the first entry not visited since
 * the hand last passed. Close to LRU's hit ratio, cheaper than LRU on the hit path.
 */
interface Node<V> {
  key: string;
  value: V;
  visited: boolean;
  /** Towards the head (newer). */
  newer: Node<V> | null;
  /** Towards the tail (older). */
  older: Node<V> | null;
}

export class SieveMap<V> {
  private readonly nodes = new Map<string, Node<V>>();
  private head: Node<V> | null = null;
  private tail: Node<V> | null = null;
  private hand: Node<V> | null = null;

  constructor(
    readonly capacity: number,
    private readonly onEvict: () => void = () => {},
  ) {}

  get size(): number {
    return this.nodes.size;
  }

  /** The value, marked as used. */
  get(key: string): V | undefined {
    const node = this.nodes.get(key);
    if (!node) return undefined;
    node.visited = true;
    return node.value;
  }

  set(key: string, value: V): void {
    const existing = this.nodes.get(key);
    if (existing) {
      existing.value = value;
      return;
    }
    if (this.nodes.size >= this.capacity) this.evict();
    const node: Node<V> = { key, value, visited: false, newer: null, older: this.head };
    if (this.head) this.head.newer = node;
    this.head = node;
    this.tail ??= node;
    this.nodes.set(key, node);
  }

  delete(key: string): void {
    const node = this.nodes.get(key);
    if (node) this.unlink(node);
  }

  clear(): void {
    this.nodes.clear();
    this.head = this.tail = this.hand = null;
  }

  private evict(): void {
    let node = this.hand ?? this.tail;
    while (node && node.visited) {
      node.visited = false;
      node = node.newer ?? this.tail;
    }
    if (!node) return;
    this.hand = node.newer;
    this.unlink(node);
    this.onEvict();
  }

  private unlink(node: Node<V>): void {
    if (this.hand === node) this.hand = node.newer;
    if (node.newer) node.newer.older = node.older;
    else this.head = node.older;
    if (node.older) node.older.newer = node.newer;
    else this.tail = node.newer;
    this.nodes.delete(node.key);
  }
}
