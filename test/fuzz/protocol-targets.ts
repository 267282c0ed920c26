/**
 * Fuzz targets for the encrypted protocols' parsers: DNSCrypt queries as a server unwraps them,
 * DNSCrypt responses and certificate answers as a client unwraps them, the Anonymized DNSCrypt
 * relay header, DoH requests (GET `?dns=`, POST, the JSON form) and their JSON answers, the
 * HTTP/2 connection under DoH (its frames, HPACK and Huffman), answers from encrypted upstreams,
 * and the signed resolver lists of `sources`.
 *
 * Structure-aware: besides mutating the bytes on the wire, the DNSCrypt targets mutate the
 * plaintext and then encrypt it with the right keys, so damaged padding and damaged DNS messages
 * reach the code behind the authentication check, which random bytes never do.
 */
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { QType } from '../../core/dns/constants.js';
import { fitAnswerToQuery } from '../../core/dns/edns.js';
import { buildQuery } from '../../core/dns/message.js';
import { isResponse, readEdns, readId, sameQuestion } from '../../core/dns/wire.js';
import { WireError } from '../../core/errors.js';
import { parseDatagramLimits, parseStreamLimits } from '../../core/listeners/options.js';
import { buildCertQuery, certificatesFromAnswer, certQuestion } from '../../lib/dnscrypt/cert-query.js';
import { selectCertificate } from '../../lib/dnscrypt/certificate.js';
import { answerKey } from '../../lib/dnscrypt/channel.js';
import { HALF_NONCE_SIZE, NONCE_SIZE, RESOLVER_MAGIC, RESPONSE_HEADER_SIZE } from '../../lib/dnscrypt/constants.js';
import { pad, seal, sharedKey, x25519KeyPair } from '../../lib/dnscrypt/crypto.js';
import { decryptResponse, encryptQuery, encryptResponse, type ClientKeys } from '../../lib/dnscrypt/packet.js';
import { providerKeyPair } from '../../lib/dnscrypt/provider-key.js';
import { bytesToIp, ipToBytes, readRelayHeader, relayHeader } from '../../lib/dnscrypt/relay-header.js';
import { MinisignError, parsePublicKey, parseSignature, verifyMinisign } from '../../lib/minisign.js';
import { parseList } from '../../lib/sources/list.js';
import { destinationKind } from '../../core/net/destinations.js';
import { isPlainQuery } from '../../plugins/anonymize/relay-listener.js';
import { DnscryptListener } from '../../plugins/dnscrypt/listener.js';
import { H2ServerConnection } from '../../lib/http2/connection.js';
import { PREFACE } from '../../lib/http2/protocol.js';
import { encodeResponseHeaders, encodeResponseHeadersInto, HpackDecoder, HpackError } from '../../lib/http2/hpack.js';
import { encodeHuffman } from '../../lib/http2/huffman.js';
import { RequestFieldIndex } from '../../lib/http2/request-fields.js';
import { EncoderTable } from '../../lib/http2/encoder-table.js';
import { textReply, type HttpReply, type HttpRequest } from '../../lib/http2/message.js';
import { DNS_MESSAGE } from '../../lib/https-client/exchange.js';
import { answerToJson, DNS_JSON } from '../../plugins/doh/server/json.js';
import { DohService } from '../../plugins/doh/server/service.js';
import type net from 'node:net';
import { h2Frame, RecordingSocket } from '../helpers/h2-frames.js';
import { h2Stateful } from './h2-stateful.js';
import { ControlFrameReader, ControlType, controlFrame, DNSTAP_CONTENT_TYPE, FrameStreamsError, MAX_CONTROL_FRAME } from '../../lib/dnstap/frame-streams.js';
import { bytesLike, textLike } from './mutate.js';
import { asBuffer, asJson, asText, BugError, env, expectOnly, theDoor, wireSeeds, type FuzzTarget } from './targets.js';
import { loadSodium } from '../../lib/dnscrypt/sodium.js';
import { ServiceContainer } from '../../core/services.js';

// The DNSCrypt targets need libsodium, which Veil loads only when a configuration uses it.
await loadSodium();

const CLIENT = { address: '127.0.0.1', port: 1, family: 'IPv4' as const };

// ---- DNSCrypt: one server (a real listener, never bound) and one client's keys ------------------

