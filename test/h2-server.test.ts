/**
 * Veil's HTTP/2 server connection (lib/http2): HPACK and its Huffman code against Node's
 * own HTTP/2 client (nghttp2's encoder), and the protocol against a raw-frame client that
 * misbehaves on purpose: bad prefaces, oversized frames, CONTINUATION floods, bad HPACK, stream
 * numbers out of order, rapid resets, flow control, clients that never read.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { PREFACE } from '../lib/http2/protocol.js';
import { encodeResponseHeaders, HpackDecoder, HpackError } from '../lib/http2/hpack.js';
import { decodeHuffman, encodeHuffman, HuffmanError } from '../lib/http2/huffman.js';
import { block, E, echo, GET, h2Frame, integer, RawClient, RecordingSocket, startServer, T, text, u32, type H2TestServer } from './helpers/h2-frames.js';
import type { RequestHandler } from '../lib/http2/message.js';
import { H2ServerConnection } from '../lib/http2/connection.js';

describe('Huffman code (RFC 7541 §5.2)', () => {
  it('round-trips every byte value and mixed text', () => {
    const all = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
    for (const sample of [all, 'www.example.com', 'no-cache', 'custom-value', '', 'a', '/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB']) {
      const coded = encodeHuffman(sample);
      assert.equal(decodeHuffman(coded, 0, coded.length), sample);
    }
  });

  it('codes common characters shortly and control characters long, as the table says', () => {
    assert.equal(encodeHuffman('0').length, 1); // 5 bits
    assert.equal(encodeHuffman('aaaaaaaa').length, 5); // 8 × 5 bits
    assert.equal(encodeHuffman('\u0000').length, 2); // 13 bits
    assert.equal(encodeHuffman('\u000a').length, 4); // 30 bits
  });

  it('refuses padding of 8 bits or more, padding of 0s, and EOS inside a string', () => {
    const a = encodeHuffman('a'); // 5 bits + 3 bits of 1s
    assert.throws(() => decodeHuffman(Buffer.concat([a, Buffer.from([0xff])]), 0, 2), HuffmanError);
    assert.throws(() => decodeHuffman(Buffer.from([a[0]! & 0xf8]), 0, 1), HuffmanError);
    assert.throws(() => decodeHuffman(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4), HuffmanError); // 30 1s: EOS
  });
});

describe('HPACK decoder (RFC 7541)', () => {
  it('reads indexed fields, literals with and without indexing, and Huffman strings', () => {
    const d = new HpackDecoder();
    const first = Buffer.concat([
      Buffer.from([0x82, 0x87]), // :method GET, :scheme https (static)
      Buffer.from([0x44]), // :path (static name 4), with incremental indexing
      integer(0x80, 7, encodeHuffman('/dns-query').length),
      encodeHuffman('/dns-query'),
      block([['x-one', 'raw']]),
    ]);
    assert.deepEqual(d.decode(first, 8192).headers, [[':method', 'GET'], [':scheme', 'https'], [':path', '/dns-query'], ['x-one', 'raw']]);
    // The literal with indexing went into the dynamic table at index 62.
    assert.deepEqual(d.decode(Buffer.from([0x82, 0xbe]), 8192).headers, [[':method', 'GET'], [':path', '/dns-query']]);
  });

  it('evicts the oldest entries when the table is full, and empties it for an entry larger than it', () => {
    const d = new HpackDecoder();
    const big = (n: number) => Buffer.concat([Buffer.from([0x40]), integer(0, 7, 4), Buffer.from(`x-${n}a`), integer(0, 7, 1500), Buffer.alloc(1500, 0x61 + n)]);
    d.decode(Buffer.concat([big(0), big(1)]), 1e9); // 2 × 1536 bytes: both fit in 4096
    d.decode(big(2), 1e9); // a third does not: the oldest (x-0a) goes
    assert.equal(d.decode(Buffer.from([0xbe]), 1e9).headers[0]![0], 'x-2a');
    assert.equal(d.decode(Buffer.from([0xbf]), 1e9).headers[0]![0], 'x-1a');
    assert.throws(() => d.decode(Buffer.from([0xc0]), 1e9), HpackError);
    const huge = Buffer.concat([Buffer.from([0x40]), integer(0, 7, 1), Buffer.from('h'), integer(0, 7, 5000), Buffer.alloc(5000, 0x62)]);
    assert.equal(d.decode(huge, 1e9).headers[0]![1].length, 5000);
    assert.throws(() => d.decode(Buffer.from([0xbe]), 1e9), HpackError, 'the table is empty');
  });

  it('refuses index 0, indexes past the tables, oversized or misplaced table updates, cut-off integers and strings', () => {
    const bad = [
      Buffer.from([0x80]),
      Buffer.from([0xff, 0x00]), // index 127
      Buffer.concat([integer(0x20, 5, 4097)]),
      Buffer.concat([Buffer.from([0x82]), integer(0x20, 5, 0)]),
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
      Buffer.from([0xff]),
      Buffer.from([0x00, 0x05, 0x61]),
    ];
    for (const bytes of bad) assert.throws(() => new HpackDecoder().decode(bytes, 8192), HpackError, bytes.toString('hex'));
  });

  it('past the list limit keeps decoding (the table stays in step) and reports the size', () => {
    const d = new HpackDecoder();
    const indexedBig = Buffer.concat([Buffer.from([0x40]), integer(0, 7, 5), Buffer.from('x-big'), integer(0, 7, 3000), Buffer.alloc(3000, 0x7a)]);
    const over = d.decode(Buffer.concat([Buffer.from([0x82]), indexedBig]), 1000);
    assert.deepEqual(over.headers, [[':method', 'GET']]);
    assert.equal(over.size, 32 + 7 + 3 + 32 + 5 + 3000);
    assert.equal(d.decode(Buffer.from([0xbe]), 8192).headers[0]![0], 'x-big');
  });

  it('encodes answers that an HTTP/2 client reads (literals, static names)', () => {
    const decoded = new HpackDecoder().decode(encodeResponseHeaders(200, { 'content-type': 'application/dns-message', 'cache-control': 'max-age=300', 'x-veil': 'ok' }), 8192);
    assert.deepEqual(decoded.headers, [[':status', '200'], ['content-type', 'application/dns-message'], ['cache-control', 'max-age=300'], ['x-veil', 'ok']]);
    assert.deepEqual(new HpackDecoder().decode(encodeResponseHeaders(415, {}), 8192).headers, [[':status', '415']]);
  });
});

describe('HTTP/2 server connection', () => {
  let server: H2TestServer;
  before(async () => {
    server = await startServer({}, echo);
  });
  after(() => server.close());

  it("reads nghttp2's headers (Huffman, dynamic table, eviction) over many requests on one session", async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on('error', () => {});
    try {
      for (let i = 0; i < 60; i++) {
        const long = `v${i}-`.repeat(40 + (i % 7) * 30); // large values push older entries out of the table
        const sent = { 'x-a': i % 3 === 0 ? 'same' : `a-${i}`, 'x-b': String.fromCharCode(33 + (i % 90)).repeat(i + 1), 'x-long': long };
        const reply = await new Promise<string>((resolve, reject) => {
          const stream = session.request({ ':path': `/q/${i}?n=${i}`, ...sent });
          // The answer's content-type is indexed in nghttp2's table after the first answer.
          stream.on('response', (headers) => assert.equal(headers['content-type'], 'text/plain'));
          let body = '';
          stream.setEncoding('latin1');
          stream.on('data', (c: string) => (body += c));
          stream.on('end', () => resolve(body));
          stream.on('error', reject);
        });
        const seen = JSON.parse(reply) as { method: string; path: string; headers: Record<string, string> };
        assert.equal(seen.method, 'GET');
        assert.equal(seen.path, `/q/${i}?n=${i}`);
        assert.equal(seen.headers['x-a'], sent['x-a']);
        assert.equal(seen.headers['x-b'], sent['x-b']);
        assert.equal(seen.headers['x-long'], long);
      }
    } finally {
      session.destroy();
    }
  });

  it('takes POST bodies in several DATA frames, padded or not, and trailers', async () => {
    const c = await RawClient.open(server.port);
    try {
      c.request(1, [[':method', 'POST'], [':scheme', 'https'], [':path', '/p'], ['content-length', '6']], false);
      c.send(T.DATA, 0, 1, Buffer.from('abc'));
      c.send(T.DATA, 0x8, 1, Buffer.concat([Buffer.from([4]), Buffer.from('def'), Buffer.alloc(4)])); // padded
      c.send(T.HEADERS, 0x5, 1, block([['x-trailer', 'yes']])); // trailers end the stream
      const body = JSON.parse((await c.body(1))!);
      assert.equal(body.body, 'abcdef');
    } finally {
      c.destroy();
    }
  });

  it('reads frames however the bytes are split: here one byte at a time', async () => {
    const c = await RawClient.connect(server.port);
    c.socket.setNoDelay(true);
    try {
      const bytes = Buffer.concat([PREFACE, h2Frame(T.SETTINGS, 0, 0), h2Frame(T.HEADERS, 5, 1, block(GET('/bytewise', [['x-a', 'slow']]), true))]);
      for (const byte of bytes) {
        c.write(Buffer.from([byte]));
        await new Promise((r) => setImmediate(r));
      }
      const body = JSON.parse((await c.body(1))!);
      assert.equal(body.path, '/bytewise');
      assert.equal(body.headers['x-a'], 'slow');
    } finally {
      c.destroy();
    }
  });

  it('sends its SETTINGS, acknowledges the client’s, and answers PING', async () => {
    const c = await RawClient.open(server.port);
    try {
      const settings = await c.waitFor((f) => f.type === T.SETTINGS && f.flags === 0);
      const values = new Map<number, number>();
      for (let at = 0; at < settings!.payload.length; at += 6) values.set(settings!.payload.readUInt16BE(at), settings!.payload.readUInt32BE(at + 2));
      assert.equal(values.get(3), 100); // MAX_CONCURRENT_STREAMS
      assert.equal(values.get(6), 8192); // MAX_HEADER_LIST_SIZE
      assert.ok(await c.waitFor((f) => f.type === T.SETTINGS && f.flags === 1));
      c.send(T.PING, 0, 0, Buffer.from('12345678'));
      const pong = await c.waitFor((f) => f.type === T.PING);
      assert.equal(pong!.flags, 1);
      assert.equal(pong!.payload.toString(), '12345678');
    } finally {
      c.destroy();
    }
  });

  it('answers HEAD with headers only', async () => {
    const c = await RawClient.open(server.port);
    try {
      c.request(1, [[':method', 'HEAD'], [':scheme', 'https'], [':path', '/']]);
      const headers = await c.waitFor((f) => f.type === T.HEADERS && f.stream === 1);
      assert.equal(headers!.flags & 1, 1, 'END_STREAM on the HEADERS frame');
      assert.ok(!c.frames.some((f) => f.type === T.DATA));
    } finally {
      c.destroy();
    }
  });

  for (const [label, fields] of [
    ['an upper-case field name', GET('/', [['X-Upper', '1']])],
    ['no :path', [[':method', 'GET'], [':scheme', 'https']]],
    ['a pseudo-field after a regular one', [[':method', 'GET'], ['x-a', '1'], [':scheme', 'https'], [':path', '/']]],
    ['an unknown pseudo-field', GET('/', [[':protocol', 'x']])],
    ['a connection field', GET('/', [['connection', 'keep-alive']])],
    ['a line break in a value', GET('/', [['x-a', 'a\r\nb']])],
    ['a content-length that is no number', GET('/', [['content-length', 'x']])],
  ] as const) {
    it(`resets a malformed request (${label}) and serves the next`, async () => {
      const c = await RawClient.open(server.port);
      try {
        c.request(1, fields as unknown as [string, string][]);
        c.request(3, GET('/next'));
        assert.equal(JSON.parse((await c.body(3))!).path, '/next');
        assert.equal(c.reset(1), E.PROTOCOL_ERROR);
      } finally {
        c.destroy();
      }
    });
  }

  it('resets a request whose body is longer than its content-length', async () => {
    const c = await RawClient.open(server.port);
    try {
      c.request(1, [[':method', 'POST'], [':scheme', 'https'], [':path', '/p'], ['content-length', '2']], false);
      c.send(T.DATA, 1, 1, Buffer.from('abc'));
      assert.ok(await c.waitFor((f) => f.type === T.RST_STREAM && f.stream === 1));
      assert.equal(c.reset(1), E.PROTOCOL_ERROR);
    } finally {
      c.destroy();
    }
  });

  const connectionErrors: [string, (c: RawClient) => void, number][] = [
    ['a frame larger than 16,384 bytes', (c) => c.send(T.DATA, 0, 1, Buffer.alloc(16_385)), E.FRAME_SIZE_ERROR],
    ['an even stream number', (c) => c.request(2, GET()), E.PROTOCOL_ERROR],
    ['a stream number lower than one used', (c) => (c.request(5, GET()), c.request(3, GET())), E.PROTOCOL_ERROR],
    ['DATA on stream 0', (c) => c.send(T.DATA, 0, 0, Buffer.from('x')), E.PROTOCOL_ERROR],
    ['DATA on a stream never opened', (c) => c.send(T.DATA, 0, 9, Buffer.from('x')), E.PROTOCOL_ERROR],
    ['PUSH_PROMISE from a client', (c) => c.send(T.PUSH_PROMISE, 4, 1, Buffer.alloc(4)), E.PROTOCOL_ERROR],
    ['SETTINGS of 5 bytes', (c) => c.send(T.SETTINGS, 0, 0, Buffer.alloc(5)), E.FRAME_SIZE_ERROR],
    ['a PING of 7 bytes', (c) => c.send(T.PING, 0, 0, Buffer.alloc(7)), E.FRAME_SIZE_ERROR],
    ['a frame inside a header block', (c) => (c.send(T.HEADERS, 0, 1, block(GET())), c.send(T.PING, 0, 0, Buffer.alloc(8))), E.PROTOCOL_ERROR],
    ['CONTINUATION without HEADERS', (c) => c.send(T.CONTINUATION, 4, 1, block(GET())), E.PROTOCOL_ERROR],
    ['an HPACK index 0', (c) => c.send(T.HEADERS, 5, 1, Buffer.from([0x80])), E.COMPRESSION_ERROR],
    ['padding longer than the frame', (c) => c.send(T.HEADERS, 0x8 | 5, 1, Buffer.from([9, 0x82])), E.PROTOCOL_ERROR],
    ['a connection window past 2^31-1', (c) => c.send(T.WINDOW_UPDATE, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff])), E.FLOW_CONTROL_ERROR],
    ['a WINDOW_UPDATE of 0 on the connection', (c) => c.send(T.WINDOW_UPDATE, 0, 0, Buffer.alloc(4)), E.PROTOCOL_ERROR],
    ['SETTINGS_MAX_FRAME_SIZE below 16,384', (c) => c.send(T.SETTINGS, 0, 0, Buffer.from([0, 5, 0, 0, 0x10, 0])), E.PROTOCOL_ERROR],
    [
      'a CONTINUATION flood (no END_HEADERS, ever)',
      (c) => {
        c.send(T.HEADERS, 0, 1, block(GET()));
        for (let i = 0; i < 200; i++) c.send(T.CONTINUATION, 0, 1, block([['x-flood', 'y'.repeat(200)]]));
      },
      E.ENHANCE_YOUR_CALM,
    ],
  ];
  for (const [label, misbehave, code] of connectionErrors) {
    it(`GOAWAY and close for ${label}`, async () => {
      const c = await RawClient.open(server.port);
      try {
        misbehave(c);
        assert.equal(await c.goaway(), code);
        assert.ok(await c.closedWithin(3000), 'the connection stays open');
      } finally {
        c.destroy();
      }
    });
  }

  it('refuses a connection that does not start with the preface, or whose first frame is not SETTINGS', async () => {
    const wrong = await RawClient.connect(server.port);
    wrong.write(Buffer.from('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
    assert.equal(await wrong.goaway(), E.PROTOCOL_ERROR);
    wrong.destroy();
    const noSettings = await RawClient.connect(server.port);
    noSettings.write(PREFACE);
    noSettings.send(T.PING, 0, 0, Buffer.alloc(8));
    assert.equal(await noSettings.goaway(), E.PROTOCOL_ERROR);
    noSettings.destroy();
  });
});

describe("HTTP/2 server connection: the answers' content-type in the client's HPACK table", () => {
  const DNS_MESSAGE = 'application/dns-message';
  const answer: RequestHandler = (_request, respond) => respond({ status: 200, headers: { 'content-type': DNS_MESSAGE, 'content-length': 3, 'cache-control': 'max-age=60' }, body: Buffer.from('abc') });
  const expected = [[':status', '200'], ['content-type', DNS_MESSAGE], ['content-length', '3'], ['cache-control', 'max-age=60']];
  let server: H2TestServer;
  before(async () => {
    server = await startServer({}, answer);
  });
  after(() => server.close());

  /** Asks on streams 1, 3, 5, … one at a time, and returns each answer's header block in order. */
  async function answerBlocks(c: RawClient, from: number, count: number, between?: () => void): Promise<Buffer[]> {
    const blocks: Buffer[] = [];
    for (let i = 0, id = from; i < count; i++, id += 2) {
      if (i > 0 && between) between();
      c.request(id, GET());
      const head = await c.waitFor((f) => f.type === T.HEADERS && f.stream === id);
      assert.ok(head, `an answer on stream ${id}`);
      blocks.push(head.payload);
    }
    return blocks;
  }

  it('adds content-type to the table with the first answer, and names it by index in every later one', async () => {
    const c = await RawClient.open(server.port);
    try {
      const blocks = await answerBlocks(c, 1, 3);
      const decoder = new HpackDecoder();
      for (const block of blocks) assert.deepEqual(decoder.decode(block, 8192).headers, expected);
      assert.equal(blocks[0]![1], 0x40 | 31, 'a literal with incremental indexing, name content-type');
      assert.ok(blocks[1]!.includes(0x80 | 62), 'content-type by its index, 62');
      assert.equal(blocks[1]!.length, blocks[0]!.length - DNS_MESSAGE.length - 1);
      assert.deepEqual(blocks[2], blocks[1]);
    } finally {
      c.destroy();
    }
  });

  it('keeps within the table size the client allows: with 0, the size is announced first and nothing is indexed', async () => {
    const c = await RawClient.open(server.port, Buffer.from([0, 1, 0, 0, 0, 0])); // SETTINGS_HEADER_TABLE_SIZE 0
    try {
      const blocks = await answerBlocks(c, 1, 2);
      const decoder = new HpackDecoder(0);
      for (const block of blocks) assert.deepEqual(decoder.decode(block, 8192).headers, expected);
      assert.equal(blocks[0]![0], 0x20, 'a table size update to 0, first');
      assert.deepEqual(blocks[1], blocks[0]!.subarray(1), 'the same literals again, without the update');
      assert.ok(!blocks[1]!.includes(0x40 | 31), 'no literal with indexing');
    } finally {
      c.destroy();
    }
  });

  it('announces a size lowered and raised again between answers, the smallest first, and indexes afresh', async () => {
    const c = await RawClient.open(server.port);
    try {
      const decoder = new HpackDecoder();
      const setTableSize = (size: number) => c.send(T.SETTINGS, 0, 0, Buffer.from([0, 1, ...u32(size)]));
      const blocks = await answerBlocks(c, 1, 3, () => {
        setTableSize(0);
        setTableSize(4096);
      });
      for (const block of blocks) assert.deepEqual(decoder.decode(block, 8192).headers, expected);
      // 0, then 4096 (0x3f 0xe1 0x1f), then :status 200 and content-type added again.
      assert.deepEqual([...blocks[1]!.subarray(0, 6)], [0x20, 0x3f, 0xe1, 0x1f, 0x88, 0x40 | 31]);
      const after = await answerBlocks(c, 7, 1);
      assert.deepEqual(decoder.decode(after[0]!, 8192).headers, expected);
      assert.ok(after[0]!.includes(0x80 | 62));
    } finally {
      c.destroy();
    }
  });
});

