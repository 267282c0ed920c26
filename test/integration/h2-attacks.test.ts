/**
 * The three HTTP/2 attacks of the security review (issue 24) against the real bin/veil, each kept
 * up for a few seconds over TLS, reconnecting whenever Veil cuts the attacker off. Before the fix,
 * the first grew the process by about 150 MB a second until the heap limit killed it, and the
 * second froze the event loop for seconds once a window update came. Here the process must stay
 * within 150 MB of where it started and answer a UDP query from another client throughout.
 * Ten-second runs with RSS and latency sampled: `npm run soak:h2` (docs/reliability.md).
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { queryUdp } from '../../core/testing/client.js';
import { ATTACKS, attackedCorefile, rssMegabytes, runAttack, type AttackName } from '../helpers/h2-attacks.js';
import { makeTestCerts, type TestCerts } from '../helpers/peers.js';
import { startVeil, type VeilProcess } from '../helpers/veil-process.js';

const SECONDS = 3;

describe('issue 24: the HTTP/2 attacks against bin/veil', () => {
  let certs: TestCerts;
  let veil: VeilProcess;
  let ca: string;

  before(async () => {
    certs = makeTestCerts();
    ca = readFileSync(certs.ca, 'utf8');
    veil = await startVeil(attackedCorefile(certs));
  });
  after(async () => {
    await veil?.stop();
    rmSync(certs.dir, { recursive: true, force: true });
  });

  for (const attack of Object.keys(ATTACKS) as AttackName[]) {
    it(`issue 24 ${attack === 'reset-blocked' ? 'finding 2' : attack === 'empty-data' ? 'finding 3' : 'finding 1'}: ${ATTACKS[attack]}: memory stays bounded and UDP is answered`, async () => {
      const pid = veil.child.pid!;
      const udp = veil.address('udp');
      const https = veil.address('https');
      const start = rssMegabytes(pid);
      let most = start;
      const deadline = Date.now() + SECONDS * 1000;
      const stop = () => Date.now() > deadline;
      const attacking = runAttack(attack, https.port, ca, stop);
      let probes = 0;
      while (!stop()) {
        const answer = await queryUdp('127.0.0.1', udp.port, buildQuery('web.veil.test', QType.A, { id: probes++ }), 5000);
        assert.equal(answer[3]! & 0x0f, 0);
        most = Math.max(most, rssMegabytes(pid));
        await new Promise((r) => setTimeout(r, 100));
      }
      const result = await attacking;
      await new Promise((r) => setTimeout(r, 100));
      const last = await queryUdp('127.0.0.1', udp.port, buildQuery('web.veil.test', QType.A, { id: probes++ }), 5000);
      assert.equal(last[3]! & 0x0f, 0);
      assert.ok(result.frames > 1000, `the attack sent only ${result.frames} frames`);
      assert.ok(most - start < 150, `RSS went from ${start.toFixed(0)} MB to ${most.toFixed(0)} MB`);
      if (attack !== 'reset-blocked') assert.ok(result.cutOff > 0, 'Veil never cut the attacker off');
    });
  }
});
