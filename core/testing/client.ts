/**
 * A small DNS client for tests (and plugin authors' tests): one query over UDP, or many
 * pipelined on one TCP connection. Timeouts are bounds, never assertions.
 */
import { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
import net from 'node:net';
import { FrameReader, frame } from '../dns/framing.js';
import { readId } from '../dns/wire.js';

export function queryUdp(host: string, port: number, query: Buffer, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no UDP answer from ${host}:${port} within ${timeoutMs}ms`));
    }, timeoutMs);
    socket.on('message', (msg) => {
      if (msg.length >= 2 && readId(msg) !== readId(query)) return;
      clearTimeout(timer);
      socket.close();
      resolve(msg);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      socket.close();
      reject(err);
    });
    socket.send(query, port, host);
  });
}

/**
 * Sends raw bytes over UDP and resolves with the answer, or null when none comes in `waitMs`.
 * `from` picks the source address (another loopback address, say 127.0.0.2).
 */
export function sendUdpRaw(host: string, port: number, bytes: Buffer, waitMs = 300, from?: string): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      socket.close();
      resolve(null);
    }, waitMs);
    socket.on('message', (msg) => {
      clearTimeout(timer);
      socket.close();
      resolve(msg);
    });
    socket.on('error', () => {
      clearTimeout(timer);
      socket.close();
      resolve(null);
    });
    if (from) socket.bind(0, from, () => socket.send(bytes, port, host));
    else socket.send(bytes, port, host);
  });
}

/**
 * Writes all queries on one TCP connection at once (pipelined) and resolves with the answers
 * in the order they arrived, once there is one per query.
 */
export function queryTcp(host: string, port: number, queries: Buffer[], timeoutMs = 3000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const reader = new FrameReader();
    const answers: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`got ${answers.length} of ${queries.length} TCP answers from ${host}:${port} within ${timeoutMs}ms`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(Buffer.concat(queries.map(frame))));
    socket.on('data', (chunk: Buffer) => {
      answers.push(...reader.push(chunk));
      if (answers.length >= queries.length) {
        clearTimeout(timer);
        socket.end();
        resolve(answers);
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      if (answers.length < queries.length) {
        clearTimeout(timer);
        reject(new Error(`connection closed after ${answers.length} of ${queries.length} answers`));
      }
    });
  });
}
