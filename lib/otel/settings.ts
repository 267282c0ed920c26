/**
 * Where OpenTelemetry data goes, decided the way OpenTelemetry's users expect: the standard
 * `OTEL_EXPORTER_OTLP_*` environment, overridden line by line by the Corefile. Pure (reads the
 * environment given, opens nothing), so `veil check` reports every mistake, the environment's
 * included, before anything starts.
 *
 * Two rules of Veil's hold whatever the source: the collector is an IP address (Veil never asks
 * the system resolver for a name), and telemetry carries the names queried, so plaintext
 * (`http://`, gRPC without TLS) goes only to loopback or a private network unless the Corefile
 * line ends with `insecure` or the environment says `OTEL_EXPORTER_OTLP_INSECURE=true`.
 */
import net from 'node:net';
import { AddressError, isPrivateAddress, parseEndpoint } from '../../core/net/address.js';

export type OtlpSignal = 'traces' | 'metrics';
export type OtlpProtocol = 'grpc' | 'http/protobuf' | 'http/json';
export const OTLP_PROTOCOLS: readonly OtlpProtocol[] = ['grpc', 'http/protobuf', 'http/json'];

export const OTLP_GRPC_PORT = 4317;
export const OTLP_HTTP_PORT = 4318;

/** What the Corefile said; each field left undefined falls back to the environment. */
export interface OtlpLines {
  endpoint?: string;
  /** `insecure` after the endpoint. */
  insecure?: boolean;
  protocol?: OtlpProtocol;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** Where and how the exporter sends, every value decided. */
export interface OtlpExport {
  protocol: OtlpProtocol;
  /** A URL whose host is an IP: `http://127.0.0.1:4318/v1/traces`, `https://[::1]:4317`. */
  url: string;
  /** Headers (HTTP) or metadata (gRPC) from the Corefile; the exporter adds the environment's. */
  headers: Record<string, string>;
  /** How long one export may take, retries included: the Corefile's, else `OTEL_EXPORTER_OTLP_(SIGNAL_)TIMEOUT`, else 10 s. */
  timeoutMs: number;
  /** Where each decided value came from, for the start-up line. */
  source: string;
}

/** A mistake in the Corefile (`where: 'corefile'`) or in an environment variable (named). */
export class OtlpSettingError extends Error {
  constructor(
    message: string,
    readonly where: 'corefile' | string,
  ) {
    super(message);
  }
}

/** The specification's default for OTEL_EXPORTER_OTLP_TIMEOUT. */
const DEFAULT_EXPORT_TIMEOUT_MS = 10_000;

const SIGNAL_PATH: Record<OtlpSignal, string> = { traces: '/v1/traces', metrics: '/v1/metrics' };

type Env = Readonly<Record<string, string | undefined>>;

/** The first non-blank of the signal's own variable and the shared one, with its name. */
function fromEnv(env: Env, signal: OtlpSignal, suffix: string): { name: string; value: string } | undefined {
  for (const name of [`OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_${suffix}`, `OTEL_EXPORTER_OTLP_${suffix}`]) {
    const value = env[name]?.trim();
    if (value) return { name, value };
  }
  return undefined;
}

export function resolveOtlpExport(signal: OtlpSignal, lines: OtlpLines, env: Env = process.env): OtlpExport {
  const sources: string[] = [];
  let protocol: OtlpProtocol;
  if (lines.protocol) {
    protocol = lines.protocol;
  } else {
    const given = fromEnv(env, signal, 'PROTOCOL');
    if (given && !(OTLP_PROTOCOLS as readonly string[]).includes(given.value)) {
      throw new OtlpSettingError(`${given.name}="${given.value}" is not an OTLP protocol (one of ${OTLP_PROTOCOLS.join(', ')})`, given.name);
    }
    // The OpenTelemetry specification's default.
    protocol = (given?.value as OtlpProtocol | undefined) ?? 'http/protobuf';
    if (given) sources.push(given.name);
  }
  const grpc = protocol === 'grpc';
  const defaultPort = grpc ? OTLP_GRPC_PORT : OTLP_HTTP_PORT;

  let url: string;
  let plaintextAllowed: boolean;
  if (lines.endpoint !== undefined) {
    url = normalizeUrl(lines.endpoint, signal, grpc, defaultPort, 'corefile', false);
    plaintextAllowed = lines.insecure === true;
  } else {
    const insecureEnv = fromEnv(env, signal, 'INSECURE');
    plaintextAllowed = insecureEnv?.value.toLowerCase() === 'true';
    const own = env[`OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_ENDPOINT`]?.trim();
    const shared = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
    if (own) {
      // The signal's own variable is the whole URL, path included.
      url = normalizeUrl(own, signal, grpc, defaultPort, `OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_ENDPOINT`, plaintextAllowed, true);
      sources.push(`OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_ENDPOINT`);
    } else if (shared) {
      // The shared one is a base: OTLP/HTTP appends /v1/<signal> to it.
      url = normalizeUrl(shared, signal, grpc, defaultPort, 'OTEL_EXPORTER_OTLP_ENDPOINT', plaintextAllowed, false, true);
      sources.push('OTEL_EXPORTER_OTLP_ENDPOINT');
    } else {
      url = grpc ? `http://127.0.0.1:${OTLP_GRPC_PORT}` : `http://127.0.0.1:${OTLP_HTTP_PORT}${SIGNAL_PATH[signal]}`;
    }
  }
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  if (url.startsWith('http://') && !plaintextAllowed && !isPrivateAddress(host)) {
    const where = lines.endpoint !== undefined ? 'corefile' : sources.find((s) => s.endsWith('ENDPOINT')) ?? 'corefile';
    const consent = where === 'corefile' ? 'end the endpoint line with "insecure"' : 'set OTEL_EXPORTER_OTLP_INSECURE=true';
    throw new OtlpSettingError(
      `${where === 'corefile' ? '' : `${where}: `}${host} is not on loopback or a private network (10/8, 172.16/12, 192.168/16, fc00::/7): telemetry carries the names queried, and ${grpc ? 'gRPC without TLS' : 'http://'} would send them in plaintext. Use https://, or ${consent} if plaintext is what you want`,
      where,
    );
  }
  let timeoutMs = lines.timeoutMs;
  if (timeoutMs === undefined) {
    const given = fromEnv(env, signal, 'TIMEOUT');
    if (given && !(/^\d+$/.test(given.value) && Number(given.value) > 0)) throw new OtlpSettingError(`${given.name}="${given.value}" is not a number of milliseconds`, given.name);
    timeoutMs = given ? Number(given.value) : DEFAULT_EXPORT_TIMEOUT_MS;
  }
  return { protocol, url, headers: lines.headers ?? {}, timeoutMs, source: sources.length ? sources.join(', ') : 'Corefile and defaults' };
}

/**
 * An endpoint as the exporter will use it: `scheme://IP:PORT/path`, never a name. gRPC ignores
 * the path; OTLP/HTTP gets `/v1/<signal>` when the path is empty (or always, for the shared
 * variable, which is a base URL). A gRPC endpoint without a scheme is TLS unless insecure.
 */
function normalizeUrl(text: string, signal: OtlpSignal, grpc: boolean, defaultPort: number, where: string, insecure: boolean, exact = false, base = false): string {
  const prefix = where === 'corefile' ? '' : `${where}="${text}": `;
  let withScheme = text;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    if (!grpc) throw new OtlpSettingError(`${prefix}an OTLP/HTTP endpoint starts with http:// or https://`, where);
    withScheme = `${insecure ? 'http' : 'https'}://${text}`;
  }
  let endpoint;
  try {
    endpoint = parseEndpoint(withScheme, defaultPort);
  } catch (err) {
    if (err instanceof AddressError) throw new OtlpSettingError(`${prefix}${err.message}; the endpoint is a URL such as http://127.0.0.1:${defaultPort}${grpc ? '' : SIGNAL_PATH[signal]}`, where);
    throw err;
  }
  if (endpoint.scheme !== 'http' && endpoint.scheme !== 'https') {
    throw new OtlpSettingError(`${prefix}the endpoint is http:// or https://, not ${endpoint.scheme}://`, where);
  }
  const host = net.isIPv6(endpoint.host) ? `[${endpoint.host}]` : endpoint.host;
  const origin = `${endpoint.scheme}://${host}:${endpoint.port}`;
  if (grpc) return origin;
  const path = endpoint.path.replace(/\/+$/, '');
  if (base) return `${origin}${path}${SIGNAL_PATH[signal]}`;
  if (exact) return `${origin}${endpoint.path || '/'}`;
  return `${origin}${path === '' ? SIGNAL_PATH[signal] : endpoint.path}`;
}

