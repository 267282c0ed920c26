/**
 * The bench's udp-hops and anonymized-hops read a tcpdump capture (test/helpers/pcap.ts) and
 * follow each query through the processes on its way: the reader's times and lengths, and the
 * matching, on captures written here byte by byte (both byte orders, the two stamp resolutions,
 * loopback's Ethernet framing and Linux's cooked one, a capture cut short).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { describeAnonymized, followAnonymized, followQueries, summarize } from '../bench/hops.js';
import { readPcap } from './helpers/pcap.js';
import { buildQuery } from '../core/dns/message.js';
import { QType } from '../core/dns/constants.js';
import { ANON_MAGIC, RESOLVER_MAGIC } from '../lib/dnscrypt/constants.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'veil-hops-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Frame {
  atUs: number;
  from: number;
  to: number;
  payload: Buffer;
  protocol?: number;
}

/** A pcap file of IPv4 datagrams between loopback ports. */
function capture(frames: Frame[], options: { bigEndian?: boolean; nanoseconds?: boolean; link?: 'ethernet' | 'sll'; snapLength?: number } = {}): string {
  const u32 = (value: number) => {
    const b = Buffer.alloc(4);
    if (options.bigEndian) b.writeUInt32BE(value);
    else b.writeUInt32LE(value);
    return b;
  };
  const u16 = (value: number) => {
    const b = Buffer.alloc(2);
    if (options.bigEndian) b.writeUInt16BE(value);
    else b.writeUInt16LE(value);
    return b;
  };
  const link = options.link === 'sll' ? 113 : 1;
  const parts = [u32(options.nanoseconds ? 0xa1b23c4d : 0xa1b2c3d4), u16(2), u16(4), u32(0), u32(0), u32(65535), u32(link)];
  for (const f of frames) {
    // Both end in the IPv4 EtherType: Ethernet's at byte 12, the cooked header's at byte 14.
    const linkHeader = Buffer.concat([Buffer.alloc(link === 1 ? 12 : 14), Buffer.from([0x08, 0x00])]);
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip[9] = f.protocol ?? 17;
    ip.set([127, 0, 0, 1], 12);
    ip.set([127, 0, 0, 1], 16);
    const tcp = f.protocol === 6;
    const transport = Buffer.alloc(tcp ? 20 : 8);
    transport.writeUInt16BE(f.from, 0);
    transport.writeUInt16BE(f.to, 2);
    if (tcp) transport[12] = 5 << 4;
    else transport.writeUInt16BE(8 + f.payload.length, 4);
    ip.writeUInt16BE(20 + transport.length + f.payload.length, 2);
    const whole = Buffer.concat([linkHeader, ip, transport, f.payload]);
    const packet = whole.subarray(0, options.snapLength ?? whole.length);
    const seconds = Math.floor(f.atUs / 1e6);
    const fraction = options.nanoseconds ? Math.round((f.atUs % 1e6) * 1000) : Math.round(f.atUs % 1e6);
    parts.push(u32(seconds), u32(fraction), u32(packet.length), u32(whole.length), packet);
  }
  const file = path.join(dir, `capture-${Math.random().toString(36).slice(2)}.pcap`);
  writeFileSync(file, Buffer.concat(parts));
  return file;
}

const CLIENT = 40000;
const FRONT = 5300;
const UPSTREAM = 41000;
const ORIGIN = 5301;

function query(name: string, id: number): Buffer {
  const q = buildQuery(name, QType.A);
  q.writeUInt16BE(id, 0);
  return q;
}

function answer(q: Buffer): Buffer {
  const a = Buffer.from(q);
  a[2] = a[2]! | 0x80;
  return a;
}

/** The same name with its letters' case flipped here and there, as DNS 0x20 does. */
function mixCase(name: string): string {
  return [...name].map((c, i) => (i % 2 ? c.toUpperCase() : c)).join('');
}

/** One query through the forwarder: its four datagrams at `t`, `t + inward`, and so on. */
function exchange(name: string, t: number, inward: number, origin: number, outward: number, ids = { client: 7, upstream: 0x4242 }): Frame[] {
  const fromClient = query(name, ids.client);
  const toOrigin = query(mixCase(name), ids.upstream);
  return [
    { atUs: t, from: CLIENT, to: FRONT, payload: fromClient },
    { atUs: t + inward, from: UPSTREAM, to: ORIGIN, payload: toOrigin },
    { atUs: t + inward + origin, from: ORIGIN, to: UPSTREAM, payload: answer(toOrigin) },
    { atUs: t + inward + origin + outward, from: FRONT, to: CLIENT, payload: answer(fromClient) },
  ];
}

