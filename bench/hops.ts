/**
 * udp-hops: where a forwarded query's time goes, hop by hop, read off the wire. Three UDP
 * forwarders stand in front of the same origin in turn: Veil's `forward`, the least a Node
 * program can do (dgram-forwarder.ts), and dnsdist (no packet cache). Each takes 2,000 queries a
 * second while tcpdump captures loopback, and every query is followed through its four
 * datagrams: client to forwarder, forwarder to origin, origin back, forwarder back. So the time a
 * query spent in the forwarder (its wake-up, its code, its send, each way) is told apart from
 * the origin's and from the load generator's, which dnsperf's own latencies cannot do; and for
 * the slowest 1% of queries, which of the two held them longest.
 *
 * Needs tcpdump and the right to capture on lo (root, or CAP_NET_RAW).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, skipUnless, startDaemon, startDnsdist, waitForDns, type Dnsdist } from '../test/helpers/peers.js';
import { startVeil } from '../test/helpers/veil-process.js';
import { answerKey, nonceKey } from '../lib/dnscrypt/channel.js';
import { CLIENT_MAGIC_SIZE, HALF_NONCE_SIZE, PUBLIC_KEY_SIZE, RELAY_HEADER_SIZE } from '../lib/dnscrypt/constants.js';
import { MIN_DNSCRYPT_QUERY } from '../plugins/anonymize/relay-listener.js';
import { startsWithAnonMagic } from '../lib/dnscrypt/relay-header.js';
import { readPcap, type CapturedPacket } from '../test/helpers/pcap.js';
import { dnsperf, percentile, writeSkewedQueries, type LoadResult } from './tools.js';
import type { Measurement, Workload, WorkloadContext } from './workloads.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The Node bin/veil runs (the project's own when installed), so both Node programs are alike. */
const NODE = existsSync(path.join(ROOT, 'node_modules/node/bin/node')) ? path.join(ROOT, 'node_modules/node/bin/node') : process.execPath;
const RATE = 2000;

/** One query's four datagrams, in microseconds since its arrival at the forwarder. */
export interface QueryHops {
  /** Arrival at the forwarder to its query to the origin. */
  inward: number;
  /** The origin's query to its answer. */
  origin: number;
  /** The origin's answer to the forwarder's answer. */
  outward: number;
}

/**
 * Follows each query through a capture of one forwarder (`front`) and its origin: by the
 * question, lower-cased (a forwarder may randomise its case, DNS 0x20), and within it by the
 * ID each leg carries: the client's on the way in and back, the forwarder's own to the origin
 * and back. Only one load runs at a time, so every query to the origin is the forwarder's.
 */
export function followQueries(packets: readonly CapturedPacket[], front: number, origin: number): QueryHops[] {
  type Open = { client: number; clientId: number; arrived: number; upstreamId?: number; sent?: number; answered?: number };
  const open = new Map<string, Open[]>();
  const done: QueryHops[] = [];
  for (const d of packets) {
    if (d.protocol !== 'udp') continue;
    const question = questionKey(d.payload);
    if (question === null) continue;
    const id = d.payload.readUInt16BE(0);
    const response = (d.payload[2]! & 0x80) !== 0;
    const list = open.get(question) ?? [];
    if (!response && d.dstPort === front) {
      list.push({ client: d.srcPort, clientId: id, arrived: d.at });
      open.set(question, list);
    } else if (!response && d.dstPort === origin) {
      const entry = list.find((e) => e.sent === undefined);
      if (entry) Object.assign(entry, { upstreamId: id, sent: d.at });
    } else if (response && d.srcPort === origin) {
      const entry = list.find((e) => e.upstreamId === id && e.answered === undefined);
      if (entry) entry.answered = d.at;
    } else if (response && d.srcPort === front) {
      const at = list.findIndex((e) => e.client === d.dstPort && e.clientId === id && e.answered !== undefined);
      if (at < 0) continue;
      const entry = list.splice(at, 1)[0]!;
      done.push({ inward: entry.sent! - entry.arrived, origin: entry.answered! - entry.sent!, outward: d.at - entry.answered! });
      if (list.length === 0) open.delete(question);
    }
  }
  return done;
}

/** The question section (name lower-cased, type and class) as a string, or null for a datagram too short. */
function questionKey(payload: Buffer): string | null {
  let at = 12;
  while (at < payload.length && payload[at] !== 0) at += payload[at]! + 1;
  if (at + 5 > payload.length) return null;
  return payload.toString('latin1', 12, at + 5).toLowerCase();
}

