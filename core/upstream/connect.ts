/** Opening a TCP connection to an IP literal, bounded in time. */
import net from 'node:net';
import { directReadOptions } from '../net/direct-reads.js';
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../errors.js';

/**
 * Connects to `host:port`. `host` must be an IP address: Veil never resolves upstream names
 * through the system resolver. Resolves once connected; rejects on error or after `timeoutMs`.
 * The socket's reads go to `onChunks` (core/net/direct-reads.ts), not to 'data' listeners.
 */
export function connectTcp(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  if (net.isIP(host) === 0) return Promise.reject(new UpstreamUnavailableError(`refusing to connect to "${host}": not an IP address`));
  return new Promise((resolve, reject) => {
    const reads = directReadOptions();
    const socket = net.connect({ host, port, noDelay: true, onread: reads.onread });
    reads.adopt(socket);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new UpstreamTimeoutError(`tcp ${formatHostPort(host, port)}: connect timed out after ${Math.round(timeoutMs)}ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new UpstreamUnavailableError(`tcp ${formatHostPort(host, port)}: ${err.message}`, { cause: err }));
    });
  });
}

export function formatHostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}
