/** DNSCrypt test set-ups: provider keys in a temporary folder, stamps, Veil as server and client. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeProviderKeys } from '../../lib/dnscrypt/provider-key.js';
import { encodeStamp } from '../../lib/stamps.js';
import { loadSodium } from '../../lib/dnscrypt/sodium.js';

// DNSCrypt keys and boxes need libsodium, which Veil loads only when a configuration uses it.
await loadSodium();

export interface ProviderKeys {
  dir: string;
  keyFile: string;
  publicKey: Buffer;
  cleanup(): void;
}

export function makeProviderKeys(): ProviderKeys {
  const dir = mkdtempSync(path.join(tmpdir(), 'veil-dnscrypt-'));
  const written = writeProviderKeys(dir);
  return { dir, keyFile: written.keyFile, publicKey: written.publicKey, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function dnscryptStamp(address: string, providerKey: Buffer, providerName: string): string {
  return encodeStamp({ protocol: 'dnscrypt', props: { dnssec: false, noLogs: true, noFilter: true }, address, providerKey, providerName });
}

export function relayStamp(address: string): string {
  return encodeStamp({ protocol: 'dnscryptRelay', address });
}