/** The frames written to a capture in time order, and read back. */
function packetsOf(frames: Frame[]) {
  return readPcap(capture([...frames].sort((x, y) => x.atUs - y.atUs)));
}

/** Each query's legs (in, origin, out) through the forwarder, in a capture of `frames`. */
function followed(frames: Frame[]): number[][] {
  return followQueries(packetsOf(frames), FRONT, ORIGIN).map((h) => [h.inward, h.origin, h.outward]);
}

describe('bench: a capture read and each query followed through the forwarder', () => {
  for (const options of [{}, { bigEndian: true }, { nanoseconds: true }, { link: 'sll' as const }]) {
    it(`reads each packet's time, ports, payload and length (${JSON.stringify(options)})`, () => {
      const payload = query('a.hops.example', 1);
      const frames: Frame[] = [
        { atUs: 1_700_000_000_000_250, from: CLIENT, to: FRONT, payload },
        { atUs: 1_700_000_000_000_900, from: FRONT, to: CLIENT, payload: Buffer.from('abc'), protocol: 6 },
      ];
      const read = readPcap(capture(frames, options));
      assert.deepEqual(
        read.map((p) => [p.protocol, p.at, p.srcPort, p.dstPort, p.length]),
        [
          ['udp', 1_700_000_000_000_250, CLIENT, FRONT, payload.length],
          ['tcp', 1_700_000_000_000_900, FRONT, CLIENT, 3],
        ],
      );
      assert.deepEqual(read[0]!.payload, payload);
    });
  }

  it('refuses a file that is not a capture', () => {
    const file = path.join(dir, 'not.pcap');
    writeFileSync(file, Buffer.alloc(64, 7));
    assert.throws(() => readPcap(file), /not a pcap file/);
  });

  it('times each query in the forwarder, both ways, and at the origin, whatever the case of its name', () => {
    assert.deepEqual(
      followed([...exchange('a.hops.example', 1000, 20, 40, 15), ...exchange('b.hops.example', 1100, 30, 50, 25)]),
      [
        [20, 40, 15],
        [30, 50, 25],
      ],
    );
  });

  it('keeps two queries for the same name apart, the older first', () => {
    assert.deepEqual(
      followed([...exchange('same.hops.example', 1000, 10, 100, 10), ...exchange('same.hops.example', 1050, 20, 100, 30)]),
      [
        [10, 100, 10],
        [20, 100, 30],
      ],
    );
  });

  it('matches each leg by its ID when the origin answers out of order', () => {
    const first = exchange('same.hops.example', 1000, 10, 90, 10, { client: 1, upstream: 11 });
    const second = exchange('same.hops.example', 1020, 10, 20, 10, { client: 2, upstream: 12 });
    assert.deepEqual(
      followed([...first, ...second]),
      [
        [10, 20, 10],
        [10, 90, 10],
      ],
    );
  });

  it('leaves out a query the forwarder never answered, datagrams of other ports, and TCP', () => {
    const lost = exchange('lost.hops.example', 1000, 10, 10, 10).slice(0, 2);
    const stray: Frame = { atUs: 1005, from: 999, to: 998, payload: query('lost.hops.example', 9) };
    // The same question over TCP, on the forwarder's ports: not one of the datagrams followed.
    const overTcp: Frame = { atUs: 2001, from: CLIENT, to: FRONT, payload: query('kept.hops.example', 7), protocol: 6 };
    assert.deepEqual(followed([...lost, stray, overTcp, ...exchange('kept.hops.example', 2000, 5, 6, 7)]), [[5, 6, 7]]);
  });

  it('says which held the slowest queries longer: the forwarder or the origin', () => {
    const hops = Array.from({ length: 200 }, (_, i) => ({ inward: 10, origin: 20, outward: 10 + (i >= 198 ? 1000 : 0) }));
    const summary = summarize(hops);
    assert.equal(summary.queries, 200);
    assert.equal(summary.inward.p50, 10);
    assert.equal(summary.origin.p50, 20);
    assert.equal(summary.slowestHeldByForwarder, 1);
    const originSlow = summarize(hops.map((h) => ({ ...h, outward: 10, origin: h.outward > 100 ? 5000 : 20 })));
    assert.equal(originSlow.slowestHeldByForwarder, 0);
  });
});

const RELAY = 443;
const RELAY_SIDE = 42000;
const SERVER = 8443;

/** A relayed DNSCrypt query (the relay header, client magic, key, half-nonce, tag, a padded box). */
function relayedQuery(nonce: number): Buffer {
  const half = Buffer.alloc(12, nonce);
  return Buffer.concat([ANON_MAGIC, Buffer.alloc(16), Buffer.from([0x20, 0xfb]), Buffer.alloc(8, 1), Buffer.alloc(32, 2), half, Buffer.alloc(16), Buffer.alloc(64)]);
}

