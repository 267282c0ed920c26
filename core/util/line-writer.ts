/**
 * Lines to stdout, stderr or a file, batched per event-loop turn (one write for many queries)
 * and bounded: when the destination cannot keep up, lines are dropped and counted rather than
 * queued without end.
 */
import { createWriteStream, type WriteStream } from 'node:fs';

const MAX_QUEUED_LINES = 50_000;

export class LineWriter {
  private queue: string[] = [];
  private scheduled = false;
  private stream: NodeJS.WritableStream;
  private file: WriteStream | null = null;
  private blocked = false;
  dropped = 0;

  /** `stdout`, `stderr`, or a file path (appended to). */
  constructor(readonly destination: string) {
    if (destination === 'stdout') this.stream = process.stdout;
    else if (destination === 'stderr') this.stream = process.stderr;
    else {
      this.file = createWriteStream(destination, { flags: 'a' });
      this.file.on('error', () => {
        this.blocked = true;
      });
      this.stream = this.file;
    }
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
    const ok = this.stream.write(chunk);
    if (!ok && !this.blocked) {
      this.blocked = true;
      this.stream.once('drain', () => {
        this.blocked = false;
      });
    }
  }

  async close(): Promise<void> {
    this.flush();
    if (this.file) await new Promise<void>((resolve) => this.file!.end(() => resolve()));
  }
}
