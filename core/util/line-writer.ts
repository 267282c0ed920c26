/**
 * Lines to stdout, stderr or a file, batched per event-loop turn (one write for many queries)
 * and bounded: when the destination cannot keep up, lines are dropped and counted rather than
 * queued without end. A file may rotate by size: when a batch would take it past `maxBytes`,
 * FILE becomes FILE.1 (FILE.1 becomes FILE.2, …, the oldest beyond `keep` is removed) and a
 * new FILE is opened, as dnscrypt-proxy's logs (and logrotate's `size`) do.
 */
import { Buffer } from 'node:buffer';
import { createWriteStream, renameSync, rmSync, statSync, type WriteStream } from 'node:fs';

const MAX_QUEUED_LINES = 50_000;

export interface RotationOptions {
  /** Rotate before the file would pass this many bytes. */
  maxBytes: number;
  /** Rotated files kept (FILE.1 … FILE.keep). */
  keep: number;
}

export class LineWriter {
  private queue: string[] = [];
  private scheduled = false;
  private stream: NodeJS.WritableStream;
  private file: WriteStream | null = null;
  private blocked = false;
  /** Bytes in the current file (when rotating). */
  private size = 0;
  dropped = 0;

  /** `stdout`, `stderr`, or a file path (appended to). */
  constructor(
    readonly destination: string,
    private readonly rotation: RotationOptions | null = null,
  ) {
    if (destination === 'stdout') this.stream = process.stdout;
    else if (destination === 'stderr') this.stream = process.stderr;
    else this.stream = this.openFile();
  }

  private openFile(): WriteStream {
    const file = createWriteStream(this.destination, { flags: 'a' });
    file.on('error', () => {
      this.blocked = true;
    });
    try {
      this.size = statSync(this.destination).size;
    } catch {
      this.size = 0;
    }
    this.file = file;
    return file;
  }

  write(line: string): void {
    if (this.queue.length >= MAX_QUEUED_LINES || (this.blocked && this.queue.length > 0)) {
      this.dropped++;
      return;
    }
    this.queue.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.queue.length === 0) return;
    const chunk = this.queue.join('\n') + '\n';
    this.queue = [];
    if (this.rotation && this.file) {
      const bytes = Buffer.byteLength(chunk);
      if (this.size > 0 && this.size + bytes > this.rotation.maxBytes) this.rotate();
      this.size += bytes;
    }
    const ok = this.stream.write(chunk);
    if (!ok && !this.blocked) {
      this.blocked = true;
      this.stream.once('drain', () => {
        this.blocked = false;
      });
    }
  }

  /** FILE → FILE.1 → … → FILE.keep (dropped); a new FILE. Writes still pending on the old stream land in FILE.1. */
  private rotate(): void {
    const { keep } = this.rotation!;
    const old = this.file!;
    try {
      rmSync(`${this.destination}.${keep}`, { force: true });
      for (let i = keep - 1; i >= 1; i--) {
        try {
          renameSync(`${this.destination}.${i}`, `${this.destination}.${i + 1}`);
        } catch {
          // not there yet
        }
      }
      renameSync(this.destination, `${this.destination}.1`);
    } catch {
      // Could not rotate (the file was removed, or the folder is read-only): keep appending.
      return;
    }
    old.end();
    this.blocked = false;
    this.stream = this.openFile();
  }

  async close(): Promise<void> {
    this.flush();
    if (this.file) await new Promise<void>((resolve) => this.file!.end(() => resolve()));
  }
}