/**
 * gRPC honours `grpc_proxy`, `https_proxy` and `http_proxy`: through a proxy the export would
 * leave by another way, and the proxy's name would be looked up. Refused unless the collector
 * is excluded (`no_grpc_proxy` or `no_proxy` naming its IP, or `*`).
 */
export function checkGrpcProxy(url: string, env: Env = process.env): void {
  const proxy = ['grpc_proxy', 'https_proxy', 'http_proxy'].find((name) => env[name]?.trim());
  if (!proxy) return;
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  const excluded = (env.no_grpc_proxy ?? env.no_proxy ?? '').split(',').map((s) => s.trim());
  if (excluded.includes('*') || excluded.includes(host)) return;
  throw new OtlpSettingError(`${proxy} is set: the gRPC exporter would send through that proxy. Unset it, or add ${host} to no_grpc_proxy`, proxy);
}

/** An HTTP header name (RFC 9110 token): gRPC metadata keys are the same, lower-cased. */
export function isHeaderName(text: string): boolean {
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(text);
}

export interface SamplerSetting {
  /** Share of new traces sampled, 0 to 1. */
  ratio: number;
  /** Follow the sampled flag of a caller's `traceparent` (the parentbased_* samplers). */
  parentBased: boolean;
  source: string;
}

/** Veil traces one query in a hundred unless told otherwise: a DNS server answers many. */
export const DEFAULT_SAMPLE_RATIO = 0.01;