function dnscryptAnswer(nonce: number): Buffer {
  return Buffer.concat([RESOLVER_MAGIC, Buffer.alloc(12, nonce), Buffer.alloc(12, 9), Buffer.alloc(16), Buffer.alloc(64)]);
}

/** An anonymized query's datagrams: `legs` are each leg's time, client in to client out. */
function anonymized(name: string, id: number, nonce: number, t: number, legs: [number, number, number, number, number]): Frame[] {
  const relayed = relayedQuery(nonce);
  const times = legs.reduce<number[]>((at, leg) => [...at, at[at.length - 1]! + leg], [t]);
  return [
    { atUs: times[0]!, from: CLIENT, to: FRONT, payload: query(name, id) },
    { atUs: times[1]!, from: UPSTREAM, to: RELAY, payload: relayed },
    { atUs: times[2]!, from: RELAY_SIDE, to: SERVER, payload: relayed.subarray(28) },
    { atUs: times[3]!, from: SERVER, to: RELAY_SIDE, payload: dnscryptAnswer(nonce) },
    { atUs: times[4]!, from: RELAY, to: UPSTREAM, payload: dnscryptAnswer(nonce) },
    { atUs: times[5]!, from: FRONT, to: CLIENT, payload: answer(query(name, id)) },
  ];
}

const PORTS = { front: FRONT, relay: RELAY, server: SERVER };
const legsOf = (h: { clientIn: number; relayIn: number; server: number; relayOut: number; clientOut: number }) => [h.clientIn, h.relayIn, h.server, h.relayOut, h.clientOut];

describe('bench: an anonymized query followed through client, relay and server', () => {
  it('times each of the five legs', () => {
    const frames = [...anonymized('a.hops.example', 1, 1, 1000, [30, 25, 120, 30, 20]), ...anonymized('b.hops.example', 2, 2, 2000, [35, 20, 100, 40, 25])];
    const hops = followAnonymized(packetsOf(frames), PORTS);
    assert.deepEqual(hops.map(legsOf), [
      [30, 25, 120, 30, 20],
      [35, 20, 100, 40, 25],
    ]);
    // Two values: every percentile here is the larger; the slower query was held longest by the server.
    assert.match(describeAnonymized(hops), /^client in 35 \/ 35 \/ 35, relay in 25 \/ 25 \/ 25, DNSCrypt server 120 \/ 120 \/ 120, .*held longest by client in 0, relay in 0, DNSCrypt server 1, relay out 0, client out 0$/);
  });

  it('follows them in a capture cut short (tcpdump -s 128), by the lengths in the UDP headers', () => {
    const frames = anonymized('a.hops.example', 1, 1, 1000, [30, 25, 120, 30, 20]);
    const read = readPcap(capture(frames, { snapLength: 128 }));
    assert.ok(read[1]!.payload.length < read[1]!.length, 'the relayed query was cut short');
    assert.equal(read[1]!.length, frames[1]!.payload.length);
    assert.deepEqual(followAnonymized(read, PORTS).map(legsOf), [[30, 25, 120, 30, 20]]);
  });

  it('pairs answers that came back out of order, when the client answered in that order too', () => {
    // b's answer comes back first, and the client sends b's plain answer first.
    const frames = [...anonymized('a.hops.example', 1, 1, 1000, [10, 10, 300, 10, 10]), ...anonymized('b.hops.example', 2, 2, 1050, [10, 10, 50, 10, 10])];
    const hops = followAnonymized(packetsOf(frames), PORTS);
    assert.deepEqual(hops.map(legsOf), [
      [10, 10, 300, 10, 10],
      [10, 10, 50, 10, 10],
    ]);
  });

  it('leaves out a pairing the two ways disagree on, and a certificate query through the relay', () => {
    // The client's plain answers leave in the other order than their DNSCrypt answers came:
    // paired in order, each would be timed against the other query, so neither is timed.
    const a = anonymized('a.hops.example', 1, 1, 1000, [10, 10, 100, 10, 10]);
    const b = anonymized('b.hops.example', 2, 2, 1005, [10, 10, 100, 10, 10]);
    [a[5]!.atUs, b[5]!.atUs] = [b[5]!.atUs, a[5]!.atUs];
    const certificateQuery: Frame = { atUs: 990, from: UPSTREAM, to: RELAY, payload: Buffer.concat([ANON_MAGIC, Buffer.alloc(18), query('2.dnscrypt-cert.example', 5)]) };
    const hops = followAnonymized(packetsOf([certificateQuery, ...a, ...b]), PORTS);
    assert.deepEqual(hops.map(legsOf), []);
  });
});
