/**
 * The spans of a sampled query:
 *
 *     dns query                      server span, from the trace plugin to the answer
 *       log                          one child per link below, nested as the chain nests
 *         hosts
 *           upstream                 the upstream stage
 *             exchange primary       client span per attempt (from veil:upstream:attempt)
 *             exchange backup
 *
 * `ctx.span` holds the innermost active span while a sampled query runs, so any plugin can add
 * events to it; it stays undefined for every other query.
 */
import { performance } from 'node:perf_hooks';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import type { RequestContext } from '../../core/context.js';
import { rcodeName, typeName } from '../../core/dns/constants.js';
import { rcodeOf } from '../../core/dns/wire.js';
import { upstreamAttempt } from '../../core/events.js';
import type { Logger } from '../../core/logger.js';
import type { Next, Plugin } from '../../core/plugin.js';
import type { Upstream } from '../../core/upstream/upstream.js';
import { parseTraceparent, parseTracestate } from '../../core/trace-context.js';
import { sdkDisabled, startTraceSdk, type TraceSdk } from '../../lib/otel/sdk.js';
import type { OtlpExport, SamplerSetting } from '../../lib/otel/settings.js';
import { veilVersion } from '../../lib/version.js';

export interface TraceOptions {
  export: OtlpExport;
  sampler: SamplerSetting;
  /** The Corefile's `service`; undefined leaves it to the environment (else `veil`). */
  service: string | undefined;
  clientAddress: boolean;
}

type AttemptMessage = Parameters<Parameters<typeof upstreamAttempt.subscribe>[0]>[0];

/** Sampled queries in flight, and the tracer that follows each. */
const tracedQueries = new WeakMap<RequestContext, Tracer>();
let attemptListeners = 0;

/**
 * Every span's start and end, in epoch milliseconds with sub-millisecond precision from one
 * clock: the SDK's own default mixes Date.now() in, which lets a child start before its parent.
 */
function now(): number {
  return performance.timeOrigin + performance.now();
}

function onAttempt(message: AttemptMessage): void {
  const tracer = tracedQueries.get(message.ctx);
  if (tracer) recordAttempt(tracer, message);
}

export class TracePlugin implements Plugin {
  readonly name = 'trace';
  private pipeline: TraceSdk | null = null;
  private tracer: Tracer | null = null;

  constructor(
    private readonly options: TraceOptions,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    if (sdkDisabled()) {
      this.logger.info('OTEL_SDK_DISABLED=true: no spans are recorded');
      return;
    }
    const { export: target, sampler } = this.options;
    this.pipeline = await startTraceSdk({ export: target, service: this.options.service, version: veilVersion(), logger: this.logger });
    this.tracer = this.pipeline.tracer;
    if (attemptListeners++ === 0) upstreamAttempt.subscribe(onAttempt);
    const share = `${Number((sampler.ratio * 100).toPrecision(6))}%`;
    this.logger.info(
      `tracing ${share} of queries${sampler.parentBased ? " (a DoH caller's traceparent decides for its own)" : ''} to ${target.url} over ${target.protocol} (${target.source}; sampler: ${sampler.source})`,
    );
  }

  async stop(): Promise<void> {
    if (!this.pipeline) return;
    this.tracer = null;
    if (--attemptListeners === 0) upstreamAttempt.unsubscribe(onAttempt);
    const pipeline = this.pipeline;
    this.pipeline = null;
    await pipeline.shutdown();
  }

  /**
   * Every link after trace gets a span when its query is sampled; the outermost one also
   * decides whether a query is sampled, and opens its server span. The trace plugin has no
   * `serve` of its own: an unsampled query pays a random number and a comparison per link.
   */
  wrapLink(name: string, link: Next, outermost: boolean): Next {
    const traced: Next = (ctx) => (ctx.span === undefined ? link(ctx) : this.traceLink(name, link, ctx));
    if (!outermost) return traced;
    const { ratio, parentBased } = this.options.sampler;
    return (ctx) => {
      if (this.tracer === null) return link(ctx);
      // A caller's trace context: continued when sampled, and it decides for parent-based samplers.
      const parent = ctx.remoteTrace === undefined ? undefined : remoteParent(ctx);
      const sampled = parent !== undefined && parentBased ? parent.sampled : Math.random() < ratio; // `<`: 0 never, 1 always
      return sampled ? this.serveSampled(ctx, traced, name, this.tracer, parent?.context ?? ROOT_CONTEXT) : link(ctx);
    };
  }

