/**
 * `veil odoh keygen --out FILE [--host HOST[:PORT]] [--path PATH]`: a new ODoH target key (a
 * 32-byte seed, mode 0600), its key id, the Corefile lines that use it, and, with --host, the
 * ODoH target stamp clients need.
 */
import { parseArgs } from 'node:util';
import { encodeConfigs } from '../lib/odoh/configs.js';
import { deriveTargetKey, writeKeyFile } from '../lib/odoh/keys.js';
import { encodeStamp, StampError } from '../lib/stamps.js';
import { UsageError, type CommandIo } from './io.js';

export const ODOH_USAGE = `Usage:
  veil odoh keygen --out FILE [--host HOST[:PORT]] [--path /dns-query] [--dnssec] [--nolog] [--nofilter]

Writes a new ODoH target key to FILE (readable by its owner only) for
"listen https://… { odoh_target FILE }", and prints its key id; with --host, the target's stamp.`;

export async function runOdoh(args: string[], io: CommandIo): Promise<number> {
  const [action, ...rest] = args;
  if (action !== 'keygen') throw new UsageError(action ? `unknown odoh command "${action}"` : 'odoh needs a command: keygen');
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      strict: true,
      options: { out: { type: 'string' }, host: { type: 'string' }, path: { type: 'string' }, dnssec: { type: 'boolean' }, nolog: { type: 'boolean' }, nofilter: { type: 'boolean' } },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (!values.out) throw new UsageError('--out FILE is needed (where the key goes)');
  const path = values.path ?? '/dns-query';
  if (!path.startsWith('/')) throw new UsageError('--path starts with /');
  let seed: Buffer;
  try {
    seed = writeKeyFile(values.out);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    io.err(`veil: cannot write ${values.out}: ${code === 'EEXIST' ? 'the file exists (a key is never overwritten)' : (err as Error).message}`);
    return 1;
  }
  const key = await deriveTargetKey(seed);
  io.out(`wrote ${values.out} (the target's secret key: keep it on this server only)`);
  io.out(`key id ${key.config.keyId.toString('hex')}`);
  io.out(`configs ${encodeConfigs([key.config.contents]).toString('hex')}`);
  io.out('in the Corefile:');
  io.out(`    listen https://IP:443${path} {`);
  io.out('        cert FILE');
  io.out('        key FILE');
  io.out(`        odoh_target ${values.out}`);
  io.out('    }');
  if (values.host) {
    try {
      io.out(encodeStamp({ protocol: 'odohTarget', props: { dnssec: values.dnssec ?? false, noLogs: values.nolog ?? false, noFilter: values.nofilter ?? false }, host: values.host, path }));
    } catch (err) {
      if (!(err instanceof StampError)) throw err;
      io.err(`veil: ${err.message}`);
      return 1;
    }
  }
  return 0;
}
