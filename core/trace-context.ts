/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` a DoH caller may
 * send, read strictly, and the one a DoH or ODoH upstream may send (`traceparentHeader`). Kept
 * free of OpenTelemetry imports so that the transports can use it whether or not tracing is on.
 */

export interface Traceparent {
  /** 32 lower-case hex digits, not all zero. */
  traceId: string;
  /** The caller's span: 16 lower-case hex digits, not all zero. */
  parentId: string;
  /** Bit 0: the caller sampled this trace. */
  flags: number;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/**
 * `00-<trace-id>-<parent-id>-<flags>`; null for anything else. Version ff is invalid; a later
 * version may carry more after a dash, version 00 may not.
 */
export function parseTraceparent(header: string): Traceparent | null {
  const m = TRACEPARENT.exec(header.trim());
  if (!m) return null;
  const [, version, traceId, parentId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return null;
  if (traceId === ZERO_TRACE || parentId === ZERO_SPAN) return null;
  return { traceId, parentId, flags: parseInt(flags, 16) };
}

/** The OpenTelemetry TraceState shape, without importing it. */
export interface TraceStateLike {
  get(key: string): string | undefined;
  set(key: string, value: string): TraceStateLike;
  unset(key: string): TraceStateLike;
  serialize(): string;
}

const TRACESTATE_KEY = /^(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})$/;
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
const MAX_TRACESTATE_MEMBERS = 32;

/** `key=value,…` kept as the caller sent it, with malformed members left out (as the spec allows). */
export function parseTracestate(header: string): TraceStateLike | undefined {
  const entries: Array<[string, string]> = [];
  for (const member of header.split(',')) {
    const text = member.trim();
    if (text === '') continue;
    const eq = text.indexOf('=');
    if (eq <= 0) continue;
    const key = text.slice(0, eq);
    const value = text.slice(eq + 1);
    if (!TRACESTATE_KEY.test(key) || !TRACESTATE_VALUE.test(value) || entries.some(([k]) => k === key)) continue;
    entries.push([key, value]);
    if (entries.length === MAX_TRACESTATE_MEMBERS) break;
  }
  return entries.length === 0 ? undefined : new TraceState(entries);
}

class TraceState implements TraceStateLike {
  constructor(private readonly entries: ReadonlyArray<[string, string]>) {}
  get(key: string): string | undefined {
    return this.entries.find(([k]) => k === key)?.[1];
  }
  set(key: string, value: string): TraceStateLike {
    return new TraceState([[key, value], ...this.entries.filter(([k]) => k !== key)].slice(0, MAX_TRACESTATE_MEMBERS) as Array<[string, string]>);
  }
  unset(key: string): TraceStateLike {
    return new TraceState(this.entries.filter(([k]) => k !== key));
  }
  serialize(): string {
    return this.entries.map(([k, v]) => `${k}=${v}`).join(',');
  }
}

/**
 * The `traceparent` (and `tracestate`) naming `span` (an OpenTelemetry span: `ctx.span` while a
 * sampled query runs) as the parent, for an upstream request; undefined when there is none.
 */
export function traceHeadersFor(span: unknown): { traceparent: string; tracestate?: string } | undefined {
  const context = (span as { spanContext?: () => { traceId: string; spanId: string; traceFlags: number; traceState?: { serialize(): string } } } | undefined)?.spanContext?.();
  if (!context) return undefined;
  const traceparent = `00-${context.traceId}-${context.spanId}-${(context.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
  const state = context.traceState?.serialize();
  return state ? { traceparent, tracestate: state } : { traceparent };
}
