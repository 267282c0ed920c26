/**
 * Veil's own HTTP/2 client (lib/http2/client-connection.ts, through lib/https-client) against a
 * hostile HTTP/2 server written frame by frame on a real TLS socket on loopback: the protocol
 * kept (preface, SETTINGS and their ACK, PING answers, WINDOW_UPDATE for what was read, HPACK
 * with the server's dynamic table), GOAWAY mid-flight, RST_STREAM, oversized headers, a
 * CONTINUATION flood, a window never opened, a server that never answers, oversized bodies,
 * push, a PING flood, a closed socket, wrong ALPN and a bad certificate.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import type net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { UpstreamResponseError, UpstreamTimeoutError } from '../core/errors.js';
import { MemoryLogger } from '../core/logger.js';
import { Failure, H2ClientConnection } from '../lib/http2/client-connection.js';
import { PREFACE } from '../lib/http2/protocol.js';
import { HpackDecoder, type HeaderList } from '../lib/http2/hpack.js';
import { HttpsConnections, type Http2Client } from '../lib/https-client/connections.js';
import { ConnectionLost } from '../lib/https-client/exchange.js';
import { TlsContexts } from '../lib/tls/contexts.js';
import { block, E, h2Frame, integer, RecordingSocket, T, u32 } from './helpers/h2-frames.js';
import { makeTestCerts, type TestCerts } from './helpers/peers.js';

const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const QUERY = Buffer.from('a query of some bytes');
const ANSWER = Buffer.from('an answer of some bytes');

interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

interface Request {
  stream: number;
  headers: HeaderList;
  body: Buffer;
}

/** One connection the hostile server accepted: the client's frames as they come, and a way to answer. */
class ServerSide {
  readonly frames: Frame[] = [];
  readonly requests: Request[] = [];
  /** Bytes before the preface was checked (for the ALPN test): all of them, raw. */
  raw = Buffer.alloc(0);
  prefaceOk = false;
  private input = Buffer.alloc(0);
  /** Header blocks as they came, and what this side's decoder refused (the client broke HPACK). */
  readonly blocks: Buffer[] = [];
  readonly hpackErrors: unknown[] = [];
  private readonly decoder: HpackDecoder;
  private readonly open = new Map<number, Request>();
  private block: { first: Frame; fragments: Buffer[] } | null = null;
  private readonly waiters: Array<() => void> = [];

  constructor(
    readonly socket: tls.TLSSocket,
    private readonly onRequest: (side: ServerSide, request: Request) => void,
    tableSize?: number,
  ) {
    this.decoder = new HpackDecoder(tableSize);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => {});
  }

  send(...frames: Buffer[]): void {
    if (!this.socket.destroyed) this.socket.write(Buffer.concat(frames));
  }

  /** Answers a request: a 200 with the DNS type, and the body. */
  answer(stream: number, body: Buffer = ANSWER): void {
    this.send(h2Frame(T.HEADERS, END_HEADERS, stream, okHead()), h2Frame(T.DATA, END_STREAM, stream, body));
  }

  /** Resolves once `test` holds of what arrived (checked on each frame; bounded by the test's timeout). */
  until(test: () => boolean): Promise<void> {
    if (test()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (test()) resolve();
        else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  goaway(): Frame | undefined {
    return this.frames.find((f) => f.type === T.GOAWAY);
  }

  private receive(chunk: Buffer): void {
    this.raw = Buffer.concat([this.raw, chunk]).subarray(0, 4096);
    this.input = Buffer.concat([this.input, chunk]);
    if (!this.prefaceOk) {
      if (this.input.length < PREFACE.length) return this.wake();
      if (!this.input.subarray(0, PREFACE.length).equals(PREFACE)) return this.wake();
      this.prefaceOk = true;
      this.input = this.input.subarray(PREFACE.length);
    }
    while (this.input.length >= 9) {
      const length = this.input.readUIntBE(0, 3);
      if (this.input.length < 9 + length) break;
      const frame = { type: this.input[3]!, flags: this.input[4]!, stream: this.input.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(this.input.subarray(9, 9 + length)) };
      this.input = this.input.subarray(9 + length);
      this.frames.push(frame);
      this.onFrame(frame);
    }
    this.wake();
  }

  private onFrame(frame: Frame): void {
    if (frame.type === T.HEADERS || frame.type === T.CONTINUATION) {
      if (frame.type === T.HEADERS) this.block = { first: frame, fragments: [] };
      this.block!.fragments.push(frame.payload);
      if (!(frame.flags & END_HEADERS)) return;
      const { first, fragments } = this.block!;
      this.block = null;
      const whole = Buffer.concat(fragments);
      this.blocks.push(whole);
      let headers: HeaderList;
      try {
        headers = this.decoder.decode(whole, 1 << 20).headers;
      } catch (error) {
        this.hpackErrors.push(error);
        return;
      }
      const request = { stream: first.stream, headers, body: Buffer.alloc(0) };
      this.open.set(first.stream, request);
      if (first.flags & END_STREAM) this.complete(request);
    } else if (frame.type === T.DATA) {
      const request = this.open.get(frame.stream);
      if (!request) return;
      request.body = Buffer.concat([request.body, frame.payload]);
      if (frame.flags & END_STREAM) this.complete(request);
    }
  }

  private complete(request: Request): void {
    this.open.delete(request.stream);
    this.requests.push(request);
    this.onRequest(this, request);
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

/** `:status 200` (indexed) and content-type application/dns-message (a literal, name indexed). */
function okHead(): Buffer {
  return Buffer.concat([Buffer.from([0x88]), literalIndexedName(31, 'application/dns-message')]);
}

function literalIndexedName(index: number, value: string): Buffer {
  return Buffer.concat([integer(0x00, 4, index), integer(0x00, 7, value.length), Buffer.from(value, 'latin1')]);
}

function settings(entries: Array<[number, number]> = []): Buffer {
  const payload = Buffer.alloc(6 * entries.length);
  entries.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, 6 * i);
    payload.writeUInt32BE(value, 6 * i + 2);
  });
  return h2Frame(T.SETTINGS, 0, 0, payload);
}