const PROVIDER = '2.dnscrypt-cert.fuzz.test';
const services = ServiceContainer.root();
const providerSeed = Buffer.alloc(32, 7);
const listener = new DnscryptListener(
  { scheme: 'dnscrypt', host: '127.0.0.1', port: 0, path: '', text: 'dnscrypt://127.0.0.1:0' },
  { providerName: PROVIDER, keyFile: 'provider.key', providerSeed: providerSeed.toString('hex'), stream: parseStreamLimits([]), datagram: parseDatagramLimits([]), keyExchanges: { perClient: 1_000_000, total: 10_000_000 } },
  { ...env, reusePort: false, service: (token) => services.get(token) },
);
listener.certificates.rotate();
listener.setHandler((query, info) => theDoor()(query, info));
const serverCert = listener.certificates.all[0]!.cert;
const clientPair = x25519KeyPair();
const clientKeys: ClientKeys = {
  esVersion: serverCert.esVersion,
  clientMagic: serverCert.clientMagic,
  clientPublicKey: clientPair.publicKey,
  sharedKey: sharedKey(serverCert.esVersion, clientPair.secretKey, serverCert.resolverPublicKey)!,
};
const clientNonce = Buffer.alloc(HALF_NONCE_SIZE, 0x5a);
const serve = (packet: Buffer, datagram: boolean): Promise<Buffer | null> =>
  (listener as unknown as { serve(p: Buffer, i: unknown, d: boolean): Promise<Buffer | null> }).serve(packet, { client: CLIENT, transport: 'dnscrypt', datagram }, datagram);

/** Plaintext damaged before encryption: `raw` skips the 0x80 padding, so unpadding must cope. */
interface InnerDamage {
  plaintext: Buffer;
  paddedLength: number;
  raw: boolean;
}
type Wrapped = { outer: Buffer; datagram: boolean } | { inner: InnerDamage; datagram: boolean };

const queryPlaintexts = wireSeeds.filter((m) => m.length >= 12 && !isResponse(m));
const validQueries = [
  ...queryPlaintexts.map((q) => encryptQuery(clientKeys, clientNonce, q, 256)),
  encryptQuery(clientKeys, clientNonce, queryPlaintexts[0]!, 1024),
  buildCertQuery(PROVIDER, 0x4242),
  buildQuery(PROVIDER, QType.TXT, { id: 9 }),
];

const innerDamage = (seeds: Buffer[]): fc.Arbitrary<InnerDamage> =>
  fc.record({ plaintext: bytesLike(seeds), paddedLength: fc.integer({ min: 0, max: 1100 }), raw: fc.boolean() });

function sealQuery(d: InnerDamage): Buffer {
  const plain = d.raw || d.paddedLength <= d.plaintext.length ? d.plaintext : pad(d.plaintext, d.paddedLength);
  const nonce = Buffer.alloc(NONCE_SIZE);
  clientNonce.copy(nonce);
  return Buffer.concat([clientKeys.clientMagic, clientKeys.clientPublicKey, clientNonce, seal(clientKeys.esVersion, clientKeys.sharedKey, nonce, plain)]);
}

const dnscryptServer: FuzzTarget<Wrapped> = {
  name: 'dnscrypt-server',
  inputs: 'mutated DNSCrypt and certificate queries, and mutated plaintext encrypted with valid keys → the dnscrypt listener (unwrap, door, wrap)',
  arbitrary: fc.oneof(
    fc.record({ outer: bytesLike(validQueries), datagram: fc.boolean() }),
    fc.record({ inner: innerDamage(queryPlaintexts), datagram: fc.boolean() }),
  ),
  seeds: validQueries.map((outer) => ({ outer, datagram: true })),
  fromCorpus: asJson,
  async check(input) {
    const packet = 'outer' in input ? input.outer : sealQuery(input.inner);
    const answer = await serve(packet, input.datagram);
    if (answer === null) return;
    const encrypted = answer.length >= 8 && answer.compare(RESOLVER_MAGIC, 0, 8, 0, 8) === 0;
    if (!encrypted) {
      // the only plain answer is to a certificate query
      if (!certQuestion(packet)) throw new BugError('a plain answer to something that is not a certificate query');
      return;
    }
    if (input.datagram && answer.length > packet.length) throw new BugError(`UDP answer of ${answer.length} bytes to a ${packet.length}-byte query (amplification)`);
    const inner = decryptResponse(clientKeys.esVersion, clientKeys.sharedKey, packet.subarray(40, 52), answer);
    if (!inner) throw new BugError('the listener sent an answer its client cannot decrypt');
    if (!isResponse(inner)) throw new BugError('the decrypted answer is not a response');
  },
};

// ---- DNSCrypt client: responses and certificate answers ------------------------------------------

