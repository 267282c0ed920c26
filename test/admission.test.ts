/** max_concurrent: the bound on queries being answered at once, over every listener. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { QueryAdmission } from '../core/admission.js';
import { parseCorefileText } from '../core/config/corefile.js';
import { parseGlobalOptions } from '../core/config/global.js';
import { QType, rcodeName } from '../core/dns/constants.js';
import { buildQuery } from '../core/dns/message.js';
import { fullRcode } from '../core/dns/wire.js';
import { MemoryLogger } from '../core/logger.js';
import { queryUdp } from '../core/testing/client.js';
import { answerFor, startFakeDns } from '../core/testing/fake-dns.js';
import { startTestServer } from '../core/testing/server.js';
import { expectConfigError, testRegistry } from './helpers/plugins.js';

describe('max_concurrent', () => {
  it('admits up to the limit, logs reaching it once and leaving it once', () => {
    const logger = new MemoryLogger();
    const admission = new QueryAdmission(3, logger);
    assert.deepEqual([1, 2, 3, 4, 5].map(() => admission.enter()), [true, true, true, false, false]);
    assert.equal(admission.current, 3);
    assert.equal(logger.lines.filter((l) => l.includes('(max_concurrent)')).length, 1);
    admission.leave();
    admission.leave();
    assert.ok(logger.lines.some((l) => l.includes('below max_concurrent again (2 queries refused meanwhile)')));
    assert.equal(admission.enter(), true);
  });

  it('is a global option: 1 to 10,000,000, one number', async () => {
    const parse = (text: string) => parseGlobalOptions(parseCorefileText(`${text}\n. {\n  hosts\n}\n`, 'Corefile'));
    assert.equal(parse('{\n  max_concurrent 200\n}').maxConcurrent, 200);
    assert.equal(parse('').maxConcurrent, 10_000);
    await expectConfigError('{\n  max_concurrent 0\n}\n. {\n  log\n}\n', 2, 18, /global: .*0/);
    await expectConfigError('{\n  max_concurent 5\n}\n. {\n  log\n}\n', 2, 3, /did you mean "max_concurrent"/);
  });

  it('a query over the bound is answered REFUSED at once; the others are answered', async () => {
    const origin = await startFakeDns((q) => answerFor(q, [{ type: 'A', name: q.packet.questions![0]!.name, ttl: 60, data: '192.0.2.1' }]));
    const veil = await startTestServer(`{\n  max_concurrent 2\n}\n. {\n  listen udp://127.0.0.1:0\n  slow 300\n  forward . 127.0.0.1:${origin.port}\n}`, { registry: testRegistry() });
    try {
      const udp = veil.address('udp://127.0.0.1:0');
      const ask = (name: string, id: number) => queryUdp(udp.host, udp.port, buildQuery(name, QType.A, { id }), 3000);
      const slow = [ask('slow.b.test', 1), ask('slow.c.test', 2)];
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(rcodeName(fullRcode(await ask('now.test', 3))), 'REFUSED');
      for (const answer of await Promise.all(slow)) assert.notEqual(rcodeName(fullRcode(answer)), 'REFUSED');
      const after = dnsPacket.decode(await ask('now.test', 4));
      assert.equal((after.answers?.[0] as { data?: string }).data, '192.0.2.1');
      assert.equal(veil.server.admission.current, 0, 'every place given back');
    } finally {
      await veil.stop();
      await origin.close();
    }
  });
});
