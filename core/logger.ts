/**
 * The logger service. Lines go to stderr as `[LEVEL] source: message`, the way CoreDNS prints
 * them; plugins get a child whose source is `plugin/NAME`.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export abstract class Logger {
  abstract write(level: LogLevel, message: string): void;
  abstract child(source: string): Logger;

  debug(message: string): void {
    this.write('debug', message);
  }
  info(message: string): void {
    this.write('info', message);
  }
  warn(message: string): void {
    this.write('warn', message);
  }
  error(message: string): void {
    this.write('error', message);
  }
}

export interface LogSink {
  write(line: string): unknown;
}

export class StreamLogger extends Logger {
  constructor(
    private readonly sink: LogSink = process.stderr,
    private readonly minimum: LogLevel = 'info',
    private readonly source = '',
    /** Written before every line of this logger and its children (`worker 2: `). */
    private readonly prefix = '',
  ) {
    super();
  }

  write(level: LogLevel, message: string): void {
    if (RANK[level] < RANK[this.minimum]) return;
    this.sink.write(`${this.prefix}[${level.toUpperCase()}] ${this.source ? `${this.source}: ` : ''}${message}\n`);
  }

  child(source: string): Logger {
    return new StreamLogger(this.sink, this.minimum, source, this.prefix);
  }
}

/** Keeps lines in memory; for tests. */
export class MemoryLogger extends Logger {
  constructor(
    readonly lines: string[] = [],
    private readonly source = '',
  ) {
    super();
  }

  write(level: LogLevel, message: string): void {
    this.lines.push(`[${level.toUpperCase()}] ${this.source ? `${this.source}: ` : ''}${message}`);
  }

  child(source: string): Logger {
    return new MemoryLogger(this.lines, source);
  }
}
