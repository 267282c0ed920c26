/**
 * The Corefile lines that say where OpenTelemetry data goes, the same in `trace { … }` and in
 * `metrics { otlp { … } }`: `endpoint URL [insecure]`, `protocol`, `header NAME VALUE`
 * (repeatable), `timeout`. Whatever is not given comes from the OTEL_* environment.
 */
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, parseDuration, type OptionSpec } from '../../core/config/options.js';
import { OTLP_PROTOCOLS, OtlpSettingError, checkGrpcProxy, isHeaderName, resolveOtlpExport, type OtlpExport, type OtlpLines, type OtlpProtocol, type OtlpSignal } from './settings.js';

export class OtlpLinesReader {
  readonly lines: OtlpLines = {};
  private endpointToken: Token | null = null;

  constructor(private readonly plugin: string) {}

  /** The option handlers to merge into the directive's own. */
  get spec(): OptionSpec {
    const plugin = this.plugin;
    return {
      endpoint: (line) => this.endpoint(expectArgs(plugin, line, 1, 2)),
      protocol: (line) => {
        const [token] = expectArgs(plugin, line, 1) as [Token];
        if (!(OTLP_PROTOCOLS as readonly string[]).includes(token.text)) throw configError(plugin, token, `protocol is one of ${OTLP_PROTOCOLS.join(', ')}, not "${token.text}"`);
        this.lines.protocol = token.text as OtlpProtocol;
      },
      header: (line) => {
        const [name, value] = expectArgs(plugin, line, 2) as [Token, Token];
        if (!isHeaderName(name.text)) throw configError(plugin, name, `"${name.text}" is not a header name`);
        if (/[\r\n\0]/.test(value.text)) throw configError(plugin, value, 'a header value is one line');
        (this.lines.headers ??= {})[name.text.toLowerCase()] = value.text;
      },
      timeout: (line) => (this.lines.timeoutMs = parseDuration(plugin, expectArgs(plugin, line, 1)[0]!, { min: 100, max: 60_000 })),
    };
  }

  /** `URL [insecure]`, on an `endpoint` line or on the directive's own line. */
  endpoint(args: Token[]): void {
    const [token, word] = args as [Token, Token | undefined];
    if (word && word.text !== 'insecure') throw configError(this.plugin, word, `unexpected "${word.text}" (the only word allowed after the URL is "insecure")`);
    this.lines.endpoint = token.text;
    this.lines.insecure = word !== undefined;
    this.endpointToken = token;
  }

  /** Every value decided (Corefile over environment); errors at the line at fault, or at `directive` for the environment's. */
  resolve(signal: OtlpSignal, directive: Directive): OtlpExport {
    try {
      const target = resolveOtlpExport(signal, this.lines);
      if (target.protocol === 'grpc') checkGrpcProxy(target.url);
      return target;
    } catch (err) {
      if (!(err instanceof OtlpSettingError)) throw err;
      throw configError(this.plugin, err.where === 'corefile' ? (this.endpointToken ?? directive.name) : directive.name, err.message);
    }
  }
}

/** The Corefile's line names, for did-you-mean and for what is repeatable. */
export const OTLP_REPEATABLE = ['header'];

/** `service NAME`: the `service.name` of what is exported. */
export function parseServiceName(plugin: string, token: Token): string {
  if (!/^[\x21-\x7e]{1,128}$/.test(token.text)) throw configError(plugin, token, 'a service name is 1 to 128 printable characters without spaces');
  return token.text;
}
