/**
 * `veil dnscrypt keygen --provider 2.dnscrypt-cert.NAME --out DIR [--addr IP:PORT]`: a new
 * provider key pair for a DNSCrypt listener (DIR/provider.key, secret, mode 0600, and
 * DIR/provider.pub), the Corefile lines that use it, and the stamp clients need, last.
 */
import { parseArgs } from 'node:util';
import { CERT_NAME_PREFIX } from '../lib/dnscrypt/constants.js';
import { writeProviderKeys } from '../lib/dnscrypt/provider-key.js';
import { encodeStamp, splitAddress, StampError } from '../lib/stamps.js';
import { UsageError, type CommandIo } from './io.js';

export const DNSCRYPT_USAGE = `Usage:
  veil dnscrypt keygen --provider ${CERT_NAME_PREFIX}NAME --out DIR [--addr IP:PORT] [--dnssec] [--nolog] [--nofilter]`;

const DEFAULT_ADDRESS = '127.0.0.1:443';

export function runDnscrypt(args: string[], io: CommandIo): number {
  const [action, ...rest] = args;
  if (action !== 'keygen') throw new UsageError(action ? `unknown dnscrypt command "${action}"` : 'dnscrypt needs a command: keygen');
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      strict: true,
      options: {
        provider: { type: 'string' },
        out: { type: 'string' },
        addr: { type: 'string' },
        dnssec: { type: 'boolean' },
        nolog: { type: 'boolean' },
        nofilter: { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const provider = values.provider?.replace(/\.$/, '');
  if (!provider || !provider.toLowerCase().startsWith(CERT_NAME_PREFIX) || provider.length <= CERT_NAME_PREFIX.length) {
    throw new UsageError(`--provider must be ${CERT_NAME_PREFIX}NAME`);
  }
  if (!values.out) throw new UsageError('--out DIR is needed (where provider.key and provider.pub go)');
  const address = values.addr ?? DEFAULT_ADDRESS;
  try {
    splitAddress(address, 443);
  } catch (err) {
    if (err instanceof StampError) throw new UsageError(`--addr: ${err.message}`);
    throw err;
  }
  let written;
  try {
    written = writeProviderKeys(values.out);
  } catch (err) {
    io.err(`veil: ${(err as Error).message}`);
    return 1;
  }
  const stamp = encodeStamp({
    protocol: 'dnscrypt',
    props: { dnssec: values.dnssec ?? false, noLogs: values.nolog ?? false, noFilter: values.nofilter ?? false },
    address,
    providerKey: written.publicKey,
    providerName: provider,
  });
  const { host, port } = splitAddress(address, 443);
  const url = `dnscrypt://${host.includes(':') ? `[${host}]` : host}:${port}`;
  io.out(`wrote ${written.keyFile} (the provider's secret key: keep it on this server only)`);
  io.out(`wrote ${written.publicFile}`);
  io.out(`provider public key ${written.publicKey.toString('hex')}`);
  io.out('in the Corefile:');
  io.out(`    listen ${url} {`);
  io.out(`        provider ${provider}`);
  io.out(`        key ${written.keyFile}`);
  io.out('    }');
  if (!values.addr) io.out(`the stamp below says ${DEFAULT_ADDRESS}; give --addr IP:PORT for the address clients reach`);
  io.out(stamp);
  return 0;
}
