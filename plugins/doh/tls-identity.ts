/**
 * Who a DoH server must prove to be, and opening verified TLS connections to it. The
 * connection always goes to an IP literal; the host name travels only as SNI and is what the
 * certificate is checked against. On top of the CA check (the system's and Node's roots plus
 * `ca FILE`), `pin_sha256` pins a public key and a stamp's hashes pin a certificate: when
 * given, at least one certificate of the chain must match. Nothing is written on a connection
 * before all of this passed.
 */
import { createHash, X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../../core/errors.js';
import { formatHostPort } from '../../core/upstream/connect.js';

export interface TlsIdentity {
  /** The name (or IP) the certificate must be valid for; also SNI when it is a name. */
  hostname: string;
  /** PEM text of extra trusted CAs (`ca FILE`), added to the default roots. */
  extraCa: string | null;
  /** base64 SHA-256 of a SubjectPublicKeyInfo; any certificate in the chain may match. */
  spkiPins: readonly string[];
  /** SHA-256 of a certificate's TBS part (DNS stamps); any certificate in the chain may match. */
  tbsHashes: readonly Buffer[];
}

let defaultRoots: string[] | null = null;

/** Node's bundled roots, NODE_EXTRA_CA_CERTS, and the operating system's store; read once. */
function trustedRoots(): string[] {
  defaultRoots ??= [...new Set([...tls.getCACertificates('default'), ...tls.getCACertificates('system')])];
  return defaultRoots;
}

/** One secure context per upstream: building one parses every root, too slow per connection. */
export function secureContextFor(identity: TlsIdentity): tls.SecureContext {
  const ca = identity.extraCa ? [...trustedRoots(), identity.extraCa] : trustedRoots();
  return tls.createSecureContext({ ca, minVersion: 'TLSv1.2' });
}

/** Checks name, pins and stamp hashes on a chain the CA check already accepted. */
export function checkIdentity(identity: TlsIdentity, leaf: tls.DetailedPeerCertificate): Error | undefined {
  const nameError = tls.checkServerIdentity(identity.hostname, leaf);
  if (nameError) return nameError;
  const chain = chainOf(leaf);
  if (identity.spkiPins.length > 0) {
    const pins = chain.map(spkiPin);
    if (!pins.some((pin) => identity.spkiPins.includes(pin))) {
      return new Error(`no certificate in the chain matches pin_sha256 (the server's key is ${pins[0]})`);
    }
  }
  if (identity.tbsHashes.length > 0) {
    const hashes = chain.map((cert) => createHash('sha256').update(tbsCertificate(cert.raw)).digest());
    if (!hashes.some((h) => identity.tbsHashes.some((want) => want.equals(h)))) {
      return new Error(`no certificate in the chain matches the stamp's hashes (the server's is ${hashes[0]!.toString('hex')})`);
    }
  }
  return undefined;
}

function chainOf(leaf: tls.DetailedPeerCertificate): tls.DetailedPeerCertificate[] {
  const chain: tls.DetailedPeerCertificate[] = [];
  let cert: tls.DetailedPeerCertificate | undefined = leaf;
  // A self-signed root is its own issuer: stop when the chain loops.
  while (cert && cert.raw && !chain.includes(cert) && chain.length < 10) {
    chain.push(cert);
    cert = cert.issuerCertificate;
  }
  return chain;
}

/** RFC 7469 pin: base64 SHA-256 of the DER SubjectPublicKeyInfo. */
export function spkiPin(cert: { raw: Buffer }): string {
  const spki = new X509Certificate(cert.raw).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

/**
 * The `tbsCertificate` element of a DER certificate (`Certificate ::= SEQUENCE { tbsCertificate,
 * signatureAlgorithm, signature }`): what DNS stamps hash.
 */
export function tbsCertificate(der: Buffer): Buffer {
  const outer = readDerHeader(der, 0);
  const inner = readDerHeader(der, outer.contentStart);
  return der.subarray(outer.contentStart, inner.contentStart + inner.length);
}

function readDerHeader(der: Buffer, offset: number): { contentStart: number; length: number } {
  if (der[offset] !== 0x30) throw new Error('certificate is not a DER SEQUENCE');
  const first = der[offset + 1];
  if (first === undefined) throw new Error('certificate is truncated');
  if (first < 0x80) return { contentStart: offset + 2, length: first };
  const count = first & 0x7f;
  if (count === 0 || count > 4 || offset + 2 + count > der.length) throw new Error('certificate has a bad DER length');
  let length = 0;
  for (let i = 0; i < count; i++) length = length * 256 + der[offset + 2 + i]!;
  return { contentStart: offset + 2 + count, length };
}

export interface TlsTarget {
  ip: string;
  port: number;
}

/**
 * Opens a TLS connection to an IP literal and resolves once the handshake is done and the
 * identity checked. `alpn` is offered in order; the caller reads `socket.alpnProtocol`.
 */
export function connectVerified(target: TlsTarget, identity: TlsIdentity, context: tls.SecureContext, alpn: string[], timeoutMs: number): Promise<tls.TLSSocket> {
  const where = formatHostPort(target.ip, target.port);
  if (net.isIP(target.ip) === 0) return Promise.reject(new UpstreamUnavailableError(`refusing to connect to "${target.ip}": not an IP address`));
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: target.ip,
      port: target.port,
      // SNI carries names only (RFC 6066): for an IP the certificate is checked against the IP.
      ...(net.isIP(identity.hostname) === 0 ? { servername: identity.hostname } : {}),
      secureContext: context,
      ALPNProtocols: alpn,
      rejectUnauthorized: true,
      // Runs inside the handshake's completion, before 'secureConnect': a failure destroys the
      // socket before a byte of DNS is written.
      checkServerIdentity: (_host, cert) => checkIdentity(identity, cert as tls.DetailedPeerCertificate),
      lookup: refuseLookup,
    });
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new UpstreamTimeoutError(`${where}: TLS connection not ready within ${Math.round(timeoutMs)}ms`));
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      if (!socket.authorized) {
        socket.destroy();
        reject(new UpstreamUnavailableError(`${where}: certificate not trusted: ${String(socket.authorizationError)}`));
        return;
      }
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new UpstreamUnavailableError(`${where}: ${describeTlsError(err)}`, { cause: err }));
    });
  });
}

/** Passed as `lookup` so that a host name reaching net.connect fails instead of leaking. */
const refuseLookup: net.LookupFunction = (hostname, _options, callback) => {
  callback(new Error(`refusing to resolve "${hostname}" through the system resolver`), '', 0);
};

function describeTlsError(err: Error & { code?: string }): string {
  if (err.code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `certificate is not valid for the server's name: ${err.message}`;
  if (err.code && /CERT|SELF_SIGNED|UNABLE_TO/.test(err.code)) return `certificate not trusted (${err.code}): ${err.message}`;
  return err.message;
}
