/**
 * The ODoH roles a DoH listener may take (lib/odoh does the protocol): `odoh_target` on its
 * path and at /.well-known/odohconfigs, or `odoh_relay` on its path. This module gives the
 * relay its HTTPS client: lib/https-client's connection pool, one per allowed target, reaching
 * the target at the addresses the allowlist gives and leaving from the listener's own address.
 */
import net from 'node:net';
import { ListenError } from '../../../core/errors.js';
import type { ListenerEnvironment, QueryHandler } from '../../../core/listeners/listener.js';
import type { Endpoint } from '../../../core/net/address.js';
import { HttpsConnections } from '../../../lib/https-client/connections.js';
import { TlsContextsService } from '../../../lib/tls/contexts.js';
import { MAX_MESSAGE_BYTES, OBLIVIOUS_MEDIA_TYPE } from '../../../lib/odoh/message.js';
import { OdohRelayService, type RelayForwarder, type TargetRequest } from '../../../lib/odoh/relay.js';
import type { OdohRelayOptions, RelayTarget } from '../../../lib/odoh/server-options.js';
import { TargetAddressBook } from '../../../lib/odoh/target-addresses.js';
import { OdohTargetService } from '../../../lib/odoh/target.js';
import type { DohListenerOptions } from './options.js';

export class ObliviousRoles {
  target: OdohTargetService | null = null;
  relay: OdohRelayService | null = null;
  private addresses: TargetAddressBook | null = null;
  /** The listener's query handler: a relay finds listed targets' addresses through its own block. */
  private handler: (() => QueryHandler) | null = null;

  constructor(
    private readonly endpoint: Endpoint,
    options: DohListenerOptions,
    private readonly env: ListenerEnvironment,
  ) {
    if (options.odohTarget) this.target = new OdohTargetService(options.odohTarget, env.logger, endpoint.text);
    if (options.odohRelay) {
      this.addresses = new TargetAddressBook(() => this.handler!(), options.odohRelay.allowPrivate);
      this.relay = new OdohRelayService(options.odohRelay, this.forwarder(options.odohRelay), (host) => this.addresses!.addresses(host));
    }
  }

  /** Makes the target's first key before the listener takes requests. */
  async start(options: DohListenerOptions, handler: () => QueryHandler): Promise<void> {
    this.handler = handler;
    // Workers share the port: each with keys of its own would refuse the clients of the others.
    if (options.odohTarget && !options.odohTarget.seed && this.env.reusePort) {
      throw new ListenError(`${this.endpoint.text}: odoh_target in several workers needs a key file they share (veil odoh keygen): keys made at start differ in each`);
    }
    await this.target?.start();
  }

  /** A reload: new keys or rotation, a new allowlist. A role cannot be added or removed without a restart. */
  async update(options: DohListenerOptions): Promise<void> {
    if (!options.odohTarget !== !this.target || !options.odohRelay !== !this.relay) {
      this.env.logger.warn(`${this.endpoint.text}: an ODoH role added or removed takes effect after a restart`);
    }
    if (this.target && options.odohTarget) await this.target.update(options.odohTarget);
    if (this.relay && options.odohRelay) {
      this.addresses = new TargetAddressBook(() => this.handler!(), options.odohRelay.allowPrivate);
      this.relay.update(options.odohRelay, this.forwarder(options.odohRelay));
    }
  }

  stop(): void {
    this.target?.stop();
    this.relay?.stop();
  }

  private forwarder(options: OdohRelayOptions): RelayForwarder {
    return new PooledForwarder(options, this.env, this.localAddress());
  }

  /** The relay leaves from the address it listens on, unless that is a wildcard. */
  private localAddress(): string | undefined {
    const host = this.endpoint.host;
    return host === '0.0.0.0' || host === '::' || net.isIP(host) === 0 ? undefined : host;
  }
}

class PooledForwarder implements RelayForwarder {
  private readonly pools = new Map<string, HttpsConnections>();

  constructor(
    private readonly options: OdohRelayOptions,
    private readonly env: ListenerEnvironment,
    private readonly localAddress: string | undefined,
  ) {}

  async send(target: RelayTarget, request: TargetRequest, timeoutMs: number): Promise<{ body: Buffer; cacheControl?: string }> {
    // Keyed by addresses too: a listed target's addresses change with its DNS answers.
    const key = `${target.authority} ${target.addresses.join(' ')}`;
    let pool = this.pools.get(key);
    if (!pool) {
      const sameFamily = this.localAddress !== undefined && target.addresses.every((a) => net.isIPv6(a) === net.isIPv6(this.localAddress!));
      pool = new HttpsConnections({
        name: `odoh relay to ${target.authority}`,
        label: `https://${target.authority}`,
        authority: target.authority,
        identity: { serverName: target.host, extraCa: this.options.extraCa, pins: [], certHashes: [] },
        addresses: target.addresses,
        port: target.port,
        pool: 1,
        logger: this.env.logger,
        tls: this.env.service(TlsContextsService),
        ...(sameFamily ? { localAddress: this.localAddress } : {}),
      });
      // Bounded: a target whose addresses changed leaves its old pool, closed, behind.
      for (const [other, old] of this.pools) {
        if (other.startsWith(`${target.authority} `)) {
          old.close();
          this.pools.delete(other);
        }
      }
      this.pools.set(key, pool);
    }
    let cacheControl: string | undefined;
    const onHeaders = (header: (name: string) => string | undefined): void => {
      cacheControl = header('cache-control');
    };
    const body = await pool.request({ ...request, mediaType: OBLIVIOUS_MEDIA_TYPE, anyType: request.method === 'GET', maxBytes: MAX_MESSAGE_BYTES, onHeaders }, timeoutMs);
    return cacheControl === undefined ? { body } : { body, cacheControl };
  }

  close(): void {
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
  }
}