/** `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, as the specification names them. */
export function samplerFromEnv(env: Env = process.env): SamplerSetting {
  const name = env.OTEL_TRACES_SAMPLER?.trim();
  const argText = env.OTEL_TRACES_SAMPLER_ARG?.trim();
  if (!name) return { ratio: DEFAULT_SAMPLE_RATIO, parentBased: true, source: 'default' };
  const ratio = (): number => {
    if (argText === undefined || argText === '') return 1;
    const value = /^(\d+(\.\d*)?|\.\d+)$/.test(argText) ? Number(argText) : NaN;
    if (!(value >= 0 && value <= 1)) throw new OtlpSettingError(`OTEL_TRACES_SAMPLER_ARG="${argText}" is not a ratio from 0 to 1`, 'OTEL_TRACES_SAMPLER_ARG');
    return value;
  };
  const source = `OTEL_TRACES_SAMPLER=${name}`;
  switch (name) {
    case 'always_on':
      return { ratio: 1, parentBased: false, source };
    case 'always_off':
      return { ratio: 0, parentBased: false, source };
    case 'traceidratio':
      return { ratio: ratio(), parentBased: false, source };
    case 'parentbased_always_on':
      return { ratio: 1, parentBased: true, source };
    case 'parentbased_always_off':
      return { ratio: 0, parentBased: true, source };
    case 'parentbased_traceidratio':
      return { ratio: ratio(), parentBased: true, source };
    default:
      throw new OtlpSettingError(
        `OTEL_TRACES_SAMPLER="${name}" is not a sampler Veil knows (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)`,
        'OTEL_TRACES_SAMPLER',
      );
  }
}