  /** The server span of a sampled query, around the outermost link (`first`). */
  private async serveSampled(ctx: RequestContext, next: Next, first: string, tracer: Tracer, parent: Context): Promise<Buffer | null> {
    const attributes: Attributes = {
      'dns.question.name': presentationName(ctx.name),
      'dns.question.type': typeName(ctx.type),
      'network.transport': ctx.datagram ? 'udp' : 'tcp',
      'veil.transport': ctx.transport,
      'veil.server': ctx.server,
      'veil.zone': ctx.zone,
    };
    if (this.options.clientAddress) {
      attributes['client.address'] = ctx.client.address;
      attributes['client.port'] = ctx.client.port;
    }
    const span = tracer.startSpan('dns query', { kind: SpanKind.SERVER, attributes, startTime: now() }, parent);
    const outer = ctx.span;
    ctx.span = span;
    tracedQueries.set(ctx, tracer);
    try {
      const response = await next(ctx);
      span.setAttribute('dns.response.code', response ? rcodeName(rcodeOf(response)) : 'DROPPED');
      // The chain notes who answered outside the outermost link: unset, it was that link.
      span.setAttribute('veil.answered_by', ctx.meta.answeredBy ?? first);
      return response;
    } catch (error) {
      span.setAttribute('dns.response.code', 'SERVFAIL');
      failed(span, error);
      throw error;
    } finally {
      const meta = ctx.meta;
      span.setAttribute('veil.cache.hit', meta.cacheHit === true);
      span.setAttribute('veil.blocked', meta.blockedBy !== undefined);
      if (meta.blockedBy !== undefined) span.setAttribute('veil.blocked_by', meta.blockedBy);
      if (meta.upstream !== undefined) span.setAttribute('veil.upstream', meta.upstream);
      if (meta.attempts !== undefined) span.setAttribute('veil.upstream.attempts', meta.attempts);
      tracedQueries.delete(ctx);
      ctx.span = outer;
      span.end(now());
    }
  }

  private async traceLink(name: string, link: Next, ctx: RequestContext): Promise<Buffer | null> {
    const parent = ctx.span!;
    const tracer = tracedQueries.get(ctx);
    if (!tracer) return link(ctx);
    const span = tracer.startSpan(name, { attributes: { 'veil.plugin': name }, startTime: now() }, trace.setSpan(ROOT_CONTEXT, parent));
    ctx.span = span;
    try {
      const response = await link(ctx);
      // The chain notes who answered only above this wrapper: unset here means this link did.
      span.setAttribute('veil.answered', ctx.meta.answeredBy === undefined);
      return response;
    } catch (error) {
      failed(span, error);
      throw error;
    } finally {
      ctx.span = parent;
      span.end(now());
    }
  }
}

/** The caller's span as the parent of ours, and whether the caller sampled it; undefined when malformed. */
function remoteParent(ctx: RequestContext): { context: Context; sampled: boolean } | undefined {
  const parsed = parseTraceparent(ctx.remoteTrace!.traceparent);
  if (!parsed) return undefined;
  const traceState = ctx.remoteTrace!.tracestate === undefined ? undefined : parseTracestate(ctx.remoteTrace!.tracestate);
  const spanContext = { traceId: parsed.traceId, spanId: parsed.parentId, traceFlags: parsed.flags, isRemote: true, ...(traceState ? { traceState: traceState as NonNullable<SpanContext['traceState']> } : {}) };
  return { context: trace.setSpanContext(ROOT_CONTEXT, spanContext), sampled: (parsed.flags & 1) === 1 };
}

/** One finished attempt, as a client span that began `rttMs` before now. */
function recordAttempt(tracer: Tracer, { ctx, upstream, attempt, ok, rttMs, rcode, error }: AttemptMessage): void {
  const end = now();
  const attributes: Attributes = {
    ...serverAddress(upstream),
    'network.protocol.name': 'dns',
    'veil.upstream': upstream.name,
    'veil.upstream.protocol': upstream.protocol,
    'veil.attempt': attempt,
  };
  if (ctx.meta.relay !== undefined) attributes['veil.relay'] = ctx.meta.relay;
  if (rcode !== undefined) attributes['dns.response.code'] = rcodeName(rcode);
  const parent = trace.setSpan(ROOT_CONTEXT, ctx.span!);
  const span = tracer.startSpan(`exchange ${upstream.name}`, { kind: SpanKind.CLIENT, attributes, startTime: end - rttMs }, parent);
  if (error !== undefined) failed(span, error);
  else if (!ok) span.setStatus({ code: SpanStatusCode.ERROR, message: `answered ${rcodeName(rcode ?? 0)}` });
  span.end(end);
}

function failed(span: Span, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  span.recordException(error instanceof Error ? error : message);
}

/** `server.address`/`server.port` from `IP:PORT`, `[IPv6]:PORT` or a URL; else the text as is. */
function serverAddress(upstream: Upstream): Attributes {
  const text = upstream.address;
  const hostPort = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:/[\]]+):(\d+)$/.exec(text);
  if (hostPort) return { 'server.address': hostPort[1]!, 'server.port': Number(hostPort[2]) };
  try {
    const url = new URL(text);
    const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : undefined;
    return port === undefined ? { 'server.address': url.hostname } : { 'server.address': url.hostname.replace(/^\[|\]$/g, ''), 'server.port': port };
  } catch {
    return { 'server.address': text };
  }
}

/** OpenTelemetry writes names without the final dot; the root stays `.`. */
function presentationName(name: string): string {
  return name.length > 1 && name.endsWith('.') ? name.slice(0, -1) : name;
}
