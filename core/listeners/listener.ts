/**
 * Listeners are transports registered by URL scheme. Core brings `udp` and `tcp`; plugins add
 * `tls`, `https`, `dnscrypt`, `relay` the same way. A listener turns bytes from clients into
 * calls to a `QueryHandler` and writes back what it returns.
 */
import type { Directive } from '../config/ast.js';
import type { Clock } from '../clock.js';
import type { ClientAddress, RemoteTrace, TransportName } from '../context.js';
import type { Location } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Endpoint } from '../net/address.js';
import type { ServerServiceToken } from '../services.js';

export interface QueryInfo {
  client: ClientAddress;
  transport: TransportName;
  /** True when the answer goes back in one datagram: the dispatcher truncates to fit. */
  datagram: boolean;
  /**
   * For datagram transports that add their own overhead (DNSCrypt): the most bytes the DNS
   * answer itself may take. Defaults to the client's EDNS size.
   */
  maxSize?: number;
  /** What `QueryHandler.admitClient` found, when the listener asked it: the query pays no second token. */
  door?: DoorPass;
  /** W3C trace context the client sent with the query (DoH's `traceparent`/`tracestate` headers). */
  remoteTrace?: RemoteTrace;
}

/** Per server block that admits the client: whether it had a rate-limit token for this query. */
export type DoorPass = ReadonlyMap<object, boolean>;

/** Handles one wire query; resolves with the wire answer, or null to send nothing. */
export interface QueryHandler {
  (query: Buffer, info: QueryInfo): Promise<Buffer | null>;
  /**
   * The door's checks that need no question (each block's access policy and rate limit), for a
   * listener that must do costly work before it can read the question (DNSCrypt decrypts): null
   * when no block of the listener would take a query from this client now (counted on
   * `veil:query:rejected`), else the pass to put in the query's `info.door`. Takes a rate-limit
   * token, which the query then does not pay again.
   */
  admitClient?(info: QueryInfo): DoorPass | null;
  /**
   * Whether any block of the listener's access policy admits the client (no rate-limit token is
   * taken), for a listener that would spend a TLS handshake on a connection before any query
   * arrives: a client no block admits is turned away at accept (counted on
   * `veil:query:rejected` as `acl`).
   */
  admitsConnection?(info: QueryInfo): boolean;
}

export interface Listener {
  /** The configured address, e.g. `udp://127.0.0.1:53`; the key listeners are shared by. */
  readonly endpoint: Endpoint;
  /** The bound address (tells the real port when the configuration said 0). */
  readonly boundAddress: string;
  /** Binds and starts serving. Rejects (with ListenError) when the address cannot be bound. */
  start(handler: QueryHandler): Promise<void>;
  /** Swaps the handler (on reload), atomically per query. */
  setHandler(handler: QueryHandler): void;
  /** Applies new options on reload without rebinding. */
  update(options: unknown): void;
  /** Stops accepting, lets queries in flight finish for up to `graceMs`, then closes. */
  stop(graceMs: number): Promise<void>;
}

export interface ListenerEnvironment {
  logger: Logger;
  clock: Clock;
  /** Bind with SO_REUSEPORT, so several worker processes share the address. */
  reusePort: boolean;
  /** The server's server-wide services (core/services.ts): the TLS contexts an ODoH relay connects with. */
  service<T>(token: ServerServiceToken<T>): T;
}

export interface TransportDefinition<Options = unknown> {
  scheme: string;
  /** Port used when the URL has none. */
  defaultPort: number;
  /** Names this scheme accepts inside `listen … { }`. */
  optionNames: readonly string[];
  /** Parses the options it knows (only those lines are passed) for one address. */
  parseOptions(endpoint: Endpoint, options: Directive[], at: Location): Options;
  create(endpoint: Endpoint, options: Options, env: ListenerEnvironment): Listener;
}

export class TransportRegistry {
  private readonly transports = new Map<string, TransportDefinition>();

  register(definition: TransportDefinition<any>): void {
    if (this.transports.has(definition.scheme)) throw new Error(`listener scheme "${definition.scheme}" is registered twice`);
    this.transports.set(definition.scheme, definition);
  }

  get(scheme: string): TransportDefinition | undefined {
    return this.transports.get(scheme);
  }

  get schemes(): string[] {
    return [...this.transports.keys()];
  }
}

/** A listener a server block asked for (with `listen`, or by default). */
export interface ListenRequest {
  endpoint: Endpoint;
  options: unknown;
  /** Where it was asked for, for conflict messages; null for the default listeners. */
  location: Location | null;
}

/** The listeners one server block asked for. */
export class ListenRequests {
  readonly requests: ListenRequest[] = [];
  add(request: ListenRequest): void {
    this.requests.push(request);
  }
}