export interface HopSummary {
  queries: number;
  inward: { p50: number; p90: number; p99: number };
  outward: { p50: number; p90: number; p99: number };
  origin: { p50: number };
  /** Of the slowest 1% on the wire (arrival to answer), the share the forwarder held longer than the origin. */
  slowestHeldByForwarder: number;
}

export function summarize(hops: readonly QueryHops[]): HopSummary {
  const sorted = (values: number[]) => values.sort((a, b) => a - b);
  const spread = (values: number[]) => {
    const s = sorted(values);
    return { p50: percentile(s, 50) ?? NaN, p90: percentile(s, 90) ?? NaN, p99: percentile(s, 99) ?? NaN };
  };
  const total = (h: QueryHops) => h.inward + h.origin + h.outward;
  const byTotal = [...hops].sort((a, b) => total(a) - total(b));
  const slowest = byTotal.slice(Math.floor(byTotal.length * 0.99));
  return {
    queries: hops.length,
    inward: spread(hops.map((h) => h.inward)),
    outward: spread(hops.map((h) => h.outward)),
    origin: { p50: percentile(sorted(hops.map((h) => h.origin)), 50) ?? NaN },
    slowestHeldByForwarder: slowest.length ? slowest.filter((h) => h.inward + h.outward > h.origin).length / slowest.length : NaN,
  };
}

/** One anonymized query's legs, in microseconds (see `followAnonymized`). */
export interface AnonymizedHops {
  /** The client Veil: its plain query in to its DNSCrypt query out, to the relay. */
  clientIn: number;
  /** The relay: the query in to the query out, to the server. */
  relayIn: number;
  /** The DNSCrypt server, the origin behind it included. */
  server: number;
  relayOut: number;
  /** The client Veil: the encrypted answer in to the plain answer out. */
  clientOut: number;
}

const RELAYED_NONCE_AT = RELAY_HEADER_SIZE + CLIENT_MAGIC_SIZE + PUBLIC_KEY_SIZE;
/** A relayed DNSCrypt query at its shortest: certificate queries, which the client sends through the relay too, are shorter. */
const MIN_RELAYED_QUERY = RELAY_HEADER_SIZE + MIN_DNSCRYPT_QUERY;
const QUERY_NONCE_AT = CLIENT_MAGIC_SIZE + PUBLIC_KEY_SIZE;

/** A DNSCrypt answer's client half-nonce, as the DNSCrypt client keys it; null for anything else. */
function answerNonce(packet: Buffer): string | null {
  const key = answerKey(packet);
  return key === null || key.startsWith('#') ? null : key; // '#': a plain DNS answer, keyed by its ID
}

/**
 * Follows each query of a capture through a client Veil (`front`, plain DNS in), a relay
 * (`relay`) and a DNSCrypt server (`server`). The three middle legs carry the client's
 * half-nonce in the clear. The client's own legs share nothing with them, so they are paired in
 * order (the client sends queries and answers in the order it got them, one batch at a time),
 * and a pairing counts only when both ways agree: the plain answer that followed a nonce's
 * answer must be the answer to the plain query that preceded its query (same client port and
 * ID). A query paired wrongly is left out, never timed.
 */
