/** DNSCrypt v2 and Anonymized DNSCrypt on the wire: magics, sizes, versions. */
import { Buffer } from 'node:buffer';

/** Encryption systems a certificate can name (es-version). */
export const EsVersion = {
  /** X25519-XSalsa20Poly1305: gone from the spec, still served by some resolvers (dnsdist). */
  xsalsa20poly1305: 1,
  /** X25519-XChaCha20Poly1305: what Veil's listener serves. */
  xchacha20poly1305: 2,
} as const;
export type EsVersionNumber = (typeof EsVersion)[keyof typeof EsVersion];

export const CERT_MAGIC = Buffer.from('DNSC', 'latin1');
/** A certificate without extensions. */
export const CERT_SIZE = 124;
/** Start of the signed part (resolver key, client magic, serial, validity, extensions). */
export const CERT_SIGNED_START = 72;

/** Every response starts with these 8 bytes ("r6fnvWj8"). */
export const RESOLVER_MAGIC = Buffer.from('r6fnvWj8', 'latin1');

export const CLIENT_MAGIC_SIZE = 8;
export const PUBLIC_KEY_SIZE = 32;
export const HALF_NONCE_SIZE = 12;
export const NONCE_SIZE = 24;
export const TAG_SIZE = 16;

/** client-magic, client public key, client half-nonce. */
export const QUERY_HEADER_SIZE = CLIENT_MAGIC_SIZE + PUBLIC_KEY_SIZE + HALF_NONCE_SIZE;
/** Header plus authentication tag: 68 bytes around the padded query. */
export const QUERY_OVERHEAD = QUERY_HEADER_SIZE + TAG_SIZE;
/** resolver magic, client half-nonce, resolver half-nonce. */
export const RESPONSE_HEADER_SIZE = RESOLVER_MAGIC.length + NONCE_SIZE;
/** Header plus tag: 48 bytes around the padded response. */
export const RESPONSE_OVERHEAD = RESPONSE_HEADER_SIZE + TAG_SIZE;

/** Padding is 0x80 then zeros, at most this many bytes in all (spec §3 and §8). */
export const MAX_PADDING = 256;
/** Queries over UDP are padded to at least this many bytes of plaintext (spec §3). */
export const MIN_UDP_QUERY_LENGTH = 256;
export const PADDING_BLOCK = 64;

/** The provider name prefix of protocol version 2; relays recognise certificate answers by it. */
export const CERT_NAME_PREFIX = '2.dnscrypt-cert.';

/** Anonymized DNSCrypt: 8 × 0xff then 0x00 0x00 starts a packet meant for a relay. */
export const ANON_MAGIC = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00]);
/** anon-magic, the server's IPv6 (or IPv4-mapped) address, its port. */
export const RELAY_HEADER_SIZE = ANON_MAGIC.length + 16 + 2;
