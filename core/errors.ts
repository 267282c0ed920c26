/**
 * Every error Veil raises on purpose, with a stable code. Match on `err.code`, not on the
 * message. docs/errors.md lists each code with what to do about it; a test keeps the two in
 * step, so a new class here needs a row there.
 */

export interface Location {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
}

export abstract class VeilError extends Error {
  abstract readonly code: string;
}

/** A problem in the configuration, reported as `file:line:col: plugin: message`. */
export class ConfigError extends VeilError {
  override readonly name = 'ConfigError';
  readonly code = 'VEIL_ERR_CONFIG';
  constructor(
    readonly location: Location | null,
    readonly detail: string,
    readonly plugin?: string,
    options?: ErrorOptions,
  ) {
    super(formatConfigMessage(location, detail, plugin), options);
  }
}

function formatConfigMessage(location: Location | null, detail: string, plugin?: string): string {
  const where = location ? `${location.file}:${location.line}:${location.column}: ` : '';
  return `${where}${plugin ? `${plugin}: ` : ''}${detail}`;
}

/** Bytes that are not a valid DNS message (or not the part of one we need). */
export class WireError extends VeilError {
  override readonly name = 'WireError';
  readonly code = 'VEIL_ERR_WIRE';
}

/** An upstream did not answer within the attempt's time or the query's deadline. */
export class UpstreamTimeoutError extends VeilError {
  override readonly name = 'UpstreamTimeoutError';
  readonly code = 'VEIL_ERR_UPSTREAM_TIMEOUT';
}

/** An upstream could not be reached or its connection failed (refused, reset, TLS failure). */
export class UpstreamUnavailableError extends VeilError {
  override readonly name = 'UpstreamUnavailableError';
  readonly code = 'VEIL_ERR_UPSTREAM_UNAVAILABLE';
}

/** An upstream answered with something that is not an acceptable answer to our query. */
export class UpstreamResponseError extends VeilError {
  override readonly name = 'UpstreamResponseError';
  readonly code = 'VEIL_ERR_UPSTREAM_RESPONSE';
}

/** The query's deadline passed before an answer was found. */
export class DeadlineError extends VeilError {
  override readonly name = 'DeadlineError';
  readonly code = 'VEIL_ERR_DEADLINE';
}

/** A listener could not bind its address. */
export class ListenError extends VeilError {
  override readonly name = 'ListenError';
  readonly code = 'VEIL_ERR_LISTEN';
}

/** A plugin failed while serving a query; `plugin` names it and `cause` is what it threw. */
export class PluginError extends VeilError {
  override readonly name = 'PluginError';
  readonly code = 'VEIL_ERR_PLUGIN';
  constructor(
    readonly plugin: string,
    cause: unknown,
  ) {
    super(`plugin/${plugin}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** The list docs/errors.md is checked against. */
export const ERROR_CODES = [
  'VEIL_ERR_CONFIG',
  'VEIL_ERR_WIRE',
  'VEIL_ERR_UPSTREAM_TIMEOUT',
  'VEIL_ERR_UPSTREAM_UNAVAILABLE',
  'VEIL_ERR_UPSTREAM_RESPONSE',
  'VEIL_ERR_DEADLINE',
  'VEIL_ERR_LISTEN',
  'VEIL_ERR_PLUGIN',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];
