/**
 * How hard it is to forge an answer to Veil's plain UDP `forward` (issue 24, finding 6), against
 * the real bin/veil: source ports that change every few queries (RFC 5452 §9.2), names sent in
 * random case and required back exactly (DNS 0x20), and a buffer size of at most 1232 bytes
 * advertised upstream. With the real unbound where it is installed: it keeps the case we send.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { HEADER_SIZE, QType } from '../../core/dns/constants.js';
import { buildQuery } from '../../core/dns/message.js';
import { questionSectionEnd, readEdns } from '../../core/dns/wire.js';
import { queryUdp } from '../../core/testing/client.js';
import { answerFor, startFakeDns, type FakeDns } from '../../core/testing/fake-dns.js';
import { QUERIES_PER_SOCKET } from '../../core/upstream/datagram.js';
import { mixNameCase, UdpClient } from '../../core/upstream/udp-client.js';
import { freePort, skipUnless, startUnbound, type Peer } from '../../test/helpers/peers.js';
import { startVeil, type VeilProcess } from '../../test/helpers/veil-process.js';

const firstA = (wire: Buffer) => (dnsPacket.decode(wire).answers?.[0] as { data?: unknown } | undefined)?.data;
/** The question's name as it is on the wire, case and all. */
const nameBytes = (wire: Buffer) => wire.subarray(HEADER_SIZE, questionSectionEnd(wire) - 4);
/** Many letters: the chance that random case leaves them all lower case is 2^-34. */
const LONG_NAME = 'abcdefghijklmnopqrstuvwxyz.veil.test';

async function veilForwardingTo(port: number, options = ''): Promise<{ veil: VeilProcess; ask: (query: Buffer) => Promise<Buffer> }> {
  const veil = await startVeil(`. {\n  listen udp://127.0.0.1:0\n  forward . 127.0.0.1:${port} {\n    timeout 1s\n${options}  }\n}\n`);
  const { host, port: veilPort } = veil.address('udp');
  return { veil, ask: (query) => queryUdp(host, veilPort, query, 5000) };
}

describe('issue 24 finding 6: forging an answer to plain UDP forward', () => {
  let origin: FakeDns;
  before(async () => {
    origin = await startFakeDns();
  });
  after(() => origin.close());

  it('issue 24 finding 6: source ports change every few queries, never one port for the process', async () => {
    const { veil, ask } = await veilForwardingTo(origin.port);
    try {
      origin.queries.length = 0;
      const total = 6 * QUERIES_PER_SOCKET;
      for (let i = 0; i < total; i += 8) {
        await Promise.all(Array.from({ length: 8 }, (_, j) => ask(buildQuery(`n${i + j}.veil.test`, QType.A, { id: i + j }))));
      }
      const perPort = new Map<number, number>();
      for (const q of origin.queries) perPort.set(q.from.port, (perPort.get(q.from.port) ?? 0) + 1);
      assert.equal(origin.queries.length, total);
      // Four fixed sockets before the fix: four ports for the life of the process.
      assert.ok(perPort.size >= total / QUERIES_PER_SOCKET, `${perPort.size} source ports for ${total} queries`);
      assert.ok(Math.max(...perPort.values()) <= QUERIES_PER_SOCKET, `at most ${QUERIES_PER_SOCKET} queries per port: ${[...perPort.values()].join(',')}`);
    } finally {
      await veil.stop();
    }
  });

  it('issue 24 finding 6: names go out in random case; the client gets its own case back', async () => {
    const { veil, ask } = await veilForwardingTo(origin.port);
    try {
      origin.queries.length = 0;
      const query = buildQuery(LONG_NAME, QType.A, { id: 77 });
      for (let i = 0; i < 10; i++) {
        const answer = await ask(query);
        assert.equal(firstA(answer), '203.0.113.1');
        assert.ok(nameBytes(answer).equals(nameBytes(query)), `the answer repeats the client's question: ${dnsPacket.decode(answer).questions![0]!.name}`);
      }
      const spellings = new Set(origin.queries.map((q) => q.packet.questions![0]!.name));
      assert.ok(spellings.size >= 9, `ten queries, ${spellings.size} spellings: ${[...spellings].join(' ')}`);
      assert.ok(![...spellings].includes(LONG_NAME), 'never the lower-case name as the client sent it');
    } finally {
      await veil.stop();
    }
  });

  it('issue 24 finding 6: an answer whose question differs in case is not taken: the query is asked again', async () => {
    // Right ID, right port, right name but in lower case, and a forged address: what a forger
    // who guessed port and ID, but not the case, would send.
    const forging = await startFakeDns((q) => {
      const name = q.packet.questions![0]!.name;
      if (name === name.toLowerCase()) return answerFor(q, [{ type: 'A', name, ttl: 60, data: '192.0.2.1' }]);
      const forged = { ...q, packet: { ...q.packet, questions: [{ ...q.packet.questions![0]!, name: name.toLowerCase() }] } };
      return answerFor(forged, [{ type: 'A', name: name.toLowerCase(), ttl: 60, data: '192.0.2.66' }]);
    });
    const { veil, ask } = await veilForwardingTo(forging.port);
    try {
      assert.equal(firstA(await ask(buildQuery(LONG_NAME, QType.A, { id: 5 }))), '192.0.2.1', 'the answer in the case asked, not the forged one');
      assert.equal(forging.queries.length, 2, 'asked in random case, then again in the client\'s case');
      assert.notEqual(forging.queries[0]!.packet.questions![0]!.name, LONG_NAME);
      assert.equal(forging.queries[1]!.packet.questions![0]!.name, LONG_NAME);
    } finally {
      await veil.stop();
      await forging.close();
    }
  });

  it('issue 24 finding 6: a server that folds case is asked in the client\'s case after three answers, and the log says so', async () => {
    const folding = await startFakeDns((q) => {
      const name = q.packet.questions![0]!.name.toLowerCase();
      return answerFor({ ...q, packet: { ...q.packet, questions: [{ ...q.packet.questions![0]!, name }] } }, [{ type: 'A', name, ttl: 60, data: '192.0.2.7' }]);
    });
    const { veil, ask } = await veilForwardingTo(folding.port);
    try {
      for (let i = 0; i < 6; i++) assert.equal(firstA(await ask(buildQuery(LONG_NAME, QType.A, { id: i }))), '192.0.2.7');
      // Three queries asked twice, then once each.
      assert.equal(folding.queries.length, 3 * 2 + 3);
      await veil.waitFor(/answers with names in another case than asked: asking it without random case/);
    } finally {
      await veil.stop();
      await folding.close();
    }
  });

  it('no_0x20: names go out in the client\'s case', async () => {
    const { veil, ask } = await veilForwardingTo(origin.port, '    no_0x20\n');
    try {
      origin.queries.length = 0;
      for (let i = 0; i < 3; i++) await ask(buildQuery(LONG_NAME, QType.A, { id: i }));
      assert.deepEqual(origin.queries.map((q) => q.packet.questions![0]!.name), [LONG_NAME, LONG_NAME, LONG_NAME]);
    } finally {
      await veil.stop();
    }
  });

  it('issue 24 finding 6: a client\'s 65535-byte EDNS buffer is advertised upstream as 1232 bytes', async () => {
    const { veil, ask } = await veilForwardingTo(origin.port);
    try {
      origin.queries.length = 0;
      await ask(buildQuery('big-buffer.veil.test', QType.A, { id: 1, edns: { udpSize: 65535 } }));
      assert.equal(readEdns(origin.queries[0]!.wire)!.udpSize, 1232);
    } finally {
      await veil.stop();
    }
  });
});