const clientQuery = buildQuery('www.example.org', QType.A, { id: 0x1234 });
const clientAnswers = wireSeeds.filter((m) => m.length >= 12 && isResponse(m));
const validResponses = clientAnswers.map((a) => encryptResponse(clientKeys.esVersion, clientKeys.sharedKey, clientNonce, Buffer.alloc(HALF_NONCE_SIZE, 1), a, Math.ceil((a.length + 1) / 64) * 64));

function sealResponse(d: InnerDamage): Buffer {
  const plain = d.raw || d.paddedLength <= d.plaintext.length ? d.plaintext : pad(d.plaintext, d.paddedLength);
  const header = Buffer.concat([RESOLVER_MAGIC, clientNonce, Buffer.alloc(HALF_NONCE_SIZE, 1)]);
  return Buffer.concat([header, seal(clientKeys.esVersion, clientKeys.sharedKey, header.subarray(8, RESPONSE_HEADER_SIZE), plain)]);
}

const dnscryptClient: FuzzTarget<Wrapped> = {
  name: 'dnscrypt-client',
  inputs: 'mutated DNSCrypt responses, and mutated answers encrypted with the right key → answer key, decrypt, unpad, match to the query',
  arbitrary: fc.oneof(
    fc.record({ outer: bytesLike(validResponses), datagram: fc.constant(true) }),
    fc.record({ inner: innerDamage(clientAnswers), datagram: fc.constant(true) }),
  ),
  seeds: validResponses.map((outer) => ({ outer, datagram: true })),
  fromCorpus: asJson,
  check(input) {
    const packet = 'outer' in input ? input.outer : sealResponse(input.inner);
    answerKey(packet);
    const answer = decryptResponse(clientKeys.esVersion, clientKeys.sharedKey, clientNonce, packet);
    if (answer === null) return;
    if (answer.length < 12 || answer.length > packet.length) throw new BugError(`decrypted answer of ${answer.length} bytes`);
    // what the upstream does next with it: every step must take any bytes
    if (isResponse(answer) && readId(answer) === readId(clientQuery)) sameQuestion(clientQuery, answer);
  },
};

const provider = providerKeyPair(providerSeed);
const certQuery = buildCertQuery(PROVIDER, 0x4242);
const certAnswers = [(listener as unknown as { answerCertQuery(p: Buffer, i: unknown): Buffer }).answerCertQuery(certQuery, { client: CLIENT, transport: 'dnscrypt', datagram: true })];

const dnscryptCerts: FuzzTarget<Buffer> = {
  name: 'dnscrypt-cert',
  inputs: 'mutated certificate answers (TXT records carrying signed certificates) → certificate extraction, parsing, verification, choice',
  arbitrary: bytesLike(certAnswers),
  seeds: certAnswers,
  fromCorpus: asBuffer,
  check(answer) {
    let certs: Buffer[];
    try {
      certs = certificatesFromAnswer(certQuery, answer);
    } catch (err) {
      // its own refusals are plain Errors; a RangeError or TypeError is a bug
      if (err instanceof WireError || (err instanceof Error && err.constructor === Error)) return;
      throw new BugError(`unexpected ${(err as Error).name}: ${(err as Error).message}`);
    }
    const { chosen } = selectCertificate(certs, provider.publicKey, Math.floor(Date.now() / 1000));
    if (chosen && !certs.includes(chosen.bytes)) throw new BugError('chose a certificate that was not in the answer');
  },
};

// ---- Anonymized DNSCrypt relay header -----------------------------------------------------------

const relaySeeds = [
  Buffer.concat([relayHeader('192.0.2.1', 443), validQueries[0]!]),
  Buffer.concat([relayHeader('2001:db8::1', 8443), certQuery]),
  Buffer.concat([relayHeader('::ffff:10.0.0.1', 53), validQueries[1]!]),
];

const relay: FuzzTarget<Buffer> = {
  name: 'relay',
  inputs: 'mutated relayed packets → relay header, destination check, inner packet kind',
  arbitrary: bytesLike(relaySeeds),
  seeds: relaySeeds,
  fromCorpus: asBuffer,
  check(packet) {
    const relayed = readRelayHeader(packet);
    if (!relayed) return;
    if (relayed.addressBytes.length !== 16) throw new BugError('address of another length than 16');
    // the address must survive the trip through its text form, or the relay sends elsewhere
    if (!ipToBytes(relayed.host).equals(relayed.addressBytes)) throw new BugError(`address ${relayed.addressBytes.toString('hex')} read as ${relayed.host}`);
    if (bytesToIp(ipToBytes(relayed.host)) !== relayed.host) throw new BugError(`${relayed.host} does not round-trip`);
    destinationKind(relayed.addressBytes);
    certQuestion(relayed.inner);
    isPlainQuery(relayed.inner);
  },
};

