/**
 * The foundation's acceptance checks, from outside with dig, against unbound as the origin —
 * two programs nobody here wrote.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freePort, run, skipUnless, startUnboundOrigin, type Peer } from '../helpers/peers.js';
import { startVeil, type VeilProcess } from '../helpers/veil-process.js';

const skip = skipUnless('unbound', 'dig');

describe('veil between dig and unbound', { skip }, () => {
  let origin: Peer;
  let veil: VeilProcess;
  let port: number;
  const dig = (...args: string[]) => run('dig', ['@127.0.0.1', '-p', String(port), '+time=3', '+tries=1', ...args]).stdout;

  before(async () => {
    origin = await startUnboundOrigin();
    // dig talks UDP and TCP to one port
    port = await freePort();
    veil = await startVeil(`. {
    listen udp://127.0.0.1:${port} tcp://127.0.0.1:${port}
    hosts {
        192.0.2.10 web.veil.test
    }
    forward {
        server origin udp://127.0.0.1:${origin.port}
    }
    log
}
`);
  });
  after(async () => {
    await veil?.stop();
    await origin?.stop();
  });

  it('web.veil.test comes from hosts', () => {
    assert.equal(dig('+short', 'web.veil.test').trim(), '192.0.2.10');
  });

  it('other names come from unbound, over UDP and over TCP', () => {
    assert.equal(dig('+short', 'lab.test', 'MX').trim(), '10 mail.lab.test.');
    assert.equal(dig('+short', '+tcp', 'anything.example.').trim(), '203.0.113.1');
    assert.match(dig('x.nx.test'), /status: NXDOMAIN/);
    assert.match(dig('x.refused.test'), /status: REFUSED/);
  });

  it('a 3.4 KB answer: TC to a UDP client, whole over TCP (Veil retried unbound over TCP)', () => {
    assert.match(dig('+ignore', 'big.lab.test', 'TXT'), /flags: qr aa tc rd ra;/);
    assert.match(dig('+tcp', 'big.lab.test', 'TXT'), /ANSWER: 16,/);
  });

  it('several queries over one kept-open TCP connection', () => {
    const out = dig('+tcp', '+keepopen', '+short', 'web.veil.test', 'a.example.', 'b.example.');
    assert.deepEqual(out.trim().split('\n'), ['192.0.2.10', '203.0.113.1', '203.0.113.1']);
  });

  it('kdig over TCP agrees', { skip: skipUnless('kdig') }, () => {
    const out = run('kdig', ['@127.0.0.1', '-p', String(port), '+tcp', '+short', 'web.veil.test']).stdout;
    assert.equal(out.trim(), '192.0.2.10');
  });
});
