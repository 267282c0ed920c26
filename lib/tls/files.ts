/**
 * Reading the certificate and key files a Corefile names, and pins, at parse time, with located
 * errors: for every plugin that speaks TLS.
 */
import { Buffer } from 'node:buffer';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Token } from '../../core/config/ast.js';
import { configError, expectArgs, type OptionSpec } from '../../core/config/options.js';

/** Reads a file named by `token`, relative to the Corefile that names it. */
export function readConfigFile(plugin: string, token: Token, what: string): string {
  const full = path.resolve(path.dirname(path.resolve(token.file)), token.text);
  try {
    return readFileSync(full, 'utf8');
  } catch (err) {
    throw configError(plugin, token, `cannot read ${what} file "${token.text}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** A PEM file a server presents (`cert FILE`, `key FILE`): its text; an error at `token` when it cannot be read or holds no PEM block. */
export function readPemFile(plugin: string, token: Token, what: string): string {
  const text = readConfigFile(plugin, token, what);
  if (!text.includes('-----BEGIN ')) throw configError(plugin, token, `"${token.text}" holds no PEM ${what}`);
  return text;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The PEM certificates of a file; an error at `token` when there is none or one is unreadable. */
export function readCertificates(plugin: string, token: Token, what: string): string[] {
  const pems = readConfigFile(plugin, token, what).match(PEM_CERTIFICATE) ?? [];
  if (pems.length === 0) throw configError(plugin, token, `"${token.text}" holds no PEM certificate`);
  for (const pem of pems) {
    try {
      new X509Certificate(pem);
    } catch (err) {
      throw configError(plugin, token, `"${token.text}" holds a certificate that cannot be read: ${(err as Error).message}`);
    }
  }
  return pems;
}

/** A `pin_sha256` value: base64 of a 32-byte SHA-256 digest. */
export function parsePin(plugin: string, token: Token): Buffer {
  const bytes = /^[A-Za-z0-9+/]{43}=$/.test(token.text) ? Buffer.from(token.text, 'base64') : Buffer.alloc(0);
  if (bytes.length !== 32) {
    throw configError(
      plugin,
      token,
      `"${token.text}" is not a base64 SHA-256 digest (44 characters, e.g. from: openssl x509 -noout -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)`,
    );
  }
  return bytes;
}

/** Where an upstream's extra trust goes: CA certificates beside the system's, and SPKI pins. */
export interface TrustSettings {
  extraCa: string[];
  pins: Buffer[];
}

/**
 * The `ca FILE` and `pin_sha256 PIN…` options of an upstream that speaks TLS (dot, doh, odoh), read
 * into `into`; both may be given more than once (list `pin_sha256` and `ca` as repeatable).
 */
export function trustOptions(plugin: string, into: TrustSettings): OptionSpec {
  return {
    ca: (d) => into.extraCa.push(...readCertificates(plugin, expectArgs(plugin, d, 1)[0]!, 'ca')),
    pin_sha256: (d) => {
      for (const pin of expectArgs(plugin, d, 1, Infinity)) into.pins.push(parsePin(plugin, pin));
    },
  };
}