// ---- DoH requests, as the https:// and http:// listeners see them ------------------------------

interface DohInput {
  method: string;
  path: string;
  params: Array<[string, string]>;
  contentType: string | null;
  contentLength: string | null;
  accept: string | null;
  body: Buffer;
}

const service = new DohService('/dns-query', 'https', () => theDoor());
const STATUSES = new Set([200, 400, 403, 404, 405, 408, 413, 415]);
const queries = wireSeeds.filter((m) => !isResponse(m));
const base64urlish = fc.oneof(
  bytesLike(queries).map((b) => b.toString('base64url')),
  fc.tuple(bytesLike(queries), fc.nat(), fc.constantFrom('+', '/', '=', '==', '%', ' ', '.', 'é')).map(([b, at, c]) => {
    const text = b.toString('base64url');
    const i = text.length ? at % text.length : 0;
    return text.slice(0, i) + c + text.slice(i);
  }),
);
const param: fc.Arbitrary<[string, string]> = fc.oneof(
  fc.tuple(fc.constant('dns'), base64urlish),
  fc.tuple(fc.constant('name'), textLike(['www.example.org', 'a.test.', '.', 'x\\.y.test'], 'abcxyz.-\\0123\x00 é*')),
  fc.tuple(fc.constant('type'), fc.constantFrom('A', 'AAAA', 'txt', '65', '0', '65535', '70000', 'bogus', '')),
  fc.tuple(fc.constantFrom('do', 'cd', 'ct'), fc.constantFrom('1', 'true', '0', '')),
  fc.tuple(fc.string({ maxLength: 6 }), fc.string({ maxLength: 20 })),
);
const dohInput: fc.Arbitrary<DohInput> = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'get'),
  path: fc.constantFrom('/dns-query', '/dns-query/', '/other', '', '/dns-query#x'),
  params: fc.array(param, { maxLength: 5 }),
  contentType: fc.constantFrom(null, DNS_MESSAGE, `${DNS_MESSAGE}; charset=x`, 'APPLICATION/DNS-MESSAGE', 'text/plain', ''),
  contentLength: fc.constantFrom(null, '12', '65535', '65536', '99999', 'abc', '-1'),
  accept: fc.constantFrom(null, DNS_JSON, DNS_MESSAGE, '*/*'),
  body: fc.oneof(bytesLike(queries), fc.constant(Buffer.alloc(70000))),
});

function dohRequest(input: DohInput): HttpRequest {
  const query = input.params.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  return {
    method: input.method,
    path: query ? `${input.path}?${query}` : input.path,
    header: (name) => (name === 'content-type' ? input.contentType : name === 'content-length' ? input.contentLength : name === 'accept' ? input.accept : null) ?? undefined,
    readBody: async (limit) => (input.body.length > limit ? textReply(413, 'too large') : input.body),
  };
}

const dohRequests: FuzzTarget<DohInput> = {
  name: 'doh-request',
  inputs: 'DoH requests: methods, paths, ?dns= with damaged base64url, ?name=&type= JSON queries, content types and lengths, mutated bodies → the DoH service and the door',
  arbitrary: dohInput,
  seeds: [
    { method: 'GET', path: '/dns-query', params: [['dns', queries[0]!.toString('base64url')]], contentType: null, contentLength: null, accept: null, body: Buffer.alloc(0) },
    { method: 'POST', path: '/dns-query', params: [], contentType: DNS_MESSAGE, contentLength: null, accept: null, body: queries[0]! },
    { method: 'GET', path: '/dns-query', params: [['name', 'www.example.org'], ['type', 'AAAA']], contentType: null, contentLength: null, accept: DNS_JSON, body: Buffer.alloc(0) },
  ],
  fromCorpus: asJson,
  async check(input) {
    const reply: HttpReply = await service.serve(dohRequest(input), CLIENT);
    if (!STATUSES.has(reply.status)) throw new BugError(`status ${reply.status}`);
    if (reply.headers['content-length'] !== reply.body.length) throw new BugError('content-length does not match the body');
    if (reply.status !== 200) return;
    if (reply.headers['content-type'] === DNS_JSON) {
      JSON.parse(reply.body.toString('utf8'));
      return;
    }
    if (reply.body.length < 12 || !isResponse(reply.body)) throw new BugError('a 200 whose body is not a DNS response');
  },
};

// ---- HTTP/2 under DoH: HPACK blocks, and whole client byte streams -------------------------------