export function followAnonymized(packets: readonly CapturedPacket[], ports: { front: number; relay: number; server: number }): AnonymizedHops[] {
  type Leg = { at: number; key: string };
  const plainIn: Leg[] = [];
  const plainOut: Leg[] = [];
  const toRelay: Leg[] = [];
  const fromRelay: Leg[] = [];
  const toServer = new Map<string, number>();
  const fromServer = new Map<string, number>();
  for (const d of packets) {
    if (d.protocol !== 'udp') continue;
    const p = d.payload;
    if (d.dstPort === ports.front && p.length >= 12 && (p[2]! & 0x80) === 0) plainIn.push({ at: d.at, key: `${d.srcPort} ${p.readUInt16BE(0)}` });
    else if (d.srcPort === ports.front && p.length >= 12 && (p[2]! & 0x80) !== 0) plainOut.push({ at: d.at, key: `${d.dstPort} ${p.readUInt16BE(0)}` });
    else if (d.dstPort === ports.relay && startsWithAnonMagic(p) && d.length >= MIN_RELAYED_QUERY && p.length >= RELAYED_NONCE_AT + HALF_NONCE_SIZE) toRelay.push({ at: d.at, key: nonceKey(p.subarray(RELAYED_NONCE_AT)) });
    else if (d.dstPort === ports.server && p.length >= QUERY_NONCE_AT + HALF_NONCE_SIZE) toServer.set(nonceKey(p.subarray(QUERY_NONCE_AT)), d.at);
    else if (d.srcPort === ports.server || d.srcPort === ports.relay) {
      const key = answerNonce(p);
      if (key === null) continue;
      if (d.srcPort === ports.server) fromServer.set(key, d.at);
      else fromRelay.push({ at: d.at, key });
    }
  }
  // In order: each DNSCrypt query with the oldest plain query not yet paired that came before
  // it, and each DNSCrypt answer with the first plain answer not yet paired that left after it.
  const queryOf = new Map<string, Leg>();
  let next = 0;
  for (const leg of toRelay) if (next < plainIn.length && plainIn[next]!.at <= leg.at) queryOf.set(leg.key, plainIn[next++]!);
  const answerOf = new Map<string, Leg>();
  const back = new Map<string, number>();
  next = 0;
  for (const leg of fromRelay) {
    back.set(leg.key, leg.at);
    while (next < plainOut.length && plainOut[next]!.at < leg.at) next++;
    if (next < plainOut.length) answerOf.set(leg.key, plainOut[next++]!);
  }
  const hops: AnonymizedHops[] = [];
  for (const out of toRelay) {
    const query = queryOf.get(out.key);
    const answer = answerOf.get(out.key);
    const sent = toServer.get(out.key);
    const answered = fromServer.get(out.key);
    const returned = back.get(out.key);
    if (!query || !answer || query.key !== answer.key || sent === undefined || answered === undefined || returned === undefined) continue;
    hops.push({ clientIn: out.at - query.at, relayIn: sent - out.at, server: answered - sent, relayOut: returned - answered, clientOut: answer.at - returned });
  }
  return hops;
}

const ANONYMIZED_LEGS = ['clientIn', 'relayIn', 'server', 'relayOut', 'clientOut'] as const;

/** Each leg's p50 / p90 / p99, and which leg held each of the slowest 1% longest. */
export function describeAnonymized(hops: readonly AnonymizedHops[]): string {
  const total = (h: AnonymizedHops) => ANONYMIZED_LEGS.reduce((sum, leg) => sum + h[leg], 0);
  const byTotal = [...hops].sort((a, b) => total(a) - total(b));
  const slowest = byTotal.slice(Math.floor(byTotal.length * 0.99));
  const longest = Object.fromEntries(ANONYMIZED_LEGS.map((leg) => [leg, 0])) as Record<(typeof ANONYMIZED_LEGS)[number], number>;
  for (const h of slowest) longest[ANONYMIZED_LEGS.reduce((a, b) => (h[a] >= h[b] ? a : b))]++;
  const names = { clientIn: 'client in', relayIn: 'relay in', server: 'DNSCrypt server', relayOut: 'relay out', clientOut: 'client out' };
  const legs = ANONYMIZED_LEGS.map((leg) => {
    const sorted = hops.map((h) => h[leg]).sort((a, b) => a - b);
    return `${names[leg]} ${[50, 90, 99].map((p) => (percentile(sorted, p) ?? NaN).toFixed(0)).join(' / ')}`;
  });
  return `${legs.join(', ')} µs (p50 / p90 / p99); the slowest 1% held longest by ${ANONYMIZED_LEGS.map((leg) => `${names[leg]} ${longest[leg]}`).join(', ')}`;
}

/** Why a capture cannot be made here, or false. */
export function captureUnavailable(): string | false {
  return skipUnless('tcpdump') || (process.getuid?.() === 0 ? false : 'skipped: capturing on lo needs root');
}

