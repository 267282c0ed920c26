/**
 * What Veil's HTTP server hands a service and takes back, whichever HTTP version carried the
 * request (HTTP/1.1, Veil's HTTP/2, node:http2): a view of the request whose body is read on
 * demand and bounded, and a reply of status, headers and one body. A service written against
 * these (DoH, the ODoH target and relay) never sees frames, streams or sockets.
 */
import { Buffer } from 'node:buffer';

export interface HttpReply {
  status: number;
  headers: Record<string, string | number>;
  body: Buffer;
}

/** A request's body, or the reply to give when it did not arrive whole (413, 408, 400). */
export type BodyResult = Buffer | HttpReply;

export interface HttpRequest {
  method: string;
  /** Path with query string, as received. */
  path: string;
  /** A request header by lower-case name (repeated fields joined with commas). */
  header(name: string): string | undefined;
  /** Reads the body, at most `limit` bytes, within the server's request timeout. */
  readBody(limit: number): Promise<BodyResult>;
}

/** Serves one request; `respond` may be called once, at any time. */
export type RequestHandler = (request: HttpRequest, respond: (reply: HttpReply) => void) => void;

export function textReply(status: number, message: string, headers: Record<string, string> = {}): HttpReply {
  const body = Buffer.from(`${message}\n`);
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length, ...headers }, body };
}

/** The replies for a request body that does not arrive whole, whichever HTTP version carries it. */
export const bodyTooLarge = (limit: number): HttpReply => textReply(413, `payload too large: a body here is at most ${limit} bytes`);
export const bodyCutOff = (): HttpReply => textReply(400, 'bad request: the body was cut off');
export const bodyTimedOut = (): HttpReply => textReply(408, 'request timeout: the body did not arrive in time');

/** A header as Node's parsers give it, as one string (repeated fields joined with commas). */
export function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}