/** A request header block the way clients write them: static indexes, Huffman, table inserts. */
function requestBlock(path: string, extra: [string, string][] = []): Buffer {
  const literal = (indexing: boolean, nameIndex: number, value: string) => {
    const coded = encodeHuffman(value);
    return Buffer.concat([Buffer.from([(indexing ? 0x40 : 0x00) | nameIndex]), Buffer.from([0x80 | coded.length]), coded]);
  };
  const parts = [Buffer.from([0x82, 0x87]), literal(true, 4, path), literal(true, 1, 'dns.test')];
  for (const [name, value] of extra) parts.push(Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value));
  return Buffer.concat(parts);
}

const hpackSeeds = [
  requestBlock('/dns-query?dns=' + queries[0]!.toString('base64url')),
  requestBlock('/dns-query', [['content-type', DNS_MESSAGE], ['x-a', 'b']]),
  Buffer.from([0x82, 0x87, 0xbe, 0x3f, 0xe1, 0x1f]), // an index into an empty table; a table size update after a field
  encodeResponseHeaders(200, { 'content-type': DNS_MESSAGE, 'content-length': 40, 'cache-control': 'max-age=300' }),
];

const hpack: FuzzTarget<Buffer[]> = {
  name: 'hpack',
  inputs: 'sequences of mutated header blocks (Huffman strings, indexes, table updates) → one HPACK decoder',
  arbitrary: fc.array(bytesLike(hpackSeeds), { minLength: 1, maxLength: 4 }),
  seeds: [hpackSeeds.slice(0, 2), [hpackSeeds[2]!], [hpackSeeds[3]!]],
  fromCorpus: asJson,
  check(blocks) {
    const decoder = new HpackDecoder();
    for (const block of blocks) {
      try {
        const { headers, size } = decoder.decode(block, 512);
        const counted = headers.reduce((n, [name, value]) => n + name.length + value.length + 32, 0);
        if (counted > 512 || counted > size) throw new BugError(`headers of ${counted} bytes kept, limit 512, size ${size}`);
      } catch (err) {
        expectOnly(err, HpackError);
        return; // a connection error: the decoder is not used again
      }
    }
  },
};

/** One step of a client's connection: a request of some kind, or a table size the server sets. */
type FieldStep = { size: number } | { authority: string; path: string; type: string; get: boolean };

/**
 * What Veil's HTTP/2 client writes at the start of a request's header block (as
 * client-connection.ts does): the table size owed, then the fields, constant ones indexed.
 */
function requestFields(fields: RequestFieldIndex, step: Exclude<FieldStep, { size: number }>): Buffer {
  const parts: number[] = [];
  fields.begin(parts);
  parts.push(0x80 | (step.get ? 2 : 3), 0x80 | 7);
  fields.field(parts, 1, ':authority', step.authority, true);
  fields.field(parts, 4, ':path', step.path, !step.get);
  fields.field(parts, 19, 'accept', step.type, true);
  if (!step.get) fields.field(parts, 31, 'content-type', step.type, true);
  return Buffer.from(parts);
}

const fieldStep: fc.Arbitrary<FieldStep> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ size: fc.oneof(fc.constantFrom(0, 40, 100, 160, 4096, 65536), fc.integer({ min: 0, max: 5000 })) }) },
  {
    weight: 6,
    arbitrary: fc.record({
      authority: fc.oneof(fc.constantFrom('dns.test', 'dns.test:8443', `${'long-label.'.repeat(22)}test`), fc.string({ unit: 'binary-ascii', maxLength: 300 })),
      path: fc.oneof(fc.constantFrom('/dns-query', '/proxy'), fc.string({ unit: 'binary-ascii', maxLength: 80 })),
      type: fc.constantFrom(DNS_MESSAGE, 'application/oblivious-dns-message'),
      get: fc.boolean(),
    }),
  },
);

/** The client's model of the server's table against the server's decoder: every request decodes to the fields sent. */
const hpackRequestFields: FuzzTarget<FieldStep[]> = {
  name: 'hpack-request-fields',
  inputs: "requests of mixed kinds and table sizes set between them → Veil's client request fields → one HPACK decoder",
  arbitrary: fc.array(fieldStep, { minLength: 1, maxLength: 40 }),
  seeds: [
    [{ authority: 'dns.test', path: '/dns-query', type: DNS_MESSAGE, get: false }, { authority: 'dns.test', path: '/dns-query', type: DNS_MESSAGE, get: false }],
    [{ size: 100 }, { authority: 'dns.test', path: '/dns-query', type: DNS_MESSAGE, get: false }, { size: 0 }, { size: 4096 }, { authority: 'dns.test', path: '/q?dns=AAAB', type: DNS_MESSAGE, get: true }],
  ],
  fromCorpus: asJson,
  check(steps) {
    const fields = new RequestFieldIndex();
    decodeEach(steps, 'the server', (size) => fields.allow(size), (step) => {
      const expected: [string, string][] = [
        [':method', step.get ? 'GET' : 'POST'],
        [':scheme', 'https'],
        [':authority', step.authority],
        [':path', step.path],
        ['accept', step.type],
      ];
      if (!step.get) expected.push(['content-type', step.type]);
      return { block: requestFields(fields, step), expected };
    });
  },
};

