/**
 * Fetching a list over HTTPS without ever asking the system resolver: the connection goes to
 * an IP address we were given (bootstrap addresses, or ones Veil resolved through its own
 * encrypted upstreams), and the host name is only the TLS server name and the Host header.
 */
import { Buffer } from 'node:buffer';
import https from 'node:https';
import net from 'node:net';

export interface HttpsFetchOptions {
  url: URL;
  /** IP addresses to try, in order. */
  addresses: string[];
  /** Extra trust anchors (PEM); the system store otherwise. */
  ca?: Buffer;
  timeoutMs: number;
  /** Bodies larger than this are refused. */
  maxBytes: number;
}

export class FetchError extends Error {
  override readonly name = 'FetchError';
}

export async function fetchHttps(options: HttpsFetchOptions): Promise<Buffer> {
  if (options.url.protocol !== 'https:') throw new FetchError(`${options.url.href}: only https:// lists are fetched`);
  if (options.addresses.length === 0) throw new FetchError(`${options.url.host}: no address to connect to`);
  const errors: string[] = [];
  for (const address of options.addresses) {
    try {
      return await fetchFrom(address, options);
    } catch (err) {
      errors.push(`${address}: ${(err as Error).message}`);
    }
  }
  throw new FetchError(`${options.url.href}: ${errors.join('; ')}`);
}

function fetchFrom(address: string, options: HttpsFetchOptions): Promise<Buffer> {
  if (net.isIP(address) === 0) return Promise.reject(new FetchError(`"${address}" is not an IP address`));
  const url = options.url;
  return new Promise((resolve, reject) => {
    const request = https.request({
      host: address,
      port: url.port ? Number(url.port) : 443,
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      servername: url.hostname,
      headers: { host: url.host, accept: 'text/plain, text/markdown, */*' },
      ...(options.ca ? { ca: options.ca } : {}),
      agent: false,
      timeout: options.timeoutMs,
      // Belt and braces: the host is an IP, but no name lookup may ever happen here.
      lookup: (_hostname, _opts, callback) => callback(new FetchError('name lookups are not allowed'), '', 4),
    });
    const timer = setTimeout(() => request.destroy(new FetchError(`no complete answer within ${options.timeoutMs}ms`)), options.timeoutMs);
    request.on('response', (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        clearTimeout(timer);
        reject(new FetchError(`HTTP ${response.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > options.maxBytes) {
          request.destroy(new FetchError(`larger than ${options.maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks));
      });
      response.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    request.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    request.end();
  });
}
