/**
 * The access policy is asked before a TLS handshake (issue 24, the class of finding 5: costly work
 * before the door): a DoT or DoH client that no block admits is closed at accept, with no
 * handshake, while an admitted one is served.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../core/testing/server.js';
import { makeTestCerts, type TestCerts } from './helpers/peers.js';
import { testRegistry } from './helpers/plugins.js';

/** Connects from `localAddress`; resolves 'secure' once the handshake completes, or 'closed'. */
function handshake(port: number, ca: string, localAddress: string, alpn: string[]): Promise<'secure' | 'closed'> {
  return new Promise((resolve) => {
    const socket = tls.connect({ socket: net.connect({ host: '127.0.0.1', port, localAddress }), ca, servername: 'dns.test', ALPNProtocols: alpn });
    socket.on('secureConnect', () => {
      socket.destroy();
      resolve('secure');
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve('closed'));
  });
}

describe('issue 24: TLS listeners ask the access policy before the handshake', () => {
  let certs: TestCerts;
  let ca: string;
  let veil: TestServer;

  before(async () => {
    certs = makeTestCerts();
    ca = readFileSync(certs.ca, 'utf8');
    veil = await startTestServer(
      `. {
  listen tls://127.0.0.1:0 {
    cert ${certs.chain}
    key ${certs.key}
  }
  listen https://127.0.0.1:0/dns-query {
    cert ${certs.chain}
    key ${certs.key}
  }
  acl {
    deny 127.0.0.3
  }
  hosts {
    192.0.2.10 web.veil.test
  }
}`,
      { registry: testRegistry() },
    );
  });
  after(async () => {
    await veil?.stop();
    rmSync(certs.dir, { recursive: true, force: true });
  });

  for (const [scheme, url, alpn] of [
    ['DoT', 'tls://127.0.0.1:0', ['dot']],
    ['DoH', 'https://127.0.0.1:0/dns-query', ['h2']],
  ] as const) {
    it(`issue 24: ${scheme}: a client outside the acl gets no handshake; an admitted one does`, async () => {
      const { port } = veil.address(url);
      assert.equal(await handshake(port, ca, '127.0.0.3', [...alpn]), 'closed');
      assert.equal(await handshake(port, ca, '127.0.0.4', [...alpn]), 'secure');
    });
  }
});