/**
 * One encoder's header blocks, in order, into one decoder (which announced 4096, the default):
 * a size step is the table size the decoding end sets, and every block must decode to the
 * fields sent.
 */
function decodeEach<S>(steps: (S | { size: number })[], decoding: string, allow: (size: number) => void, encode: (step: S) => { block: Buffer; expected: string[][] }): void {
  const decoder = new HpackDecoder();
  for (const step of steps) {
    if (typeof step === 'object' && step !== null && 'size' in step) {
      allow(step.size);
      continue;
    }
    const { block, expected } = encode(step as S);
    let decoded: [string, string][];
    try {
      decoded = decoder.decode(block, 1 << 20).headers;
    } catch (err) {
      throw new BugError(`${decoding} cannot decode a block: ${(err as Error).message}`, { cause: err });
    }
    if (JSON.stringify(decoded) !== JSON.stringify(expected)) throw new BugError(`decoded ${JSON.stringify(decoded)}, sent ${JSON.stringify(expected)}`);
  }
}

/** One step of a server's connection: an answer of some kind, written into so much room, or a table size the client sets. */
type AnswerStep = { size: number } | { status: number; type: string; headers: [string, string | number][]; room: number };

const answerStep: fc.Arbitrary<AnswerStep> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ size: fc.oneof(fc.constantFrom(0, 40, 100, 4096, 65536), fc.integer({ min: 0, max: 5000 })) }) },
  {
    weight: 6,
    arbitrary: fc.record({
      status: fc.constantFrom(200, 400, 413, 415, 500),
      type: fc.oneof(fc.constantFrom(DNS_MESSAGE, 'application/oblivious-dns-message', 'text/plain; charset=utf-8'), fc.string({ unit: 'binary-ascii', maxLength: 300 })),
      headers: fc.array(
        fc.tuple(fc.constantFrom('cache-control', 'content-length', 'x-veil', 'server'), fc.oneof(fc.string({ unit: 'binary-ascii', maxLength: 60 }), fc.nat({ max: 100_000 }))),
        { maxLength: 3 },
      ),
      // The room left in the connection's output: a block that does not fit is encoded again on its own.
      room: fc.integer({ min: 1, max: 400 }),
    }),
  },
);

/**
 * The server's model of the client's table against the client's decoder: every answer decodes
 * to the fields sent, whether its block fitted the room the first time or was encoded again.
 */
const hpackAnswerFields: FuzzTarget<AnswerStep[]> = {
  name: 'hpack-answer-fields',
  inputs: "answers of mixed kinds, each into a random room, and table sizes set between them → Veil's server answer fields → one HPACK decoder",
  arbitrary: fc.array(answerStep, { minLength: 1, maxLength: 40 }),
  seeds: [
    [{ status: 200, type: DNS_MESSAGE, headers: [['cache-control', 'max-age=300'], ['content-length', 45]], room: 400 }, { status: 200, type: DNS_MESSAGE, headers: [], room: 3 }],
    [{ size: 0 }, { status: 200, type: DNS_MESSAGE, headers: [], room: 1 }, { size: 100 }, { size: 4096 }, { status: 415, type: DNS_MESSAGE, headers: [], room: 400 }],
  ],
  fromCorpus: asJson,
  check(steps) {
    const table = new EncoderTable();
    decodeEach(steps, 'the client', (size) => table.allow(size), (step) => {
      const headers: Record<string, string | number> = { 'content-type': step.type };
      for (const [name, value] of step.headers) headers[name] = value;
      const room = Buffer.alloc(step.room);
      const end = encodeResponseHeadersInto(step.status, headers, room, 0, table);
      const block = end >= 0 ? room.subarray(0, end) : encodeResponseHeaders(step.status, headers, table);
      const expected = [[':status', String(step.status)], ...Object.entries(headers).map(([name, value]) => [name, String(value)])];
      return { block, expected };
    });
  },
};

