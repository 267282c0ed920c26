/** Small HTTP/2 and HTTP/1.1 clients for tests of the DoH listener (they send what we say, even nonsense). */
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface HttpCall {
  method?: string;
  path: string;
  headers?: Record<string, string | number>;
  body?: Buffer;
}

/** One request on a fresh HTTP/2 session (`https://` with `ca`, or h2c on `http://`). */
export async function h2Call(origin: string, call: HttpCall, options: { ca?: string; timeoutMs?: number } = {}): Promise<HttpResult> {
  const session = http2.connect(origin, { ...(options.ca ? { ca: options.ca, servername: 'dns.test' } : {}) });
  session.on('error', () => {});
  try {
    return await h2Request(session, call, options.timeoutMs);
  } finally {
    session.close();
  }
}

export function h2Request(session: http2.ClientHttp2Session, call: HttpCall, timeoutMs = 5000): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': call.method ?? (call.body ? 'POST' : 'GET'), ':path': call.path, ...(call.headers ?? {}) }, { endStream: !call.body });
    const timer = setTimeout(() => {
      stream.close();
      reject(new Error(`no HTTP/2 response within ${timeoutMs}ms`));
    }, timeoutMs);
    let headers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (headers = h));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      clearTimeout(timer);
      resolve({ status: Number(headers[':status']), headers, body: Buffer.concat(chunks) });
    });
    stream.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    if (call.body) stream.end(call.body);
  });
}

/** One request over HTTP/1.1 on a fresh connection. */
export function h1Call(origin: string, call: HttpCall, options: { ca?: string; timeoutMs?: number } = {}): Promise<HttpResult> {
  const url = new URL(call.path, origin);
  const secure = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const request = (secure ? https : http).request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method: call.method ?? (call.body ? 'POST' : 'GET'),
        headers: call.headers ?? {},
        agent: false,
        timeout: options.timeoutMs ?? 5000,
        ...(secure ? { ca: options.ca, servername: 'dns.test' } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error('HTTP/1.1 request timed out')));
    request.on('error', reject);
    request.end(call.body);
  });
}
