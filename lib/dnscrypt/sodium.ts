/**
 * libsodium (the sumo build: the standard one lacks the XChaCha20 box DNSCrypt's es-version 2
 * uses), loaded on demand. It is ~15 MB of WebAssembly and memory that a server without DNSCrypt
 * should not carry, so nothing imports it at start: the dnscrypt and anonymize plugins load it
 * in `prepare` (before their directives are parsed) and the DNSCrypt commands before they
 * begin. Calling into it before that is a bug in Veil, and `sodium()` says so.
 */
import type Sodium from 'libsodium-wrappers-sumo';

let loaded: typeof Sodium | null = null;

export async function loadSodium(): Promise<void> {
  if (loaded) return;
  const sodium = (await import('libsodium-wrappers-sumo')).default;
  await sodium.ready;
  loaded = sodium;
}

export function sodium(): typeof Sodium {
  if (!loaded) throw new Error('libsodium is used before loadSodium() finished');
  return loaded;
}