const h2Seeds = [
  Buffer.concat([
    PREFACE,
    h2Frame(4, 0, 0, Buffer.from([0, 4, 0, 0, 0, 100])),
    h2Frame(1, 5, 1, requestBlock('/dns-query?dns=' + queries[0]!.toString('base64url'))),
    h2Frame(1, 4, 3, requestBlock('/dns-query', [['content-type', DNS_MESSAGE]])),
    h2Frame(0, 0, 3, queries[0]!.subarray(0, 5)),
    h2Frame(0, 1, 3, queries[0]!.subarray(5)),
    h2Frame(6, 0, 0, Buffer.alloc(8)),
    h2Frame(8, 0, 1, Buffer.from([0, 0, 1, 0])),
    h2Frame(3, 0, 3, Buffer.from([0, 0, 0, 8])),
  ]),
  Buffer.concat([PREFACE, h2Frame(4, 0, 0, Buffer.alloc(0)), h2Frame(1, 0, 1, requestBlock('/dns-query').subarray(0, 4)), h2Frame(9, 4, 1, requestBlock('/dns-query').subarray(4))]),
];

const h2Connection: FuzzTarget<Buffer> = {
  name: 'h2-connection',
  inputs: 'mutated client byte streams (preface, SETTINGS, HEADERS/CONTINUATION, DATA, PING, WINDOW_UPDATE, RST_STREAM), in two reads → the DoH HTTP/2 connection and the service behind it',
  arbitrary: bytesLike(h2Seeds),
  seeds: h2Seeds,
  fromCorpus: asBuffer,
  async check(input) {
    const socket = new RecordingSocket();
    // Errors inside the connection end it (GOAWAY); none may escape to the caller.
    new H2ServerConnection(socket as unknown as net.Socket, { maxStreams: 8, maxHeaderListSize: 8192, idleTimeoutMs: 5000, requestTimeoutMs: 5000 }, (view, respond) => {
      void service.serve(view, CLIENT).then(respond);
    });
    const middle = input.length >> 1;
    socket.emit('data', input.subarray(0, middle));
    socket.emit('data', input.subarray(middle));
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    socket.emit('close'); // settles bodies still awaited and their timers
    const out = Buffer.concat(socket.chunks);
    if (out.length < 9 || out[3] !== 4) throw new BugError('the connection did not start with SETTINGS');
    // The connection turns its own exceptions into GOAWAY INTERNAL_ERROR: for the fuzzer, a bug.
    for (let at = 0; at + 9 <= out.length; at += 9 + out.readUIntBE(at, 3)) {
      if (out[at + 3] === 7 && at + 17 <= out.length && out.readUInt32BE(at + 13) === 2) throw new BugError('GOAWAY INTERNAL_ERROR: an exception inside the connection');
    }
  },
};

// ---- answers from upstreams: the JSON rendering, and fitting DoT/DoH answers to the query -------

const answerSeeds = wireSeeds.filter((m) => isResponse(m));
answerSeeds.push(
  dnsPacket.encode({
    type: 'response',
    id: 1,
    questions: [{ type: 'A', name: 'x.test' }],
    answers: [
      { type: 'SRV', name: 'x.test', ttl: 5, data: { priority: 1, weight: 2, port: 3, target: 's.x.test' } },
      { type: 'PTR', name: 'x.test', ttl: 5, data: 'p.x.test' },
      { type: 'NS', name: 'x.test', ttl: 5, data: 'ns.x.test' },
      { type: 'AAAA', name: 'x.test', ttl: 5, data: '2001:db8::1' },
    ],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [{ code: 12, length: 8 } as never] }],
  }),
);

const dohJson: FuzzTarget<Buffer> = {
  name: 'doh-json',
  inputs: 'mutated answers (an upstream\'s bytes) → the DoH JSON rendering',
  arbitrary: bytesLike(answerSeeds),
  seeds: answerSeeds,
  fromCorpus: asBuffer,
  check(answer) {
    let text: string;
    try {
      text = answerToJson(answer);
    } catch (err) {
      expectOnly(err, WireError);
      return;
    }
    JSON.parse(text);
  },
};

const upstreamAnswer: FuzzTarget<[Buffer, boolean]> = {
  name: 'upstream-answer',
  inputs: 'mutated answers from a DoT or DoH upstream → padding and OPT removal (fitAnswerToQuery)',
  arbitrary: fc.tuple(bytesLike(answerSeeds).filter((b) => b.length >= 12), fc.boolean()),
  seeds: answerSeeds.map((a) => [a, true] as [Buffer, boolean]),
  fromCorpus: asJson,
  check([answer, hadEdns]) {
    let fitted: Buffer;
    try {
      fitted = fitAnswerToQuery(answer, hadEdns);
    } catch (err) {
      expectOnly(err, WireError);
      return;
    }
    if (fitted.length > answer.length) throw new BugError('fitting made the answer larger');
    if (readId(fitted) !== readId(answer)) throw new BugError('fitting changed the ID');
    if (fitted !== answer && !hadEdns && readEdns(fitted) !== null) throw new BugError('an OPT record left for a client that sent none');
  },
};