/** Captures UDP to and from `ports` on loopback while `load` runs. */
export async function captured(file: string, ports: number[], load: () => Promise<LoadResult>): Promise<LoadResult> {
  const filter = ports.map((p) => `udp port ${p}`).join(' or ');
  const tcpdump = spawn('tcpdump', ['-i', 'lo', '-n', '-s', '128', '-B', '32768', '-w', file, filter], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => tcpdump.on('exit', () => resolve()));
  let said = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump did not start capturing within 5 s: ${said.trim()}`)), 5000);
    tcpdump.stderr!.on('data', (chunk: Buffer) => {
      said += chunk.toString();
      if (said.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`tcpdump could not capture on lo: ${said.trim()}`));
    });
  });
  try {
    return await load();
  } finally {
    tcpdump.kill('SIGINT');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 5000)))]);
    clearTimeout(timer);
    if (tcpdump.exitCode === null && tcpdump.signalCode === null) tcpdump.kill('SIGKILL');
  }
}

type Front = 'Veil' | 'node:dgram' | 'dnsdist';

export const udpHops: Workload = {
  name: 'udp-hops',
  description: `where a forwarded query's time goes at ${RATE} qps, from a capture of loopback: the time each query spent in the forwarder on its way in and on its way out, for Veil \`forward\`, a ten-line node:dgram forwarder (Node's own floor) and dnsdist (no packet cache), in turn in front of the origin`,
  target: 'context (Veil beside the least a Node program does for a hop, and beside dnsdist)',
  async run(ctx: WorkloadContext): Promise<Measurement> {
    const origin = ctx.origin.port;
    const veil = await startVeil(`. {\n  listen udp://127.0.0.1:0\n  forward . 127.0.0.1:${origin}\n}\n`);
    const dgramPort = await freePort();
    const forwarder = startDaemon(NODE, [path.join(ROOT, 'dist/bench/dgram-forwarder.js'), String(dgramPort), String(origin)], mkdtempSync(path.join(os.tmpdir(), 'veil-bench-dgram-')), dgramPort);
    let dnsdist: Dnsdist | null = null;
    try {
      await waitForDns(dgramPort);
      dnsdist = await startDnsdist({ backendPort: origin, plain: true });
      const fronts: Record<Front, number> = { Veil: veil.address('udp').port, 'node:dgram': dgramPort, dnsdist: dnsdist.ports.plain! };
      const queries = writeSkewedQueries(ctx.dir, 'hops.txt', 1000, 10000, 'hops.example');
      const fixed = { queryFile: queries, rate: RATE, clients: 1, outstanding: 50 };
      for (const port of Object.values(fronts)) await dnsperf({ ...fixed, port, seconds: 2 });
      const hops: Record<Front, QueryHops[]> = { Veil: [], 'node:dgram': [], dnsdist: [] };
      const loads: Record<Front, LoadResult[]> = { Veil: [], 'node:dgram': [], dnsdist: [] };
      for (let round = 0; round < ctx.rounds; round++) {
        for (const front of Object.keys(fronts) as Front[]) {
          const file = path.join(ctx.dir, `hops-${round}-${front.replace(/\W/g, '')}.pcap`);
          const load = await captured(file, [fronts[front], origin], () => dnsperf({ ...fixed, port: fronts[front], seconds: ctx.seconds, verbose: true }));
          const followed = followQueries(readPcap(file), fronts[front], origin);
          const seen = summarize(followed);
          ctx.log(`round ${round + 1}: ${front} ${followed.length} of ${load.sent - load.lost} answers followed (p50 ${(load.p50Ms ?? NaN).toFixed(3)} ms); in p50 ${seen.inward.p50.toFixed(0)} p99 ${seen.inward.p99.toFixed(0)} µs, out p50 ${seen.outward.p50.toFixed(0)} p99 ${seen.outward.p99.toFixed(0)} µs`);
          hops[front].push(...followed);
          loads[front].push(load);
        }
      }
      const us = (n: number) => n.toFixed(0);
      const describe = (front: Front) => {
        const s = summarize(hops[front]);
        return `${front} in ${us(s.inward.p50)} / ${us(s.inward.p90)} / ${us(s.inward.p99)}, out ${us(s.outward.p50)} / ${us(s.outward.p90)} / ${us(s.outward.p99)} µs (p50 / p90 / p99), the origin ${us(s.origin.p50)}; held the slowest 1% longer than the origin in ${us(s.slowestHeldByForwarder * 100)}%`;
      };
      const veilLoads = loads.Veil;
      return {
        kind: 'other',
        veil: veilLoads[veilLoads.length - 1]!,
        peer: loads.dnsdist[loads.dnsdist.length - 1] ?? null,
        ratio: null,
        rssMb: null,
        summary: (Object.keys(fronts) as Front[]).map(describe).join('; '),
        commands: (Object.keys(fronts) as Front[]).map((front) => loads[front][0]!.command),
        notes: [`${ctx.rounds} rounds of each, ${ctx.seconds} s each, captured with \`tcpdump -i lo -s 128 -w FILE 'udp port FRONT or udp port ORIGIN'\`; ${(Object.keys(fronts) as Front[]).map((f) => `${f} ${hops[f].length} queries followed`).join(', ')}`],
      };
    } finally {
      await dnsdist?.stop();
      await forwarder.stop();
      await veil.stop();
    }
  },
  requires: () => skipUnless('dnsperf', 'dnsdist') || captureUnavailable(),
};
