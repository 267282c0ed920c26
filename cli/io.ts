/** Where a CLI command writes: stdout and stderr, swapped for arrays in tests. */
export interface CommandIo {
  out(line: string): void;
  err(line: string): void;
}

export const processIo: CommandIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** A mistake in the command line: printed with the usage, exit status 2. */
export class UsageError extends Error {}
