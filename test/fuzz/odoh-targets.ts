/**
 * Fuzz targets for ODoH's hand-written parsers and the services behind them: oblivious
 * messages as a target opens them (structure-aware too: damaged plaintexts sealed with the
 * right key, so they pass the authentication check and reach the plaintext parser), answers
 * as a client opens them, ObliviousDoHConfigs, and requests to a relay.
 */
import fc from 'fast-check';
import { MemoryLogger } from '../../core/logger.js';
import { encodeConfigs, parseConfigs } from '../../lib/odoh/configs.js';
import { OdohCryptoError, openQuery, PendingQuery, sealQuery, sealResponsePlaintext, type TargetKey } from '../../lib/odoh/crypto.js';
import { deriveTargetKey } from '../../lib/odoh/keys.js';
import { associatedData, CONFIGS_PATH, encodeMessage, MessageType, OBLIVIOUS_MEDIA_TYPE, OdohFormatError, parseMessage, plaintextWithPadding } from '../../lib/odoh/message.js';
import { OdohRelayService, type RelayForwarder } from '../../lib/odoh/relay.js';
import type { OdohRelayOptions } from '../../lib/odoh/server-options.js';
import { textReply } from '../../lib/http2/message.js';
import { OdohTargetService } from '../../lib/odoh/target.js';
import { bytesLike } from './mutate.js';
import { asBuffer, asJson, BugError, expectOnly, theDoor, wireSeeds, type FuzzTarget } from './targets.js';

const CLIENT = { address: '127.0.0.1', port: 1, family: 'IPv4' as const };
const key: TargetKey = await deriveTargetKey(Buffer.alloc(32, 5));
const target = new OdohTargetService({ seed: Buffer.alloc(32, 5), rotateMs: 86_400_000, overlapMs: 3_600_000 }, new MemoryLogger(), 'fuzz');
await target.start();
const queries = wireSeeds.filter((m) => (m[2]! & 0x80) === 0);
const sealedSeeds = await Promise.all(queries.slice(0, 6).map(async (q) => (await sealQuery(key.config, q)).message));

/** Seals a plaintext as a client would, whatever it holds: damage past the AEAD check. */
async function sealRaw(plaintext: Buffer): Promise<Buffer> {
  const sender = key.config.suite.hpke.setupSender(key.config.publicKey, Buffer.from('odoh query'));
  const sealed = sender.context.seal(associatedData(MessageType.query, key.config.keyId), plaintext);
  return encodeMessage({ type: MessageType.query, keyId: key.config.keyId, encrypted: Buffer.concat([sender.enc, sealed]) });
}

const TARGET_STATUSES = new Set([200, 400, 401, 403]);
const answerQuery = async (dns: Buffer) => (await theDoor()(dns, { client: CLIENT, transport: 'odoh', datagram: false })) ?? textReply(403, 'refused');

async function checkTarget(body: Buffer): Promise<void> {
  const reply = await target.answer(body, answerQuery);
  if (!TARGET_STATUSES.has(reply.status)) throw new BugError(`status ${reply.status}`);
  if (reply.headers['content-length'] !== reply.body.length) throw new BugError('content-length does not match the body');
  if (reply.status === 200 && parseMessage(reply.body).type !== MessageType.response) throw new BugError('a 200 that is not an oblivious answer');
}

const odohMessage: FuzzTarget<Buffer> = {
  name: 'odoh-message',
  inputs: 'mutated oblivious queries → message parser, key lookup, HPKE open, replay window, the door, sealed answer',
  arbitrary: bytesLike(sealedSeeds),
  seeds: sealedSeeds,
  fromCorpus: asBuffer,
  check: checkTarget,
};

const plaintextSeeds = queries.slice(0, 6).map((q, i) => plaintextWithPadding(q, i * 7));
const odohPlaintext: FuzzTarget<Buffer> = {
  name: 'odoh-plaintext',
  inputs: 'mutated query plaintexts, sealed with the target key → plaintext parser (lengths, padding), the door',
  arbitrary: bytesLike(plaintextSeeds),
  seeds: plaintextSeeds,
  fromCorpus: asBuffer,
  async check(plaintext) {
    if (plaintext.length === 0 || plaintext.length > 4000) return;
    await checkTarget(await sealRaw(plaintext));
  },
};

// ---- the client opening answers ----------------------------------------------------------------

const pendingSeed = await sealQuery(key.config, queries[0]!);
// The client's context for that query, from the target's side of it.
const opened = await openQuery(key, parseMessage(pendingSeed.message));
const pending = new PendingQuery(key.config.suite, opened.secret, opened.plaintext);
const answerSeeds = [0, 3, 40].map((padding) => sealResponsePlaintext(opened, plaintextWithPadding(wireSeeds.find((m) => (m[2]! & 0x80) !== 0) ?? queries[0]!, padding), Buffer.alloc(16, padding)));

