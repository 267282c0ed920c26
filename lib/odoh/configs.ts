/**
 * ObliviousDoHConfigs (RFC 9230 §6.1), what a target publishes at /.well-known/odohconfigs:
 *
 *     struct { uint16 kem_id; uint16 kdf_id; uint16 aead_id; opaque public_key<1..2^16-1>; } ObliviousDoHConfigContents;
 *     struct { uint16 version; uint16 length; ObliviousDoHConfigContents contents; } ObliviousDoHConfig;
 *     ObliviousDoHConfig ObliviousDoHConfigs<1..2^16-1>;
 *
 * Configs of other versions are skipped by their length (the RFC's rule for extensibility);
 * a config of version 1 whose suite is not supported is skipped too. The key id of a config
 * is Expand(Extract("", contents), "odoh key id", Nh) (§6.2).
 */
import { Buffer } from 'node:buffer';
import { hkdfSync } from 'node:crypto';
import { OdohFormatError } from './message.js';
import { suiteFor, type Suite, type SuiteIds } from './suite.js';

export const CONFIG_VERSION = 0x0001;
/** A target offers a handful of configs at most; more is a hostile list. */
const MAX_CONFIGS = 16;

export interface OdohConfig extends SuiteIds {
  /** The encoded ObliviousDoHConfigContents (what the key id is derived from). */
  contents: Buffer;
  publicKey: Buffer;
  keyId: Buffer;
  suite: Suite;
}

export interface ParsedConfigs {
  /** Version-1 configs with a supported suite, in the target's order of preference. */
  usable: OdohConfig[];
  /** Why the others were passed over (for a message when none is usable). */
  skipped: string[];
}

/** Reads ObliviousDoHConfigs; throws OdohFormatError when the encoding itself is broken. */
export function parseConfigs(bytes: Buffer): ParsedConfigs {
  if (bytes.length < 2) throw new OdohFormatError('configs shorter than their length');
  const total = bytes.readUInt16BE(0);
  if (total === 0) throw new OdohFormatError('the config list is empty');
  if (2 + total !== bytes.length) throw new OdohFormatError(2 + total > bytes.length ? 'the config list is cut off' : 'bytes after the config list');
  const result: ParsedConfigs = { usable: [], skipped: [] };
  let pos = 2;
  let count = 0;
  while (pos < bytes.length) {
    if (++count > MAX_CONFIGS) throw new OdohFormatError(`more than ${MAX_CONFIGS} configs`);
    if (pos + 4 > bytes.length) throw new OdohFormatError('a config ends inside its header');
    const version = bytes.readUInt16BE(pos);
    const length = bytes.readUInt16BE(pos + 2);
    const end = pos + 4 + length;
    if (end > bytes.length) throw new OdohFormatError('a config is longer than the list');
    const body = bytes.subarray(pos + 4, end);
    pos = end;
    if (version !== CONFIG_VERSION) {
      result.skipped.push(`version 0x${version.toString(16).padStart(4, '0')}`);
      continue;
    }
    const config = parseContents(body);
    if (typeof config === 'string') result.skipped.push(config);
    else result.usable.push(config);
  }
  return result;
}

/** One ObliviousDoHConfigContents; a string says why it cannot be used here. */
export function parseContents(contents: Buffer): OdohConfig | string {
  if (contents.length < 8) throw new OdohFormatError('config contents shorter than their fields');
  const ids = { kem: contents.readUInt16BE(0), kdf: contents.readUInt16BE(2), aead: contents.readUInt16BE(4) };
  const keyLength = contents.readUInt16BE(6);
  if (keyLength === 0 || 8 + keyLength !== contents.length) throw new OdohFormatError('the public key length does not match the config');
  const suite = suiteFor(ids);
  if (!suite) return `suite kem 0x${ids.kem.toString(16)} kdf 0x${ids.kdf.toString(16)} aead 0x${ids.aead.toString(16)} is not supported`;
  if (keyLength !== suite.publicKeyLength) throw new OdohFormatError(`a public key of ${keyLength} bytes for a KEM whose keys have ${suite.publicKeyLength}`);
  const copy = Buffer.from(contents);
  return { ...ids, contents: copy, publicKey: copy.subarray(8), keyId: keyIdOf(copy, suite), suite };
}

export function encodeContents(ids: SuiteIds, publicKey: Buffer): Buffer {
  const out = Buffer.alloc(8 + publicKey.length);
  out.writeUInt16BE(ids.kem, 0);
  out.writeUInt16BE(ids.kdf, 2);
  out.writeUInt16BE(ids.aead, 4);
  out.writeUInt16BE(publicKey.length, 6);
  publicKey.copy(out, 8);
  return out;
}

/** ObliviousDoHConfigs holding these contents, in order. */
export function encodeConfigs(contents: readonly Buffer[]): Buffer {
  const parts = contents.map((c) => {
    const header = Buffer.alloc(4);
    header.writeUInt16BE(CONFIG_VERSION, 0);
    header.writeUInt16BE(c.length, 2);
    return Buffer.concat([header, c]);
  });
  const body = Buffer.concat(parts);
  if (body.length === 0 || body.length > 0xffff) throw new OdohFormatError('configs must hold 1 to 65535 bytes');
  const length = Buffer.alloc(2);
  length.writeUInt16BE(body.length);
  return Buffer.concat([length, body]);
}

export function keyIdOf(contents: Buffer, suite: Suite): Buffer {
  return Buffer.from(hkdfSync(suite.hash, contents, Buffer.alloc(0), 'odoh key id', suite.hashLength));
}
