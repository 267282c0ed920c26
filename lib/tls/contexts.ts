/**
 * The TLS client contexts of one server (`TlsContextsService` in its root container): the trust
 * anchors read once (Node's bundled roots, NODE_EXTRA_CA_CERTS and the operating system's
 * store), and one secure context per set of extra anchors, since building one parses every
 * root, too slow per connection. Every verified connection Veil opens (DoT, DoH, ODoH, the
 * shared cache's Valkey) takes its context from here.
 */
import tls from 'node:tls';
import { serverService } from '../../core/services.js';

export class TlsContexts {
  private readonly contexts = new Map<string, tls.SecureContext>();
  private anchors: string[] | null = null;

  /** The default anchors (bundled, extra and system roots); read on first use. */
  defaultAnchors(): string[] {
    if (!this.anchors) {
      const anchors = new Set(tls.getCACertificates('default'));
      try {
        for (const pem of tls.getCACertificates('system')) anchors.add(pem);
      } catch {
        // no readable system store: the bundled roots remain
      }
      this.anchors = [...anchors];
    }
    return this.anchors;
  }

  /** A TLS 1.2+ client context trusting the default anchors and `extraCa`. */
  secureContextFor(extraCa: readonly string[]): tls.SecureContext {
    const key = extraCa.join('\n');
    let context = this.contexts.get(key);
    if (!context) {
      context = tls.createSecureContext({ ca: [...this.defaultAnchors(), ...extraCa], minVersion: 'TLSv1.2' });
      this.contexts.set(key, context);
    }
    return context;
  }
}

export const TlsContextsService = serverService('veil.TlsContexts', () => new TlsContexts());