describe('HTTP/2 server connection: streams, flow control, hostile clients', () => {
  it('refuses streams past max_streams, and counts reset streams until their query is answered (rapid reset)', async () => {
    const held: (() => void)[] = [];
    let handling = 0;
    let mostAtOnce = 0;
    const server = await startServer({ maxStreams: 4 }, (_request, respond) => {
      handling++;
      mostAtOnce = Math.max(mostAtOnce, handling);
      held.push(() => {
        handling--;
        respond(text(200, 'late'));
      });
    });
    const c = await RawClient.open(server.port);
    try {
      for (let id = 1; id <= 7; id += 2) c.request(id, GET());
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(handling, 4);
      // The client gives up on all four; their queries are still being answered, so they still count.
      for (let id = 1; id <= 7; id += 2) c.send(T.RST_STREAM, 0, id, Buffer.from([0, 0, 0, 8]));
      c.request(9, GET());
      assert.ok(await c.waitFor((f) => f.type === T.RST_STREAM && f.stream === 9));
      assert.equal(c.reset(9), E.REFUSED_STREAM);
      // Open and reset at once, many times (CVE-2023-44487): refused, and then cut off.
      for (let id = 11; id < 11 + 2 * 150; id += 2) {
        c.request(id, GET());
        c.send(T.RST_STREAM, 0, id, Buffer.from([0, 0, 0, 8]));
      }
      assert.equal(await c.goaway(), E.ENHANCE_YOUR_CALM, 'more than 100 refused streams end the connection');
      assert.ok(mostAtOnce <= 4, `${mostAtOnce} requests handled at once`);
      for (const release of held.splice(0)) release();
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('sends answers within the client’s flow control windows', async () => {
    const server = await startServer({}, (_request, respond) => respond(text(200, 'x'.repeat(100))));
    // SETTINGS_INITIAL_WINDOW_SIZE = 10
    const c = await RawClient.open(server.port, Buffer.from([0, 4, 0, 0, 0, 10]));
    try {
      c.request(1, GET());
      await c.waitFor((f) => f.type === T.DATA && f.stream === 1);
      await new Promise((r) => setTimeout(r, 50));
      const sent = () => c.frames.filter((f) => f.type === T.DATA && f.stream === 1).reduce((n, f) => n + f.payload.length, 0);
      assert.equal(sent(), 10);
      c.send(T.WINDOW_UPDATE, 0, 1, Buffer.from([0, 0, 0, 40]));
      await c.waitFor(() => sent() >= 50);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(sent(), 50);
      c.send(T.WINDOW_UPDATE, 0, 1, Buffer.from([0, 0, 0, 100]));
      assert.equal(await c.body(1), 'x'.repeat(100));
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('gives the connection window back once half of it is owed, not after every POSTed query', async () => {
    // A WINDOW_UPDATE after every read went out alone, before the query's answer: one more TLS
    // record and one more wake-up of the client (an ODoH relay, a target's client) a query.
    // Short answers (the body's length): this client never gives back the server's window.
    const server = await startServer({}, (request, respond) => {
      void request.readBody(65535).then((body) => respond(Buffer.isBuffer(body) ? text(200, String(body.length)) : body));
    });
    const c = await RawClient.open(server.port);
    const credits = () => c.frames.filter((f) => f.type === T.WINDOW_UPDATE && f.stream === 0).map((f) => f.payload.readUInt32BE(0));
    try {
      // 100 bodies of 1,000 bytes, one after another: 100,000 bytes, past the 65,535 of the
      // window, so the queries past the 65th are answered only if the window came back.
      for (let i = 0; i < 100; i++) {
        const id = 1 + 2 * i;
        const headers = h2Frame(T.HEADERS, 0x4, id, block([[':method', 'POST'], [':scheme', 'https'], [':path', '/p'], ['content-length', '1000']]));
        c.write(Buffer.concat([headers, h2Frame(T.DATA, 0x1, id, Buffer.alloc(1000, 0x61))])); // one write: no wait on Nagle
        assert.equal(await c.body(id), '1000', `query ${i + 1}`);
        if (i === 0) assert.deepEqual(credits(), [], 'no WINDOW_UPDATE for the first query');
      }
      // Owed 33,000 after the 33rd, 66th and 99th query: each time given back whole, at once.
      assert.deepEqual(credits(), [33_000, 33_000, 33_000]);
      assert.equal(c.closed, false);
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('writes a turn of many answers in writes of at most one 16 KiB slab each, in order, with nothing copied twice', async () => {
    // 300 answers of 100 bytes, all resolved in one turn: about 45 KiB of frames. The output
    // grew by copying everything unflushed into a larger buffer for every frame past 16 KiB
    // (issue 24's reset-blocked attack then cost over 100 MB of RSS in seconds).
    const socket = new RecordingSocket();
    const connection = new H2ServerConnection(socket as unknown as net.Socket, { maxStreams: 1000, maxHeaderListSize: 8192, idleTimeoutMs: 5000, requestTimeoutMs: 5000 }, (_request, respond) => respond(text(200, 'x'.repeat(100))));
    const ids = Array.from({ length: 300 }, (_, i) => 1 + 2 * i);
    socket.emit('data', Buffer.concat([PREFACE, h2Frame(T.SETTINGS, 0, 0), ...ids.map((id) => h2Frame(T.HEADERS, 0x5, id, block(GET())))]));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(connection.holdings().unflushedBytes, 0);
    const sizes = socket.chunks.map((chunk) => chunk.length);
    assert.ok(sizes.length >= 3, `${sizes.length} writes`);
    assert.ok(Math.max(...sizes) <= 16_384, `writes of ${sizes.join(', ')} bytes`);
    const output = Buffer.concat(socket.chunks);
    const answered: number[] = [];
    for (let at = 0; at < output.length; ) {
      const length = output.readUIntBE(at, 3);
      if (output[at + 3] === T.DATA) {
        assert.equal(output.subarray(at + 9, at + 9 + length).toString(), 'x'.repeat(100));
        answered.push(output.readUInt32BE(at + 5));
      }
      at += 9 + length;
    }
    assert.deepEqual(answered, ids);
    connection.destroy();
  });

  it('stops reading from a client that does not read what it is sent', async () => {
    const server = await startServer({}, echo);
    const c = await RawClient.open(server.port);
    c.socket.pause(); // never read: PING answers pile up on the server's side
    try {
      const ping = Buffer.alloc(17);
      ping.writeUIntBE(8, 0, 3);
      ping[3] = T.PING;
      const burst = Buffer.concat(Array.from({ length: 4096 }, () => ping));
      let written = 0;
      for (let i = 0; i < 400 && c.socket.writableLength < 8 << 20; i++) {
        c.write(burst);
        written += burst.length;
        await new Promise((r) => setImmediate(r));
      }
      await new Promise((r) => setTimeout(r, 300));
      const read = server.sockets[0]!.bytesRead;
      assert.ok(read < written, `the server read all ${written} bytes`);
      assert.ok(server.sockets[0]!.writableLength < 16 << 20, `${server.sockets[0]!.writableLength} bytes queued on the server`);
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('after close(): GOAWAY, open streams answered, new ones ignored, then the connection ends', async () => {
    const held: (() => void)[] = [];
    const server = await startServer({}, (_request, respond) => held.push(() => respond(text(200, 'done'))));
    const c = await RawClient.open(server.port);
    try {
      c.request(1, GET());
      await new Promise((r) => setTimeout(r, 50));
      server.connections[0]!.close();
      const goaway = await c.waitFor((f) => f.type === T.GOAWAY);
      assert.equal(goaway!.payload.readUInt32BE(0), 1, 'last stream id');
      assert.equal(goaway!.payload.readUInt32BE(4), E.NO_ERROR);
      c.request(3, GET());
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(held.length, 1, 'a stream opened after GOAWAY reached the handler');
      held[0]!();
      assert.equal(await c.body(1), 'done');
      assert.ok(await c.closedWithin(3000));
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('closes an idle connection with GOAWAY after idle_timeout', async () => {
    const server = await startServer({ idleTimeoutMs: 200 }, echo);
    const c = await RawClient.open(server.port);
    try {
      assert.equal(await c.goaway(3000), E.NO_ERROR);
      assert.ok(await c.closedWithin(3000));
    } finally {
      c.destroy();
      await server.close();
    }
  });

  it('answers 431 to a header list over max_header_size, and keeps its table in step for the next request', async () => {
    const server = await startServer({ maxHeaderListSize: 1000 }, echo);
    const c = await RawClient.open(server.port);
    try {
      // A small field added to the table, then a large one without indexing: over the limit.
      const small = Buffer.concat([Buffer.from([0x40]), integer(0, 7, 3), Buffer.from('x-b'), integer(0, 7, 5), Buffer.from('small')]);
      c.send(T.HEADERS, 5, 1, Buffer.concat([block(GET()), small, block([['x-long', 'q'.repeat(2000)]])]));
      c.send(T.HEADERS, 5, 3, Buffer.concat([block(GET('/after')), Buffer.from([0xbe])])); // refers to the entry added above
      const status = await c.waitFor((f) => f.type === T.HEADERS && f.stream === 1);
      assert.deepEqual(new HpackDecoder().decode(status!.payload, 8192).headers[0], [':status', '431']);
      const after = JSON.parse((await c.body(3))!);
      assert.equal(after.path, '/after');
      assert.equal(after.headers['x-b'], 'small');
    } finally {
      c.destroy();
      await server.close();
    }
  });
});