const odohAnswer: FuzzTarget<Buffer> = {
  name: 'odoh-answer',
  inputs: "mutated oblivious answers → the client's message parser and AEAD open",
  arbitrary: bytesLike(answerSeeds),
  seeds: answerSeeds,
  fromCorpus: asBuffer,
  check(bytes) {
    try {
      pending.openResponse(bytes);
    } catch (err) {
      expectOnly(err, OdohFormatError, OdohCryptoError);
    }
  },
};

// ---- configs ------------------------------------------------------------------------------------

const configSeeds = [encodeConfigs([key.config.contents]), encodeConfigs([Buffer.from([0, 0x10, 0, 1, 0, 1, 0, 2, 9, 9]), key.config.contents])];
const odohConfigs: FuzzTarget<Buffer> = {
  name: 'odoh-configs',
  inputs: 'mutated ObliviousDoHConfigs → the config list parser',
  arbitrary: bytesLike(configSeeds),
  seeds: configSeeds,
  fromCorpus: asBuffer,
  check(bytes) {
    try {
      for (const config of parseConfigs(bytes).usable) {
        if (config.keyId.length !== config.suite.hashLength) throw new BugError('a key id of the wrong length');
        if (config.publicKey.length !== config.suite.publicKeyLength) throw new BugError('a public key of the wrong length');
      }
    } catch (err) {
      expectOnly(err, OdohFormatError, BugError);
      if (err instanceof BugError) throw err;
    }
  },
};

// ---- requests to a relay ------------------------------------------------------------------------

interface RelayInput {
  method: string;
  query: string;
  contentType: string | null;
  contentLength: string | null;
  body: Buffer;
}

const relayOptions: OdohRelayOptions = {
  targets: [{ host: 'dns.test', port: 443, authority: 'dns.test', addresses: ['127.0.0.1'] }],
  allowPrivate: true,
  extraCa: [],
  ratePerSecond: 1_000_000,
  maxInflight: 1000,
  timeoutMs: 1000,
};
let forwarded: string[] = [];
const forwarder: RelayForwarder = {
  async send(t, request) {
    forwarded.push(t.authority);
    return { body: request.method === 'GET' ? configSeeds[0]! : answerSeeds[0]! };
  },
  close() {},
};
const relayService = new OdohRelayService(relayOptions, forwarder);
const RELAY_STATUSES = new Set([200, 400, 403, 405, 413, 415]);

const relayRequests: FuzzTarget<RelayInput> = {
  name: 'odoh-relay',
  inputs: 'requests to an ODoH relay: methods, targethost/targetpath (repeated, missing, odd), media types, lengths, mutated bodies',
  arbitrary: fc.record({
    method: fc.constantFrom('POST', 'GET', 'PUT', 'post'),
    query: fc.oneof(
      fc.constantFrom('targethost=dns.test&targetpath=/dns-query', `targethost=DNS.TEST.:443&targetpath=${encodeURIComponent(CONFIGS_PATH)}`, 'targethost=dns.test', 'targetpath=/x', ''),
      fc.tuple(fc.constantFrom('dns.test', 'dns.test:443', 'dns.test:8443', 'evil.test', '127.0.0.1', '[::1]', 'dns.test:99999', 'dns.test:x', ''), fc.constantFrom('/dns-query', '/../x', 'x', '/a?b', CONFIGS_PATH, '', '/%2e%2e/x'), fc.boolean()).map(
        ([h, p, twice]) => `targethost=${encodeURIComponent(h)}&targetpath=${encodeURIComponent(p)}${twice ? `&targethost=${h}` : ''}`,
      ),
      fc.string({ maxLength: 40 }),
    ),
    contentType: fc.constantFrom(null, OBLIVIOUS_MEDIA_TYPE, `${OBLIVIOUS_MEDIA_TYPE}; x=y`, 'application/dns-message', ''),
    contentLength: fc.constantFrom(null, '10', '70000', '200000', 'abc'),
    body: bytesLike(sealedSeeds),
  }),
  seeds: [{ method: 'POST', query: 'targethost=dns.test&targetpath=/dns-query', contentType: OBLIVIOUS_MEDIA_TYPE, contentLength: null, body: sealedSeeds[0]! }],
  fromCorpus: asJson,
  async check(input) {
    forwarded = [];
    const reply = await relayService.serve(
      {
        method: input.method,
        path: `/proxy?${input.query}`,
        header: (name) => (name === 'content-type' ? input.contentType : name === 'content-length' ? input.contentLength : null) ?? undefined,
        readBody: async (limit) => (input.body.length > limit ? textReply(413, 'too large') : input.body),
      },
      CLIENT.address,
    );
    if (!RELAY_STATUSES.has(reply.status)) throw new BugError(`status ${reply.status}`);
    if (forwarded.some((a) => a !== 'dns.test')) throw new BugError(`forwarded to ${forwarded.join(', ')}`);
    if (reply.status === 200 && forwarded.length !== 1) throw new BugError('a 200 without a forward');
    if (reply.status !== 200 && forwarded.length !== 0) throw new BugError(`status ${reply.status} after forwarding`);
  },
};

export const odohTargets: FuzzTarget<any>[] = [odohMessage, odohPlaintext, odohAnswer, odohConfigs, relayRequests];