// ---- sources: signed resolver lists -------------------------------------------------------------

const listSeed = `# Resolvers\n\nA preamble.\n\n## one\n\nA resolver.\n\nsdns://AgcAAAAAAAAABzEuMC4wLjEAEmRucy5jbG91ZGZsYXJlLmNvbQovZG5zLXF1ZXJ5\n\n## two\n// comment\nsdns://gRE5NC4xOTguNDEuMjM1OjQ0Mw\nsdns://broken\n`;
const sigSeed = `untrusted comment: signature\nRUQAAAAAAAAAAA${'A'.repeat(86)}==\ntrusted comment: timestamp:1\n${'A'.repeat(86)}==\n`;
const keySeed = `untrusted comment: minisign public key\nRWQAAAAAAAAAAA${'A'.repeat(42)}\n`;

const lists: FuzzTarget<string> = {
  name: 'sources',
  inputs: 'random text and mutated resolver lists, .minisig files and public keys → list parser, minisign parsing and verification',
  arbitrary: textLike([listSeed, sigSeed, keySeed], 'abcdefABCDEF0123456789+/=#: \n\r-_sdn/'),
  seeds: [listSeed, sigSeed, keySeed],
  fromCorpus: asText,
  check(text) {
    for (const entry of parseList(text)) {
      if (entry.stamps.length !== entry.stampTexts.length) throw new BugError('stamps and their texts out of step');
    }
    try {
      const key = parsePublicKey(text);
      verifyMinisign(Buffer.from(listSeed), sigSeed, key);
    } catch (err) {
      expectOnly(err, MinisignError);
    }
    try {
      parseSignature(text);
    } catch (err) {
      expectOnly(err, MinisignError);
    }
  },
};

const acceptSeed = controlFrame(ControlType.ACCEPT, DNSTAP_CONTENT_TYPE);
const finishSeed = controlFrame(ControlType.FINISH);

/** What a dnstap reader sends back on a bidirectional Frame Streams connection, cut anywhere. */
const dnstapControl: FuzzTarget<Buffer> = {
  name: 'dnstap-control',
  inputs: 'random and mutated bytes (control frames of a Frame Streams reader), fed in pieces → the dnstap writer\'s control-frame reader',
  arbitrary: bytesLike([Buffer.concat([acceptSeed, finishSeed])]),
  seeds: [acceptSeed, finishSeed, Buffer.concat([acceptSeed, finishSeed]), Buffer.alloc(12), dataFrameOf(5)],
  fromCorpus: asBuffer,
  check(bytes) {
    for (const pieces of [1, 3, bytes.length || 1]) {
      const reader = new ControlFrameReader();
      const step = Math.max(1, Math.ceil(bytes.length / pieces));
      try {
        for (let at = 0; at < bytes.length; at += step) {
          for (const frame of reader.push(bytes.subarray(at, at + step))) {
            if (frame.contentTypes.some((t) => t.length > MAX_CONTROL_FRAME)) throw new BugError('a content type longer than its frame');
          }
          if ((reader as unknown as { pending: Buffer }).pending.length > 8 + MAX_CONTROL_FRAME + step) throw new BugError('the reader holds more than one frame');
        }
      } catch (err) {
        expectOnly(err, FrameStreamsError);
      }
    }
    // What we write, the reader reads back the same.
    const written = controlFrame(ControlType.START, bytes.toString('latin1').slice(0, 64));
    const [again] = new ControlFrameReader().push(written);
    if (again?.type !== ControlType.START || again.contentTypes[0] !== bytes.toString('latin1').slice(0, 64)) throw new BugError('control frame round trip');
  },
};

function dataFrameOf(length: number): Buffer {
  const frame = Buffer.alloc(4 + length);
  frame.writeUInt32BE(length, 0);
  return frame;
}

export const protocolTargets: FuzzTarget<any>[] = [dnscryptServer, dnscryptClient, dnscryptCerts, relay, dohRequests, hpack, hpackRequestFields, hpackAnswerFields, h2Connection, h2Stateful, dohJson, upstreamAnswer, lists, dnstapControl];
