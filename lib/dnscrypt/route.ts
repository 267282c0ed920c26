/**
 * How a DNSCrypt upstream's packets travel: straight to the server, or through an Anonymized
 * DNSCrypt relay. The `dnscrypt` plugin asks the block's router (a service in the block's
 * container) for a route each time it fetches a server's certificate and keeps that route until
 * the next fetch; `anonymize` registers a router that picks relays. Without one, every server is
 * reached directly.
 */
import { serviceToken } from '../../core/services.js';

export interface DnscryptServerInfo {
  /** The upstream's name in the Corefile. */
  name: string;
  /** IP literal and port of the server. */
  host: string;
  port: number;
  providerName: string;
}

export interface RelayAddress {
  name: string;
  host: string;
  port: number;
}

export interface DnscryptRoute {
  /** The relay to go through; null: straight to the server. */
  relay: RelayAddress | null;
  /**
   * When no certificate can be had on this route, leave the server out of the block's
   * candidates until its next certificate refresh (anonymize's `skip_incompatible`).
   */
  skipWhenUnreachable: boolean;
  /**
   * Known to drop fragmented UDP (anonymize's `fragments_blocked`), so relayed queries must
   * stay unfragmented. Servers not known so are probed when their certificate is fetched.
   */
  fragmentsBlocked?: boolean;
}

export interface DnscryptRouter {
  /** The route for the next certificate-refresh period of `server`. */
  route(server: DnscryptServerInfo): DnscryptRoute;
}

export const DIRECT_ROUTE: DnscryptRoute = { relay: null, skipWhenUnreachable: false };

export const directRouter: DnscryptRouter = { route: () => DIRECT_ROUTE };

/** The block container's token for the router; `anonymize` registers its own there. */
export const dnscryptRouterService = serviceToken<DnscryptRouter>('veil.DnscryptRouter');
