/**
 * A `lookup` for sockets that only ever talk to IP literals (UDP listeners answering clients,
 * the relay, statsd). It answers at once, where Node's default defers every send by a tick
 * through dns.lookup, and it can never reach the system resolver: a host name is an error.
 */
import { isIP } from 'node:net';

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

export function ipLiteralLookup(hostname: string, _options: unknown, callback: LookupCallback): void {
  const family = isIP(hostname);
  if (family === 0) {
    const err: NodeJS.ErrnoException = new Error(`${hostname} is not an IP address (Veil never resolves names through the system)`);
    err.code = 'EINVAL';
    callback(err, '', 0);
    return;
  }
  callback(null, hostname, family);
}
