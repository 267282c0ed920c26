/**
 * libsodium (the sumo build: the standard one lacks the XChaCha20 box DNSCrypt's es-version 2
 * uses). Loaded once, at import: every module that reaches the crypto goes through this one, so
 * nothing can call into libsodium before it is ready.
 */
import sodium from 'libsodium-wrappers-sumo';

await sodium.ready;

export { sodium };
