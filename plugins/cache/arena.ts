/**
 * The bytes of cached answers, kept outside V8's heap.
 *
 * Why: a million answers held as JS strings are ~100 MB that every full garbage collection marks,
 * and V8 lets the old generation grow to a multiple of what is live before it collects again:
 * a server holding 100 MB of entries sat at 530 MB RSS. Bytes in a few large Buffers are one
 * object each to the collector, and the heap limit follows the small rest.
 *
 * How: fixed cells of 32 bytes in slabs of 16,384 cells (512 KiB), made as they are needed. An
 * entry takes as many cells as its length needs, chained through `links` (a file allocation
 * table, as in the old file systems); a typical answer (one or two A records, 60 to 90 bytes)
 * takes two or three. Small cells waste little of each entry (16 bytes on average); each costs
 * 4 bytes of link.
 * Freed cells go on one free list whatever the size of the entry they held, so room left by big
 * answers serves small ones: no size classes to fill up unevenly. The arena does not shrink: its
 * size is the most its owner ever held at once, which the owner's capacity bounds.
 */
import { Buffer } from 'node:buffer';

const CELL = 32;
const SLAB_SHIFT = 14;
const CELLS_PER_SLAB = 1 << SLAB_SHIFT;
const SLAB_MASK = CELLS_PER_SLAB - 1;
/** The end of a chain, and of the free list. */
const NONE = -1;

export class CellArena {
  private slabs: Buffer[] = [];
  /** Per slab, the cell after each of its cells in its chain (an entry's, or the free list), or NONE. */
  private links: Int32Array[] = [];
  private freeHead = NONE;
  private freeCount = 0;

  /** Bytes the arena holds, used or free. */
  get byteSize(): number {
    return this.slabs.length * CELLS_PER_SLAB * CELL;
  }

  /** Stores `source[start, end)` and returns its first cell, the entry's handle. */
  write(source: Buffer, start: number, end: number): number {
    const cells = Math.max(1, Math.ceil((end - start) / CELL));
    while (this.freeCount < cells) this.addSlab();
    const first = this.freeHead;
    let cell = first;
    for (let at = start; ; ) {
      const take = Math.min(CELL, end - at);
      source.copy(this.slabs[cell >>> SLAB_SHIFT]!, (cell & SLAB_MASK) * CELL, at, at + take);
      at += take;
      if (at >= end) break;
      cell = this.nextOf(cell);
    }
    this.freeHead = this.nextOf(cell);
    this.setNext(cell, NONE);
    this.freeCount -= cells;
    return first;
  }

  /** Copies bytes [from, to) of the entry starting at `first` into `target` at `targetStart`. */
  read(first: number, from: number, to: number, target: Buffer, targetStart: number): void {
    let cell = first;
    let cellStart = 0;
    while (cellStart + CELL <= from) {
      cell = this.nextOf(cell);
      cellStart += CELL;
    }
    for (let at = from; at < to; ) {
      const offset = at - cellStart;
      const take = Math.min(CELL - offset, to - at);
      const base = (cell & SLAB_MASK) * CELL;
      this.slabs[cell >>> SLAB_SHIFT]!.copy(target, targetStart + at - from, base + offset, base + offset + take);
      at += take;
      cell = this.nextOf(cell);
      cellStart += CELL;
    }
  }

  /**
   * Whether bytes [from, to) of the entry equal `msg`'s, where the message's ASCII capitals
   * before `foldBefore` count as their lower-case letters (the stored bytes are lower case).
   */
  equalsFolded(first: number, msg: Buffer, from: number, to: number, foldBefore: number): boolean {
    let cell = first;
    let cellStart = 0;
    while (cellStart + CELL <= from) {
      cell = this.nextOf(cell);
      cellStart += CELL;
    }
    let slab = this.slabs[cell >>> SLAB_SHIFT]!;
    let base = (cell & SLAB_MASK) * CELL - cellStart;
    for (let i = from; i < to; i++) {
      if (i - cellStart === CELL) {
        cell = this.nextOf(cell);
        cellStart += CELL;
        slab = this.slabs[cell >>> SLAB_SHIFT]!;
        base = (cell & SLAB_MASK) * CELL - cellStart;
      }
      let c = msg[i]!;
      if (i < foldBefore && c >= 0x41 && c <= 0x5a) c |= 0x20;
      if (slab[base + i] !== c) return false;
    }
    return true;
  }

  /** Gives the entry's cells back. */
  free(first: number): void {
    let last = first;
    let cells = 1;
    while (this.nextOf(last) !== NONE) {
      last = this.nextOf(last);
      cells++;
    }
    this.setNext(last, this.freeHead);
    this.freeHead = first;
    this.freeCount += cells;
  }

  /** Lets every slab go. */
  clear(): void {
    this.slabs = [];
    this.links = [];
    this.freeHead = NONE;
    this.freeCount = 0;
  }

  private nextOf(cell: number): number {
    return this.links[cell >>> SLAB_SHIFT]![cell & SLAB_MASK]!;
  }

  private setNext(cell: number, next: number): void {
    this.links[cell >>> SLAB_SHIFT]![cell & SLAB_MASK] = next;
  }

  private addSlab(): void {
    const firstCell = this.slabs.length * CELLS_PER_SLAB;
    // Uninitialised memory is fine: only bytes written by `write` are ever read.
    this.slabs.push(Buffer.allocUnsafeSlow(CELLS_PER_SLAB * CELL));
    // The new cells, in order, in front of the free list.
    const links = new Int32Array(CELLS_PER_SLAB);
    for (let i = 0; i < CELLS_PER_SLAB - 1; i++) links[i] = firstCell + i + 1;
    links[CELLS_PER_SLAB - 1] = this.freeHead;
    this.links.push(links);
    this.freeHead = firstCell;
    this.freeCount += CELLS_PER_SLAB;
  }
}
