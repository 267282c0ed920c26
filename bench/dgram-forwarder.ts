/**
 * The least a Node program can do to forward DNS over UDP: node:dgram, a Map of IDs, nothing
 * checked. The bench's udp-hops runs it beside Veil to show Node's own cost of a hop (a
 * wake-up for each datagram, the event loop, a call into JavaScript), which no Veil code can
 * go below. Not a server: it trusts every datagram.
 *
 *     node dist/bench/dgram-forwarder.js LISTEN_PORT UPSTREAM_PORT   (both on 127.0.0.1)
 */
import dgram from 'node:dgram';

const [listenPort, upstreamPort] = process.argv.slice(2).map(Number);
const clients = dgram.createSocket('udp4');
const upstream = dgram.createSocket('udp4');
const waiting = new Map<number, { id: number; port: number; address: string }>();
let nextId = 0;

clients.on('message', (query, from) => {
  if (query.length < 12) return;
  const id = (nextId = (nextId + 1) & 0xffff);
  waiting.set(id, { id: query.readUInt16BE(0), port: from.port, address: from.address });
  query.writeUInt16BE(id, 0);
  upstream.send(query, upstreamPort, '127.0.0.1');
});

upstream.on('message', (answer) => {
  if (answer.length < 12) return;
  const client = waiting.get(answer.readUInt16BE(0));
  if (!client) return;
  waiting.delete(answer.readUInt16BE(0));
  answer.writeUInt16BE(client.id, 0);
  clients.send(answer, client.port, client.address);
});

clients.bind(listenPort, '127.0.0.1', () => console.log(`forwarding 127.0.0.1:${listenPort} to 127.0.0.1:${upstreamPort}`));
process.on('SIGTERM', () => process.exit(0));