function goaway(lastStream: number, code: number): Buffer {
  return h2Frame(T.GOAWAY, 0, 0, Buffer.concat([u32(lastStream), u32(code)]));
}

/** The server's side of its `index`th connection, once accepted (the client may see its handshake end first). */
async function sideOf(server: Hostile, index: number): Promise<ServerSide> {
  for (let i = 0; i < 500 && !server.sides[index]; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(server.sides[index], `no connection ${index}`);
  return server.sides[index];
}

interface Script {
  /** On each new connection (its index from 0): what the server sends first; SETTINGS by default. */
  greet?: (side: ServerSide, index: number) => void;
  /** On each whole request; answers by default. */
  request?: (side: ServerSide, request: Request, index: number) => void;
  /** The HPACK table size the server's decoder allows (its SETTINGS_HEADER_TABLE_SIZE); 4096 by default. */
  tableSize?: number;
}

interface Hostile {
  port: number;
  sides: ServerSide[];
  close(): Promise<void>;
}

async function startHostile(certs: { cert: string; key: string }, script: Script, alpn: string[] | null = ['h2']): Promise<Hostile> {
  const sides: ServerSide[] = [];
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key), ...(alpn ? { ALPNProtocols: alpn } : {}) }, (socket) => {
    const index = sides.length;
    const side = new ServerSide(socket, (s, request) => (script.request ? script.request(s, request, index) : s.answer(request.stream)), script.tableSize);
    sides.push(side);
    if (script.greet) script.greet(side, index);
    else side.send(settings());
  });
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    sides,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** These tests are of Veil's own client; the node:http2 one runs the doh upstream tests (plugins/doh/doh-upstream.test.ts). */
const http2: Http2Client = 'veil';
{
  describe("Veil's HTTP/2 client against a hostile server", () => {
    let certs: TestCerts;
    let ca: string;
    const pools: HttpsConnections[] = [];
    const servers: Hostile[] = [];

    before(() => {
      certs = makeTestCerts();
      ca = readFileSync(certs.ca, 'utf8');
    });
    after(async () => {
      for (const pool of pools) pool.close();
      for (const server of servers) await server.close();
      rmSync(certs.dir, { recursive: true, force: true });
    });

    async function setup(script: Script, options: { alpn?: string[] | null; cert?: string; key?: string; client?: Http2Client; idleTimeoutMs?: number } = {}): Promise<{ server: Hostile; pool: HttpsConnections }> {
      const server = await startHostile({ cert: options.cert ?? certs.chain, key: options.key ?? certs.key }, script, options.alpn === undefined ? ['h2'] : options.alpn);
      servers.push(server);
      const pool = new HttpsConnections({
        name: 'hostile',
        label: `https://dns.test:${server.port}/dns-query`,
        authority: `dns.test:${server.port}`,
        identity: { serverName: 'dns.test', extraCa: [ca], pins: [], certHashes: [] },
        addresses: ['127.0.0.1'],
        port: server.port,
        pool: 1,
        logger: new MemoryLogger(),
        tls: new TlsContexts(),
        http2: options.client ?? http2,
        ...(options.idleTimeoutMs ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
      });
      pools.push(pool);
      return { server, pool };
    }

    const post = (pool: HttpsConnections, timeoutMs = 2000) => pool.request({ method: 'POST', path: '/dns-query', body: QUERY }, timeoutMs);

    it('keeps to the protocol: preface, SETTINGS both ways, the request fields, PING answered, HPACK with the dynamic table', async () => {
      let answered = 0;
      const { server, pool } = await setup({
        request: (side, request) => {
          // The first answer adds content-type to the dynamic table (index 62); the second refers to it.
          const typeField = answered++ === 0 ? Buffer.concat([integer(0x40, 6, 31), integer(0, 7, 23), Buffer.from('application/dns-message')]) : Buffer.from([0x80 | 62]);
          side.send(h2Frame(T.PING, 0, 0, Buffer.from('pingpong')), h2Frame(T.HEADERS, END_HEADERS, request.stream, Buffer.concat([Buffer.from([0x88]), typeField])), h2Frame(T.DATA, END_STREAM, request.stream, Buffer.alloc(3000, 7)));
        },
      });
      assert.deepEqual(await post(pool), Buffer.alloc(3000, 7));
      assert.deepEqual(await post(pool), Buffer.alloc(3000, 7));
      const side = server.sides[0]!;
      assert.equal(server.sides.length, 1, 'one connection for both');
      assert.ok(side.prefaceOk, 'the client preface');
      const first = side.frames[0]!;
      assert.equal(first.type, T.SETTINGS, 'SETTINGS right after the preface');
      const pushSetting = [...Array(first.payload.length / 6).keys()].map((i) => [first.payload.readUInt16BE(6 * i), first.payload.readUInt32BE(6 * i + 2)]).find(([id]) => id === 2);
      assert.deepEqual(pushSetting, [2, 0], 'push disabled');
      await side.until(() => side.frames.filter((f) => f.type === T.PING && f.flags & ACK).length === 2);
      const pong = side.frames.find((f) => f.type === T.PING)!;
      assert.ok(pong.flags & ACK);
      assert.equal(pong.payload.toString(), 'pingpong');
      assert.ok(side.frames.some((f) => f.type === T.SETTINGS && f.flags & ACK), 'our SETTINGS acknowledged');
      const request = side.requests[0]!;
      const field = (name: string) => request.headers.find(([n]) => n === name)?.[1];
      assert.equal(field(':method'), 'POST');
      assert.equal(field(':scheme'), 'https');
      assert.equal(field(':authority'), `dns.test:${server.port}`);
      assert.equal(field(':path'), '/dns-query');
      assert.equal(field('content-type'), 'application/dns-message');
      assert.equal(field('accept'), 'application/dns-message');
      assert.equal(field('content-length'), String(QUERY.length));
      assert.deepEqual(request.body, QUERY);
      assert.equal(request.stream, 1);
      assert.equal(side.requests[1]!.stream, 3);
    });

    /** What a request's header block says: each field by name (the block decoded by the server side). */
    const fieldsOf = (request: Request) => Object.fromEntries(request.headers.map(([name, value]) => [name, value]));
    const postFields = (port: number) => ({
      ':method': 'POST',
      ':scheme': 'https',
      ':authority': `dns.test:${port}`,
      ':path': '/dns-query',
      accept: 'application/dns-message',
      'content-type': 'application/dns-message',
      'content-length': String(QUERY.length),
    });

    it("indexes the fields every request repeats in the server's HPACK table, then names them by index", async () => {
      const { server, pool } = await setup({});
      for (let i = 0; i < 3; i++) assert.deepEqual(await post(pool), ANSWER);
      const side = server.sides[0]!;
      assert.deepEqual(side.hpackErrors, []);
      for (const request of side.requests) assert.deepEqual(fieldsOf(request), postFields(server.port));
      // The first block adds :authority, :path, accept and content-type (literals with incremental
      // indexing, §6.2.1); the others name them by index, newest (content-type) at 62.
      const [first, second, third] = side.blocks;
      assert.deepEqual([...first!.subarray(2, 3)], [0x40 | 1], ':authority added to the table');
      const indexed = Buffer.from([0x83, 0x87, 0x80 | 65, 0x80 | 64, 0x80 | 63, 0x80 | 62]);
      assert.deepEqual(second!.subarray(0, indexed.length), indexed);
      assert.deepEqual(third, second, 'the same block while the table is unchanged');
      assert.ok(second!.length <= indexed.length + 3 + String(QUERY.length).length, `a repeated request's block is ${second!.length} bytes`);
      assert.ok(first!.length > 4 * second!.length, `first block ${first!.length} bytes, then ${second!.length}`);
    });

    it('never indexes a GET path (it carries the query): sent as never indexed, each in full', async () => {
      const { server, pool } = await setup({});
      const paths = ['/dns-query?dns=AAABAAABAAAAAAAAB2V4YW1wbGUDY29tAAABAAE', '/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB'];
      for (const path of paths) assert.deepEqual(await pool.request({ method: 'GET', path, body: null }, 2000), ANSWER);
      await post(pool);
      const side = server.sides[0]!;
      assert.deepEqual(side.hpackErrors, []);
      assert.deepEqual(side.requests.map((r) => fieldsOf(r)[':path']), [...paths, '/dns-query']);
      for (const [i, path] of paths.entries()) {
        const neverIndexed = Buffer.concat([Buffer.from([0x10 | 4, path.length]), Buffer.from(path)]);
        assert.ok(side.blocks[i]!.includes(neverIndexed), `GET ${i + 1}: the path as a never-indexed literal`);
      }
      // The table holds :authority and accept from the GETs, then the POST's :path and content-type: no query in it.
      assert.ok(!side.blocks.some((block) => block.includes(Buffer.from([0x40 | 4, paths[0]!.length]))), 'no GET path added to the table');
    });

    for (const [tableSize, update] of [
      [0, [0x20]],
      [100, [0x3f, 100 - 31]],
    ] as const) {
      it(`keeps to a server table of ${tableSize} bytes (SETTINGS_HEADER_TABLE_SIZE): announced first, entries evicted as the server does`, async () => {
        const { server, pool } = await setup({ greet: (side) => side.send(settings([[1, tableSize]])), tableSize });
        // Requests after the client acknowledged the setting (§6.5.3: it applies from then on).
        await pool.warm();
        const side = await sideOf(server, 0);
        await side.until(() => side.frames.some((f) => f.type === T.SETTINGS && f.flags & ACK));
        for (let i = 0; i < 4; i++) assert.deepEqual(await post(pool), ANSWER);
        assert.deepEqual(side.hpackErrors, [], 'every block decoded within the table the server allows');
        for (const request of side.requests) assert.deepEqual(fieldsOf(request), postFields(server.port));
        assert.deepEqual([...side.blocks[0]!.subarray(0, update.length)], update, 'the new size opens the first block');
        for (const block of side.blocks.slice(1)) assert.notEqual(block[0]! & 0xe0, 0x20, 'announced once');
      });
    }

    it('a table size the server lowers mid-connection is announced at the start of the next block', async () => {
      const { server, pool } = await setup({});
      for (let i = 0; i < 2; i++) await post(pool);
      const side = server.sides[0]!;
      const acks = () => side.frames.filter((f) => f.type === T.SETTINGS && f.flags & ACK).length;
      const before = acks();
      side.send(settings([[1, 0]]));
      await side.until(() => acks() > before);
      for (let i = 0; i < 2; i++) assert.deepEqual(await post(pool), ANSWER);
      assert.deepEqual(side.hpackErrors, []);
      for (const request of side.requests) assert.deepEqual(fieldsOf(request), postFields(server.port));
      assert.equal(side.blocks[2]![0], 0x20, 'a size update to 0 first');
      assert.ok(!side.blocks[3]!.includes(0x80 | 62), 'nothing named from the emptied table');
    });

    it('takes a content-type of the DNS type in any case and with parameters; refuses another type and a malformed :status', async () => {
      const heads = [
        Buffer.concat([Buffer.from([0x88]), literalIndexedName(31, 'Application/DNS-Message; charset=binary')]),
        Buffer.concat([Buffer.from([0x88]), literalIndexedName(31, 'text/html')]),
        Buffer.concat([literalIndexedName(8, '2000'), literalIndexedName(31, 'application/dns-message')]),
        Buffer.concat([literalIndexedName(8, '2x0'), literalIndexedName(31, 'application/dns-message')]),
        okHead(),
      ];
      let answered = 0;
      const { pool } = await setup({ request: (side, request) => side.send(h2Frame(T.HEADERS, END_HEADERS, request.stream, heads[answered++]!), h2Frame(T.DATA, END_STREAM, request.stream, ANSWER)) });
      assert.deepEqual(await post(pool), ANSWER);
      await assert.rejects(post(pool), (err) => err instanceof UpstreamResponseError && /content-type "text\/html"/.test((err as Error).message));
      await assert.rejects(post(pool), (err) => err instanceof UpstreamResponseError && /:status/.test((err as Error).message));
      await assert.rejects(post(pool), (err) => err instanceof UpstreamResponseError && /:status/.test((err as Error).message));
      assert.deepEqual(await post(pool), ANSWER);
    });

    it('credits the connection window as it reads: 1.2 MB of answers through a window of 1 MiB', async () => {
      const { server, pool } = await setup({
        request: (side, request) => {
          const frames = [h2Frame(T.HEADERS, END_HEADERS, request.stream, okHead())];
          for (let i = 0; i < 4; i++) frames.push(h2Frame(T.DATA, i === 3 ? END_STREAM : 0, request.stream, Buffer.alloc(15_000, i)));
          side.send(...frames);
        },
      });
      // The server here ignores flow control: past a window never credited, the client would end the connection.
      for (let i = 0; i < 20; i++) assert.equal((await post(pool)).length, 60_000);
      assert.equal(server.sides.length, 1);
      const side = server.sides[0]!;
      await side.until(() => side.frames.some((f) => f.type === T.WINDOW_UPDATE && f.stream === 0 && f.payload.readUInt32BE(0) < 1_000_000));
      const credited = side.frames.filter((f) => f.type === T.WINDOW_UPDATE && f.stream === 0).map((f) => f.payload.readUInt32BE(0));
      // The first opens the window to 1 MiB; the others give back what was read.
      assert.equal(credited[0], (1 << 20) - 65_535);
      assert.ok(credited.slice(1).reduce((a, b) => a + b, 0) >= 20 * 60_000 - (1 << 20), `credited ${credited.join(',')}`);
    });

    it('the option picks the client: Veil\'s opens stream windows of 128 KiB, node:http2 keeps the default', async () => {
      const windowSetting = async (client: Http2Client): Promise<number | undefined> => {
        const { server, pool } = await setup({}, { client });
        assert.deepEqual(await post(pool), ANSWER);
        const first = server.sides[0]!.frames[0]!;
        assert.equal(first.type, T.SETTINGS);
        const entries = [...Array(first.payload.length / 6).keys()].map((i) => [first.payload.readUInt16BE(6 * i), first.payload.readUInt32BE(6 * i + 2)]);
        return entries.find(([id]) => id === 4)?.[1];
      };
      assert.equal(await windowSetting('veil'), 128 * 1024);
      assert.notEqual(await windowSetting('node'), 128 * 1024);
    });

    it('a header block larger than a frame goes as HEADERS and CONTINUATION (a GET of a large query)', async () => {
      const { server, pool } = await setup({});
      const path = `/dns-query?dns=${'A'.repeat(40_000)}`;
      assert.deepEqual(await pool.request({ method: 'GET', path, body: null }, 2000), ANSWER);
      const side = server.sides[0]!;
      assert.equal(side.requests[0]!.headers.find(([n]) => n === ':path')?.[1], path);
      const frames = side.frames.filter((f) => f.stream === 1);
      assert.deepEqual(frames.map((f) => f.type), [T.HEADERS, T.CONTINUATION, T.CONTINUATION]);
      assert.ok(frames[0]!.flags & END_STREAM && !(frames[0]!.flags & END_HEADERS) && frames[2]!.flags & END_HEADERS);
    });

    it('GOAWAY mid-flight: the stream it covers is answered, the other goes again on a new connection', async () => {
      const { server, pool } = await setup({
        request: (side, request, index) => {
          if (index > 0) return side.answer(request.stream, Buffer.from('second connection'));
          if (side.requests.length < 2) return;
          side.answer(1, Buffer.from('first stream'));
          side.send(goaway(1, E.NO_ERROR));
        },
      });
      await pool.warm();
      const answers = await Promise.all([post(pool), post(pool)]);
      assert.deepEqual(answers.map(String), ['first stream', 'second connection']);
      assert.equal(server.sides.length, 2);
      assert.equal(server.sides[1]!.requests.length, 1);
      assert.equal(await post(pool).then(String), 'second connection', 'the new connection is kept');
      assert.equal(server.sides.length, 2);
    });

    it('RST_STREAM: refused goes again; reset after the head is the server failing', async () => {
      let count = 0;
      const { server, pool } = await setup({
        request: (side, request) => {
          count++;
          if (count === 1) return side.send(h2Frame(T.RST_STREAM, 0, request.stream, u32(E.REFUSED_STREAM)));
          if (count === 2) return side.answer(request.stream);
          side.send(h2Frame(T.HEADERS, END_HEADERS, request.stream, okHead()), h2Frame(T.RST_STREAM, 0, request.stream, u32(E.CANCEL)));
        },
      });
      assert.deepEqual(await post(pool), ANSWER);
      assert.equal(count, 2, 'refused, then sent again');
      await assert.rejects(post(pool), (err) => err instanceof UpstreamResponseError && !(err instanceof ConnectionLost) && /reset/.test((err as Error).message));
      assert.equal(count, 3, 'not sent again');
      assert.equal(server.sides.length, 1);
    });

    it('headers over the list size fail the stream; a block over twice that ends the connection', async () => {
      let count = 0;
      const { server, pool } = await setup({
        request: (side, request) => {
          count++;
          if (count === 2) return side.answer(request.stream);
          // 20 KiB of header: over the 16 KiB list size, within the 32 KiB block bound; then 40 KiB.
          const big = block([['x-big', 'a'.repeat(count === 1 ? 20_000 : 40_000)]]);
          const head = Buffer.concat([Buffer.from([0x88]), big]);
          const frames: Buffer[] = [];
          for (let at = 0; at < head.length; at += 16_384) {
            const last = at + 16_384 >= head.length;
            frames.push(h2Frame(at === 0 ? T.HEADERS : T.CONTINUATION, last ? END_HEADERS : 0, request.stream, head.subarray(at, at + 16_384)));
          }
          side.send(...frames);
        },
      });
      await assert.rejects(post(pool), /headers too large/);
      const side = server.sides[0]!;
      await side.until(() => side.frames.some((f) => f.type === T.RST_STREAM && f.stream === 1));
      assert.deepEqual(await post(pool), ANSWER, 'the connection is still good');
      await assert.rejects(post(pool), (err) => err instanceof Error);
      await side.until(() => side.goaway() !== undefined);
      assert.equal(side.goaway()!.payload.readUInt32BE(4), E.ENHANCE_YOUR_CALM);
      assert.equal(server.sides.length, 2, 'the request was sent once more, on a new connection, and failed there too');
    });

    it('a CONTINUATION flood ends the connection with ENHANCE_YOUR_CALM', async () => {
      const { server, pool } = await setup({
        request: (side, request, index) => {
          if (index > 0) return side.answer(request.stream);
          const flood = Array.from({ length: 1000 }, () => h2Frame(T.CONTINUATION, 0, request.stream));
          side.send(h2Frame(T.HEADERS, 0, request.stream, Buffer.from([0x88])), ...flood);
        },
      });
      assert.deepEqual(await post(pool), ANSWER, 'lost with its connection, then sent again on a new one');
      const side = server.sides[0]!;
      await side.until(() => side.goaway() !== undefined);
      assert.equal(side.goaway()!.payload.readUInt32BE(4), E.ENHANCE_YOUR_CALM);
    });

    it('a window never opened: the body is not sent, the request times out', async () => {
      const { server, pool } = await setup({ greet: (side) => side.send(settings([[4, 0]])), request: () => {} });
      await pool.warm();
      const side = await sideOf(server, 0);
      await side.until(() => side.frames.some((f) => f.type === T.SETTINGS && f.flags & ACK));
      await assert.rejects(post(pool, 300), UpstreamTimeoutError);
      assert.ok(side.frames.some((f) => f.type === T.HEADERS), 'the head went');
      assert.ok(!side.frames.some((f) => f.type === T.DATA), 'no DATA past a window of 0');
      await side.until(() => side.frames.some((f) => f.type === T.RST_STREAM));
      assert.equal(side.frames.find((f) => f.type === T.RST_STREAM)!.payload.readUInt32BE(0), E.CANCEL);
    });

    it('a server that never answers: the request times out and the connection is not used again', async () => {
      const { server, pool } = await setup({ request: (side, request, index) => index > 0 && side.answer(request.stream) });
      await assert.rejects(post(pool, 300), UpstreamTimeoutError);
      assert.deepEqual(await post(pool), ANSWER);
      assert.equal(server.sides.length, 2);
      assert.equal(server.sides[0]!.requests.length, 1);
    });

    it('a body over 65535 bytes fails the request and cancels the stream', async () => {
      const { server, pool } = await setup({
        request: (side, request) => {
          const frames = [h2Frame(T.HEADERS, END_HEADERS, request.stream, okHead())];
          for (let i = 0; i < 5; i++) frames.push(h2Frame(T.DATA, i === 4 ? END_STREAM : 0, request.stream, Buffer.alloc(16_000)));
          side.send(...frames);
        },
      });
      await assert.rejects(post(pool), /larger than 65535/);
      const side = server.sides[0]!;
      await side.until(() => side.frames.some((f) => f.type === T.RST_STREAM));
    });

    it('a wrong status or type fails without reading the body', async () => {
      const { pool } = await setup({
        request: (side, request) =>
          side.send(h2Frame(T.HEADERS, END_HEADERS, request.stream, Buffer.concat([Buffer.from([0x8d]), literalIndexedName(31, 'text/html')])), h2Frame(T.DATA, END_STREAM, request.stream, ANSWER)),
      });
      await assert.rejects(post(pool), /HTTP status 404/);
    });

    it('PUSH_PROMISE (push is off) and a PING flood end the connection; the request goes again elsewhere', async () => {
      for (const [misdeed, code] of [
        [(side: ServerSide, stream: number) => side.send(h2Frame(T.PUSH_PROMISE, END_HEADERS, stream, Buffer.concat([u32(2), Buffer.from([0x82])]))), E.PROTOCOL_ERROR],
        [(side: ServerSide) => side.send(...Array.from({ length: 1000 }, () => h2Frame(T.PING, 0, 0, Buffer.alloc(8)))), E.ENHANCE_YOUR_CALM],
      ] as const) {
        const { server, pool } = await setup({ request: (side, request, index) => (index > 0 ? side.answer(request.stream) : misdeed(side, request.stream)) });
        assert.deepEqual(await post(pool), ANSWER);
        const side = server.sides[0]!;
        await side.until(() => side.goaway() !== undefined);
        assert.equal(side.goaway()!.payload.readUInt32BE(4), code);
        const pongs = side.frames.filter((f) => f.type === T.PING).length;
        assert.ok(pongs <= 250, `${pongs} PING answers`);
      }
    });

    it('the server closing its socket mid-request: sent again on a new connection', async () => {
      const { server, pool } = await setup({ request: (side, request, index) => (index > 0 ? side.answer(request.stream) : side.socket.destroy()) });
      assert.deepEqual(await post(pool), ANSWER);
      assert.equal(server.sides.length, 2);
    });

    it('without h2 in ALPN, no HTTP/2 is spoken: HTTP/1.1', async () => {
      const { server, pool } = await setup({ greet: () => {} }, { alpn: ['http/1.1'] });
      const answer = post(pool, 2000).catch((err: Error) => err);
      const side = await sideOf(server, 0);
      await side.until(() => side.raw.includes('\r\n\r\n'));
      assert.ok(!side.prefaceOk);
      assert.match(side.raw.toString('latin1'), /^POST \/dns-query HTTP\/1\.1\r\n/);
      side.socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/dns-message\r\ncontent-length: ${ANSWER.length}\r\n\r\n${ANSWER.toString()}`);
      assert.deepEqual(await answer, ANSWER);
    });

    it('an idle session ends with GOAWAY NO_ERROR; the next query opens another', async () => {
      const { server, pool } = await setup({}, { idleTimeoutMs: 100 });
      assert.deepEqual(await post(pool), ANSWER);
      const side = server.sides[0]!;
      await side.until(() => side.goaway() !== undefined);
      assert.equal(side.goaway()!.payload.readUInt32BE(4), E.NO_ERROR);
      assert.equal(pool.openSessions, 0);
      assert.deepEqual(await post(pool), ANSWER);
      assert.equal(server.sides.length, 2);
    });

    it('a certificate from another CA: nothing is sent', async () => {
      const { server, pool } = await setup({}, { cert: certs.otherCert, key: certs.otherKey });
      await assert.rejects(post(pool, 1000), /certificate/);
      for (const side of server.sides) assert.equal(side.raw.length, 0, 'bytes reached the server');
    });
  });
}

describe("Veil's HTTP/2 client: random frames from the server", () => {
  /** A small deterministic PRNG (mulberry32), so that a failure can be replayed by its seed. */
  function random(seed: number): () => number {
    return () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  it('never throws, every request is settled exactly once, and nothing is held after close', async () => {
    const outcomes = new Map<Failure | null, number>();
    for (let seed = 1; seed <= 400; seed++) {
      const rand = random(seed);
      const pick = <X>(list: readonly X[]): X => list[Math.floor(rand() * list.length)]!;
      const socket = new RecordingSocket();
      let gone = 0;
      const connection = new H2ClientConnection(socket as unknown as tls.TLSSocket, { authority: 'dns.test', idleTimeoutMs: 60_000, onGone: () => gone++ });
      const settled: Array<Failure | null | 'pending'> = [];
      const doubles: number[] = [];
      for (let i = 0; i < 5; i++) {
        const index = settled.push('pending') - 1;
        connection.request('POST', '/dns-query', 'application/dns-message', QUERY, undefined, 65_535, 60_000, {
          head: (status) => (rand() < 0.2 ? `status ${status}` : null),
          done: (failure) => {
            if (settled[index] !== 'pending') doubles.push(index);
            settled[index] = failure;
          },
        });
      }
      // Mostly well-formed frames with random types, flags, streams and payloads, some of them
      // answers that make sense, cut into random chunks.
      const frames: Buffer[] = [settings()];
      for (let i = 0; i < 30; i++) {
        const stream = pick([0, 1, 3, 5, 7, 9, 2, 11, 99]);
        const type = pick([T.DATA, T.HEADERS, T.HEADERS, T.CONTINUATION, T.RST_STREAM, T.SETTINGS, T.PING, T.GOAWAY, T.WINDOW_UPDATE, T.PRIORITY, T.PUSH_PROMISE, 0x42]);
        const flags = Math.floor(rand() * 256);
        const payload =
          type === T.HEADERS && rand() < 0.7
            ? okHead()
            : type === T.RST_STREAM || type === T.WINDOW_UPDATE
              ? u32(Math.floor(rand() * 2 ** 32))
              : type === T.GOAWAY
                ? Buffer.concat([u32(pick([0, 1, 3, 9])), u32(Math.floor(rand() * 16))])
                : Buffer.from(Array.from({ length: Math.floor(rand() * 40) }, () => Math.floor(rand() * 256)));
        frames.push(h2Frame(type, flags, stream, payload));
      }
      const bytes = Buffer.concat(frames);
      for (let at = 0; at < bytes.length; ) {
        const size = 1 + Math.floor(rand() * 64);
        socket.emit('data', bytes.subarray(at, at + size));
        at += size;
      }
      connection.destroy();
      assert.deepEqual(doubles, [], `seed ${seed}: a request settled twice`);
      assert.ok(!settled.includes('pending'), `seed ${seed}: a request never settled`);
      assert.equal(connection.active, 0, `seed ${seed}`);
      assert.equal(gone, 1, `seed ${seed}: onGone told ${gone} times`);
      for (const outcome of settled) outcomes.set(outcome as Failure | null, (outcomes.get(outcome as Failure | null) ?? 0) + 1);
    }
    // The frames reached every way a request can end, answered included: the test is not just connection errors.
    assert.ok((outcomes.get(null) ?? 0) > 0 && (outcomes.get(Failure.Lost) ?? 0) > 0 && (outcomes.get(Failure.Broken) ?? 0) > 0, JSON.stringify([...outcomes]));
  });

  it("sets the deadlines' sweep for the earliest deadline, not for every few milliseconds; a later one leaves it, a sooner one moves it", () => {
    const connection = new H2ClientConnection(new RecordingSocket() as unknown as tls.TLSSocket, { authority: 'dns.test', idleTimeoutMs: 60_000, onGone: () => {} });
    const sweepAt = () => (connection as unknown as { deadlines: { at: number } }).deadlines.at;
    const request = (timeoutMs: number) => connection.request('POST', '/dns-query', 'application/dns-message', QUERY, undefined, 65_535, timeoutMs, { head: () => null, done: () => {} });
    try {
      const before = performance.now();
      request(5000);
      // One request at a time (a home), a sweep every few milliseconds would wake Veil once a request.
      assert.ok(sweepAt() >= before + 5000 && sweepAt() <= performance.now() + 5000, `set ${Math.round(sweepAt() - before)} ms ahead`);
      const first = sweepAt();
      request(5000);
      assert.equal(sweepAt(), first, 'a later deadline leaves the sweep as it is');
      request(1000);
      assert.ok(sweepAt() < first - 3000, 'a sooner deadline moves it');
    } finally {
      connection.destroy();
    }
  });
});