describe('issue 24 finding 6: the sockets forward keeps are bounded', () => {
  it('a silent server: replaced sockets wait for their answers, at most 64 of them beside the one in use', async () => {
    const silent = await startFakeDns(() => null);
    const client = new UdpClient('127.0.0.1', silent.port);
    try {
      const queries = Array.from({ length: 100 * QUERIES_PER_SOCKET }, (_, i) => client.exchange(buildQuery(`s${i}.veil.test`, QType.A, { id: i }), 300).catch(() => 'timeout'));
      assert.ok(client.openSockets <= 1 + 64, `${client.openSockets} sockets open`);
      assert.ok(client.openSockets > 1, 'sockets were replaced');
      assert.ok((await Promise.all(queries)).every((r) => r === 'timeout'));
      assert.equal(client.inflight, 0);
      // Replaced sockets close once their last exchange has timed out.
      assert.equal(client.openSockets, 1, 'only the socket in use is still open');
    } finally {
      client.close();
      await silent.close();
    }
  });

  it('mixNameCase changes letters only, and only in the question\'s name', () => {
    const query = buildQuery('a-1.b_2.veil.test', QType.A, { id: 1, edns: true });
    const mixed = Buffer.from(query);
    const end = mixNameCase(mixed);
    assert.equal(end, questionSectionEnd(query) - 4);
    assert.equal(mixed.toString('latin1').toLowerCase(), query.toString('latin1').toLowerCase());
    assert.ok(mixed.subarray(end).equals(query.subarray(end)));
    const noLetters = buildQuery('1.2.3.4', QType.A, { id: 1 });
    assert.equal(mixNameCase(Buffer.from(noLetters)), 0);
  });
});

describe('issue 24 finding 6: with unbound', { skip: skipUnless('unbound') }, () => {
  let unbound: Peer;
  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'veil-unbound-0x20-'));
    const port = await freePort();
    unbound = await startUnbound(
      dir,
      port,
      `    log-queries: yes
    module-config: "iterator"
    local-zone: "veil.test." static
    local-data: "${LONG_NAME}. 60 IN A 192.0.2.53"
`,
    );
  });
  after(() => unbound.stop());

  it('issue 24 finding 6: unbound keeps the random case: every answer taken at once, none asked twice', async () => {
    const { veil, ask } = await veilForwardingTo(unbound.port);
    try {
      const query = buildQuery(LONG_NAME, QType.A, { id: 3 });
      for (let i = 0; i < 10; i++) {
        const answer = await ask(query);
        assert.equal(firstA(answer), '192.0.2.53');
        assert.ok(nameBytes(answer).equals(nameBytes(query)));
      }
      const asked = [...unbound.log().matchAll(/info: 127\.0\.0\.1 (\S+) A IN/g)].map((m) => m[1]!);
      assert.equal(asked.length, 10, `unbound saw each query once:\n${unbound.log()}`);
      assert.ok(asked.every((name) => name !== `${LONG_NAME}.` && name.toLowerCase() === `${LONG_NAME}.`), asked.join(' '));
      assert.doesNotMatch(veil.stderr(), /another case than asked/);
    } finally {
      await veil.stop();
    }
  });
});
